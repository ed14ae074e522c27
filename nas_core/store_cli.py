"""CLI commands of the store and worker: ``worker``, ``serve`` and ``db`` (info, jobs, cancel, backup, check, events).

Owns the argument wiring of those commands and :func:`serve` (the app plus a
worker beside it, which ``make run`` calls). The work itself lives in
:mod:`nas_core.worker`, :mod:`nas_core.executors` and :mod:`nas_core.store`.

The database path defaults to ``$EQUINAS_DB`` or ``data/equinas.db``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nas_core.cli import CliError, emit
from nas_core.executors import make_executor
from nas_core.jobs import parse_handler_overrides
from nas_core.redact import install_log_redaction
from nas_core.store import DEFAULT_DB_PATH, Store
from nas_core.worker import DEFAULT_POLL_S, Worker

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]


def default_db() -> str:
    """``$EQUINAS_DB`` or ``data/equinas.db``."""
    return os.environ.get("EQUINAS_DB") or DEFAULT_DB_PATH


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=None, help="SQLite database file (default: $EQUINAS_DB or data/equinas.db)")


def _db_path(args: argparse.Namespace, create_default_folder: bool = False) -> str:
    path = args.db or default_db()
    if args.db is None and create_default_folder:
        # Only the default location is created for the user; a typo in --db must not create folders.
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return path


def register_cli(sub: argparse._SubParsersAction) -> None:  # noqa: SLF001 - argparse's own type
    """Add ``worker``, ``serve`` and ``db``."""
    w = sub.add_parser("worker", help="run queued evaluations (local or on a Ray cluster)")
    _add_db(w)
    w.add_argument("--executor", choices=["local", "ray"], default="local")
    w.add_argument("--ray-address", default=None, help="Ray cluster address (default: start a local instance)")
    w.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per Ray task (default 1)")
    w.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per Ray task (default 0)")
    w.add_argument("--concurrency", type=int, default=None,
                   help="jobs at once (local default 1; Ray default cluster CPUs / --num-cpus)")
    w.add_argument("--ray-working-dir", default=None,
                   help="ship this folder to the cluster as the tasks' working directory (Ray runtime_env)")
    w.add_argument("--ray-local-cpus", type=int, default=None, help="CPUs of a local Ray instance")
    w.add_argument("--poll", type=float, default=DEFAULT_POLL_S,
                   help="seconds between looks at an empty queue (an approved candidate starts within this)")
    w.add_argument("--heartbeat", type=float, default=2.0, help="seconds between heartbeats")
    w.add_argument("--stale-after", type=float, default=60.0,
                   help="requeue running jobs whose heartbeat is older than this")
    w.add_argument("--finish-grace", type=float, default=5.0,
                   help="on SIGTERM, seconds a running job gets to finish before it is asked to stop")
    w.add_argument("--stop-grace", type=float, default=5.0,
                   help="then seconds it gets to stop before it is requeued anyway")
    w.add_argument("--once", action="store_true", help="exit when the queue is empty")
    w.add_argument("--max-jobs", type=int, default=None, help="exit after claiming this many jobs")
    w.add_argument("--kind", action="append", default=None, help="only claim jobs of this kind (repeatable)")
    w.add_argument("--handler", action="append", default=[], metavar="KIND=MODULE:FUNC",
                   help="extra job handler (repeatable)")
    w.add_argument("--json", action="store_true")
    w.set_defaults(func=cmd_worker)

    s = sub.add_parser("serve", help="start the app with a worker beside it (what `make run` does)")
    _add_db(s)
    s.add_argument("--port", type=int, default=8501)
    s.add_argument("--address", default="localhost",
                   help="interface to listen on (default localhost; 0.0.0.0 exposes the app to the network)")
    s.add_argument("--app", default=str(ROOT / "app.py"), help="Streamlit script (default app.py)")
    s.add_argument("--no-worker", action="store_true", help="do not start a worker")
    s.add_argument("--executor", choices=["local", "ray"], default="local")
    s.add_argument("--ray-address", default=None)
    s.add_argument("--data-root", action="append", default=[], metavar="FOLDER",
                   help="a server folder the Data page may read data sets from (repeatable); the database's "
                        "folder is always allowed, more come from $EQUINAS_DATA_ROOTS")
    s.set_defaults(func=cmd_serve)

    d = sub.add_parser("db", help="inspect the store: schema, counts, workers, jobs; cancel a job")
    dsub = d.add_subparsers(dest="db_command", metavar="DB_COMMAND")
    info = dsub.add_parser("info", help="schema version, row counts, workers")
    _add_db(info)
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_db_info)
    jobs = dsub.add_parser("jobs", help="list jobs")
    _add_db(jobs)
    jobs.add_argument("--status", default=None)
    jobs.add_argument("--json", action="store_true")
    jobs.set_defaults(func=cmd_db_jobs)
    cancel = dsub.add_parser("cancel", help="cancel a job")
    _add_db(cancel)
    cancel.add_argument("job_id", type=int)
    cancel.add_argument("--actor", default=os.environ.get("USER", "cli"))
    cancel.add_argument("--json", action="store_true")
    cancel.set_defaults(func=cmd_db_cancel)
    backup = dsub.add_parser("backup", help="copy the database with SQLite's online backup API (safe while "
                                             "the app and workers run)")
    _add_db(backup)
    backup.add_argument("dest", help="the new file to write (must not exist)")
    backup.add_argument("--json", action="store_true")
    backup.set_defaults(func=cmd_db_backup)
    check = dsub.add_parser("check", help="PRAGMA integrity_check of the whole file")
    _add_db(check)
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=cmd_db_check)
    events = dsub.add_parser("events", help="the latest state changes")
    _add_db(events)
    events.add_argument("--run", type=int, default=None)
    events.add_argument("--limit", type=int, default=50)
    events.add_argument("--json", action="store_true")
    events.set_defaults(func=cmd_db_events)


# ---------------------------------------------------------------------------- worker


def cmd_worker(args: argparse.Namespace) -> int:
    """``worker``: claim and run jobs until stopped."""
    logging.getLogger("nas_core").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s")
    install_log_redaction()  # the worker's log file never holds a key
    db = _db_path(args, create_default_folder=True)
    Store.open(db).close()  # a wrong path fails here, before Ray starts
    handlers = parse_handler_overrides(args.handler)
    ray_init: dict[str, Any] = {}
    if args.ray_local_cpus is not None:
        ray_init["num_cpus"] = args.ray_local_cpus
    executor = make_executor(
        args.executor, ray_address=args.ray_address, num_cpus=args.num_cpus, num_gpus=args.num_gpus,
        concurrency=args.concurrency, ray_init=ray_init, working_dir=args.ray_working_dir,
    )
    worker = Worker(db, executor, poll_s=args.poll, heartbeat_s=args.heartbeat, stale_after_s=args.stale_after,
                    handlers=handlers, kinds=args.kind, finish_grace_s=args.finish_grace,
                    stop_grace_s=args.stop_grace)
    worker.install_signal_handlers()
    log.info("worker %s on %s (%s executor, %d at once)", worker.worker_id, db, executor.name, executor.capacity)
    claimed = worker.run(once=args.once, max_jobs=args.max_jobs)
    emit(args, {"worker_id": worker.worker_id, "claimed": claimed, "finished": worker.finished},
         f"worker {worker.worker_id} stopped after {claimed} job(s)")
    return 0


# ---------------------------------------------------------------------------- serve


def serve(
    db: str,
    port: int = 8501,
    address: str = "localhost",
    app: str | os.PathLike[str] | None = None,
    worker: bool = True,
    worker_args: Sequence[str] = (),
    app_cmd: Sequence[str] | None = None,
    max_worker_restarts: int = 5,
    data_roots: Sequence[str] = (),
) -> int:
    """Run the Streamlit app and a worker; stop the worker when the app exits or on Ctrl-C/SIGTERM.

    A worker that dies is restarted (at most ``max_worker_restarts`` times). ``data_roots`` are
    server folders the Data page may read, besides the database's folder (``$EQUINAS_DATA_ROOTS``).
    Returns the app's exit code (0 after Ctrl-C).
    """
    db_abs = str(Path(db).expanduser().resolve())
    Store.open(db_abs).close()  # clear error at start
    app_path = Path(app) if app else ROOT / "app.py"
    if app_cmd is None and not app_path.is_file():
        raise CliError(f"app script {app_path} not found; pass --app PATH")
    env = {**os.environ, "EQUINAS_DB": db_abs,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    if data_roots:
        for root in data_roots:
            if not Path(root).expanduser().is_dir():
                raise CliError(f"--data-root {root} is not a folder on this server")
        roots = [str(Path(r).expanduser().resolve()) for r in data_roots]
        env["EQUINAS_DATA_ROOTS"] = os.pathsep.join(filter(None, [*roots, os.environ.get("EQUINAS_DATA_ROOTS")]))
    cmd = list(app_cmd) if app_cmd else [
        # ui.launch is the streamlit CLI with app.py's st.navigation in charge from the first request.
        sys.executable, "-m", "ui.launch", "run", str(app_path), "--server.address", address,
        "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
    ]
    worker_cmd = [sys.executable, "-m", "nas_core", "worker", "--db", db_abs, *worker_args]
    stop = {"signal": None}

    def on_signal(signum: int, _frame: Any) -> None:
        stop["signal"] = signum

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    restarts = 0
    try:
        if worker:
            procs["worker"] = subprocess.Popen(worker_cmd, env=env, cwd=str(ROOT))
        procs["app"] = subprocess.Popen(cmd, env=env, cwd=str(ROOT))
        sys.stderr.write(f"EquiNAS Studio on http://{address}:{port} (database {db_abs}); Ctrl-C stops it\n")
        while stop["signal"] is None:
            code = procs["app"].poll()
            if code is not None:
                log.info("app exited with %s; stopping the worker", code)
                return code
            w = procs.get("worker")
            if w is not None and w.poll() is not None:
                if restarts >= max_worker_restarts:
                    log.error("worker keeps dying (exit %s); evaluations are paused", w.returncode)
                    procs.pop("worker")
                else:
                    restarts += 1
                    log.warning("worker exited with %s; restarting it (%d)", w.returncode, restarts)
                    procs["worker"] = subprocess.Popen(worker_cmd, env=env, cwd=str(ROOT))
            time.sleep(0.3)
        return 0
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _stop_all(procs)


def _stop_all(procs: dict[str, subprocess.Popen[bytes]], timeout_s: float = 15.0) -> None:
    """SIGTERM every child still running, wait, then SIGKILL the stubborn ones."""
    for p in procs.values():
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + timeout_s
    for name, p in procs.items():
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s; killing it", name, timeout_s)
            p.kill()
            p.wait()


def cmd_serve(args: argparse.Namespace) -> int:
    """``serve``: app + worker."""
    worker_args = ["--executor", args.executor]
    if args.ray_address:
        worker_args += ["--ray-address", args.ray_address]
    return serve(_db_path(args, create_default_folder=True), args.port, args.address, args.app,
                 worker=not args.no_worker, worker_args=worker_args, data_roots=args.data_root)


# ---------------------------------------------------------------------------- db


def cmd_db_info(args: argparse.Namespace) -> int:
    """``db info``."""
    with Store.open(_db_path(args)) as store:
        counts = {t: store.db[t].count for t in store.db.table_names() if t != "schema_version"}
        workers = [
            {"id": w.id, "pid": w.pid, "host": w.host, "executor": w.executor, "alive": w.alive}
            for w in store.worker_status()
        ]
        payload = {"path": store.path, "schema_version": store.schema_version, "counts": counts,
                   "workers": workers, "integrity": store.integrity_check()}
    lines = [f"{payload['path']}: schema version {payload['schema_version']}, integrity {payload['integrity']}"]
    lines += [f"  {t}: {n}" for t, n in sorted(counts.items())]
    lines += [f"  worker {w['id']} ({w['executor']}): {'alive' if w['alive'] else 'not alive'}" for w in workers]
    emit(args, payload, "\n".join(lines))
    return 0


def cmd_db_jobs(args: argparse.Namespace) -> int:
    """``db jobs``."""
    with Store.open(_db_path(args)) as store:
        jobs = store.list_jobs(status=args.status)
    payload = [
        {"id": j.id, "kind": j.kind, "status": j.status, "candidate_id": j.candidate_id, "attempts": j.attempts,
         "worker_id": j.worker_id, "progress": j.progress, "error": j.error}
        for j in jobs
    ]
    text = "\n".join(
        f"{j['id']:>5} {j['kind']:<16} {j['status']:<9} cand={j['candidate_id']} attempts={j['attempts']} "
        f"{j['error']}" for j in payload
    ) or "no jobs"
    emit(args, payload, text)
    return 0


def cmd_db_cancel(args: argparse.Namespace) -> int:
    """``db cancel JOB``."""
    with Store.open(_db_path(args)) as store:
        job = store.cancel_job(args.job_id, args.actor)
    text = (f"job {job.id} cancelled" if job.status == "cancelled"
            else f"job {job.id}: cancellation requested; the worker stops it shortly")
    emit(args, {"id": job.id, "status": job.status, "cancel_requested": job.cancel_requested}, text)
    return 0


def cmd_db_backup(args: argparse.Namespace) -> int:
    """``db backup DEST``: an online, consistent copy."""
    with Store.open(_db_path(args)) as store:
        dest = store.backup(args.dest)
        size = dest.stat().st_size
    emit(args, {"path": str(dest), "bytes": size}, f"backed up to {dest} ({size} bytes)")
    return 0


def cmd_db_check(args: argparse.Namespace) -> int:
    """``db check``: the full integrity check (``open`` runs the quicker quick_check)."""
    with Store.open(_db_path(args)) as store:
        result = store.integrity_check()
    emit(args, {"path": store.path, "integrity": result}, f"{store.path}: integrity {result}")
    return 0 if result == "ok" else 1


def cmd_db_events(args: argparse.Namespace) -> int:
    """``db events``."""
    with Store.open(_db_path(args)) as store:
        events = store.events(run_id=args.run, limit=args.limit)
    payload = [e.__dict__ for e in events]
    text = "\n".join(
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(e.time))} {e.entity:<9} "
        f"{e.from_status or '-'} -> {e.to_status or '-'} by {e.actor or '-'} "
        f"(run {e.run_id}, cand {e.candidate_id}, job {e.job_id}) {e.detail}" for e in events
    ) or "no events"
    emit(args, payload, text)
    return 0
