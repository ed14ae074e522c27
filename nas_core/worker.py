"""The evaluation worker: claims queued jobs from the store, runs them, writes what happens.

Owns :class:`Worker` (the loop behind ``python -m nas_core worker``),
:func:`start_worker_process` (what the app and ``serve`` call to start one in the
background), :func:`worker_status` and :func:`run_pending` (drain the queue in this
process, for the CLI's unattended runs).

How it works. The worker's main thread is the only code that touches the store
(one connection, one writer); handlers run in an executor (a thread of this
process, or Ray tasks) and talk back through queues. Each pass of the loop:

1. claims queued jobs up to the executor's capacity (atomic ``UPDATE ... WHERE
   status='queued'`` inside ``BEGIN IMMEDIATE``: several workers never share a job);
2. writes the latest progress report of each running job into its row;
3. every ``heartbeat_s`` refreshes the heartbeats of the worker and its jobs (the
   main thread keeps beating while the handler thread trains), picks up
   cancellation requests, and requeues jobs whose worker died (a dead pid on this
   host at once; any host when its heartbeat is older than ``stale_after_s``;
   past ``max_attempts`` such a job fails);
4. writes each finished job's :class:`~nas_core.jobresult.JobResult` in one
   transaction (result, the candidate's metrics for a metrics result, statuses,
   events), or its failure with a clean message (the traceback goes to the log).
   Progress reports are read as :class:`~nas_core.jobresult.Progress` and merged.

SIGTERM/SIGINT: no new claims; running handlers get ``finish_grace_s`` to finish,
then ``should_stop()`` turns True; whatever has not finished after ``stop_grace_s``
more is requeued without using up an attempt. A second signal skips the waiting.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas_core.alloc import release_memory
from nas_core.errors import UserError
from nas_core.executors import Execution, Executor, LocalExecutor
from nas_core.jobresult import JobResult, MalformedResult, Progress
from nas_core.jobs import handler_target
from nas_core.rungs import FOLLOW_UP_KINDS, after_cancel, after_result
from nas_core.store import StaleJob, Store, StoreBusy, StoreFull, WorkerRecord

log = logging.getLogger(__name__)

#: Seconds between looks at an empty queue: an approved candidate starts within this.
DEFAULT_POLL_S = 0.25


@dataclass
class _Active:
    """A job this worker is running (mutable bookkeeping private to the loop)."""

    execution: Execution
    job_id: int
    kind: str
    progress: Progress = field(default_factory=Progress)
    cancelling: bool = False  # a person asked to cancel
    stopping: bool = False  # the worker asked the handler to stop (shutdown)


class Worker:
    """Claims and runs jobs of one database until stopped."""

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        executor: Executor | None = None,
        *,
        poll_s: float = DEFAULT_POLL_S,
        heartbeat_s: float = 2.0,
        stale_after_s: float = 60.0,
        handlers: Mapping[str, str] | None = None,
        kinds: Iterable[str] | None = None,
        worker_id: str | None = None,
        finish_grace_s: float = 5.0,
        stop_grace_s: float = 5.0,
    ):
        """Prepare a worker (nothing is opened until :meth:`run`).

        Args:
            db_path: the store's SQLite file.
            executor: where handlers run (default: a :class:`LocalExecutor`).
            poll_s: sleep between looks at an empty queue.
            heartbeat_s: how often heartbeats are written and cancellations read.
            stale_after_s: a running job whose heartbeat is older is requeued.
            handlers: extra or replacement handlers, kind -> ``"module:function"``.
            kinds: only claim jobs of these kinds (None = all).
            worker_id: a name for this worker in the store (default host:pid:random).
            finish_grace_s: on SIGTERM, time a running job gets to finish on its own.
            stop_grace_s: then, time it gets to honour ``should_stop()`` before it is requeued.
        """
        if heartbeat_s <= 0 or stale_after_s <= heartbeat_s:
            raise UserError(
                f"stale_after_s ({stale_after_s}) must be larger than heartbeat_s ({heartbeat_s}) > 0, "
                "or live jobs would be requeued"
            )
        self.db_path = str(db_path)
        self.executor = executor or LocalExecutor()
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.handlers = dict(handlers or {})
        self.kinds = None if kinds is None else list(kinds)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.finish_grace_s = finish_grace_s
        self.stop_grace_s = stop_grace_s
        self._stop_requested_at: float | None = None
        self._hurry = False
        self._active: dict[int, _Active] = {}
        self.finished: list[tuple[int, str]] = []  # (job id, final status) of jobs this worker ended

    # ------------------------------------------------------------------ control

    def request_stop(self) -> None:
        """Stop after the running jobs finish or are requeued (a second call hurries)."""
        if self._stop_requested_at is None:
            self._stop_requested_at = time.monotonic()
            log.info("worker %s stopping: no new jobs", self.worker_id)
        else:
            self._hurry = True
            log.info("worker %s stopping now", self.worker_id)

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT call :meth:`request_stop` (main thread only)."""

        def handle(signum: int, _frame: Any) -> None:
            self.request_stop()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self._stop_requested_at is not None

    # ------------------------------------------------------------------ loop

    def run(self, once: bool = False, max_jobs: int | None = None) -> int:
        """Run until stopped (``once``: until the queue is empty; ``max_jobs``: after that many claims).

        Returns:
            The number of jobs this worker claimed.
        """
        store = Store.open(self.db_path)
        claimed = 0
        try:
            store.register_worker(self.worker_id, self.executor.name)
            self._recover(store)
            next_beat = time.monotonic() + self.heartbeat_s
            while True:
                try:
                    queue_empty = False
                    if not self.stopping:
                        while len(self._active) < self.executor.capacity and (max_jobs is None or claimed < max_jobs):
                            job = store.claim_job(self.worker_id, self.kinds)
                            if job is None:
                                queue_empty = True
                                break
                            claimed += 1
                            self._start(store, job.id, job.kind, job.payload)
                    self._collect(store)
                    if time.monotonic() >= next_beat:
                        self._beat(store)
                        next_beat = time.monotonic() + self.heartbeat_s
                    if self.stopping:
                        self._wind_down(store)
                        if not self._active:
                            break
                    elif not self._active:
                        if (once and queue_empty) or (max_jobs is not None and claimed >= max_jobs):
                            break
                        if queue_empty:
                            time.sleep(self.poll_s)
                            continue
                    time.sleep(0.05)
                except (StoreBusy, StoreFull) as exc:
                    # A lock held longer than the store waits, or a full disk: nothing was written,
                    # the running handlers go on, and this pass is simply tried again.
                    log.warning("worker %s: %s", self.worker_id, exc)
                    time.sleep(self.poll_s)
        finally:
            for a in list(self._active.values()):  # an exception ended the loop: give the jobs back
                a.execution.abandon()
                try:
                    store.requeue_job(a.job_id, self.worker_id, "worker stopped")
                except UserError as exc:
                    log.warning("could not requeue job %s: %s", a.job_id, exc)
            self._active.clear()
            try:
                store.stop_worker(self.worker_id)
            finally:
                store.close()
                self.executor.close()
        return claimed

    def _recover(self, store: Store) -> None:
        orphans = store.requeue_orphans(actor=self.worker_id)
        stale = store.requeue_stale(self.stale_after_s, actor=self.worker_id)
        if orphans or stale:
            log.warning("requeued jobs of dead workers: %s", sorted(set(orphans) | set(stale)))

    def _start(self, store: Store, job_id: int, kind: str, payload: dict[str, Any]) -> None:
        try:
            target = handler_target(kind, self.handlers)
        except UserError as exc:
            store.fail_job(job_id, str(exc), self.worker_id)
            self.finished.append((job_id, "failed"))
            return
        try:
            execution = self.executor.submit(job_id, target, payload)
        except Exception:
            # The executor itself broke (e.g. the Ray cluster went away): give the job back, then stop.
            store.requeue_job(job_id, self.worker_id, "the executor could not start the job", count_attempt=True)
            raise
        log.info("job %s (%s) started", job_id, kind)
        self._active[job_id] = _Active(execution, job_id, kind)

    def _collect(self, store: Store) -> None:
        for job_id, a in list(self._active.items()):
            done = a.execution.done()  # first: a finished job's last reports are then drained too
            reports = a.execution.drain_progress()
            if reports:
                for r in reports:
                    try:
                        a.progress = a.progress.merged(Progress.from_report(r))
                    except (TypeError, ValueError) as exc:
                        log.warning("job %s: progress report %r ignored: %s", job_id, r, exc)
                store.set_progress(job_id, a.progress, self.worker_id)
            if done:
                try:
                    self._finish(store, a)
                except (StoreBusy, StoreFull):
                    raise  # still in _active: its outcome is written on a later pass, not lost
                except BaseException:
                    self._active.pop(job_id, None)
                    raise
                self._active.pop(job_id, None)
                if not self._active:
                    release_memory()  # an idle worker gives a finished training's heap back (see nas_core.alloc)

    def _finish(self, store: Store, a: _Active) -> None:
        kind, value = a.execution.outcome()
        try:
            if kind == "ok":
                try:
                    result = JobResult.of(value)
                    with store.transaction():  # the result and its follow-up (next rung) land together
                        store.record_result(a.job_id, result, self.worker_id)
                        if a.kind in FOLLOW_UP_KINDS:
                            after_result(store, a.job_id)
                    status = "done"
                except (TypeError, KeyError, ValueError) as exc:
                    msg = (f"the {a.kind} handler returned {exc}" if isinstance(exc, MalformedResult)
                           else f"the {a.kind} handler returned a result that cannot be stored: {exc}")
                    log.exception("job %s: %s", a.job_id, msg)
                    store.fail_job(a.job_id, msg, self.worker_id)
                    status = "failed"
            elif kind == "stopped" or (kind == "error" and (a.cancelling or a.stopping)):
                if a.cancelling:
                    with store.transaction():
                        store.finish_cancelled(a.job_id, self.worker_id)
                        if a.kind in FOLLOW_UP_KINDS:
                            after_cancel(store, a.job_id)  # a stopped rung keeps its preliminary result
                    status = "cancelled"
                else:
                    store.requeue_job(a.job_id, self.worker_id, "worker stopped before the job finished")
                    status = "queued"
            elif kind == "error":
                msg, tb = value
                log.error("job %s (%s) failed: %s\n%s", a.job_id, a.kind, msg, tb)
                store.fail_job(a.job_id, msg, self.worker_id)
                status = "failed"
            else:  # lost by the executor: not the handler's fault, so it counts as an attempt and retries
                log.warning("job %s: %s", a.job_id, value)
                store.requeue_job(a.job_id, self.worker_id, str(value), count_attempt=True)
                status = store.get_job(a.job_id).status
        except StaleJob as exc:
            # Someone requeued it while we ran (we looked dead); the newer run owns it now.
            log.warning("job %s: dropped this worker's outcome: %s", a.job_id, exc)
            status = "stale"
        log.info("job %s ended: %s", a.job_id, status)
        self.finished.append((a.job_id, status))

    def _beat(self, store: Store) -> None:
        store.heartbeat_worker(self.worker_id)
        for job_id, a in list(self._active.items()):
            try:
                cancel = store.heartbeat_job(job_id, self.worker_id)
            except StaleJob as exc:
                log.warning("job %s taken away from this worker: %s", job_id, exc)
                a.execution.request_stop()
                a.execution.abandon()
                del self._active[job_id]
                continue
            if cancel and not a.cancelling:
                log.info("job %s: cancellation requested", job_id)
                a.cancelling = True
                a.execution.request_stop()
        self._recover(store)

    def _wind_down(self, store: Store) -> None:
        assert self._stop_requested_at is not None
        waited = time.monotonic() - self._stop_requested_at
        for job_id, a in list(self._active.items()):
            if not a.stopping and (self._hurry or waited >= self.finish_grace_s):
                a.stopping = True
                a.execution.request_stop()
            if self._hurry or waited >= self.finish_grace_s + self.stop_grace_s:
                a.execution.abandon()
                del self._active[job_id]
                try:
                    store.requeue_job(job_id, self.worker_id, "worker stopped before the job finished")
                    self.finished.append((job_id, "queued"))
                except StaleJob as exc:
                    log.warning("job %s: %s", job_id, exc)


def run_pending(
    db_path: str | os.PathLike[str],
    executor: Executor | None = None,
    handlers: Mapping[str, str] | None = None,
    poll_s: float = 0.2,
) -> int:
    """Run every queued job in this process until the queue is empty; returns how many ran.

    Repeated calls from one process share one row in the workers table.
    """
    worker_id = f"{socket.gethostname()}:{os.getpid()}:inprocess"
    return Worker(db_path, executor, poll_s=poll_s, handlers=handlers, worker_id=worker_id).run(once=True)


def worker_status(store: Store, alive_within_s: float = 15.0) -> list[WorkerRecord]:
    """Known workers, newest first; ``alive`` when running with a heartbeat within the window."""
    return store.worker_status(alive_within_s)


def start_worker_process(
    db_path: str | os.PathLike[str],
    executor: str = "local",
    extra_args: Sequence[str] = (),
    log_path: str | os.PathLike[str] | None = None,
) -> int:
    """Start ``python -m nas_core worker`` in the background; returns its pid.

    The process gets its own session so it outlives a Streamlit rerun and an
    app restart; stop it with SIGTERM. Its log goes to ``log_path`` (default:
    the database path + ``.worker.log``).
    """
    db = Path(db_path).expanduser().resolve()
    Store.open(db).close()  # a clear error now rather than a dead worker later
    log_file = Path(log_path) if log_path else db.with_name(db.name + ".worker.log")
    cmd = [sys.executable, "-m", "nas_core", "-v", "worker", "--db", str(db), "--executor", executor,
           *extra_args]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(root), env=env,
            start_new_session=True,
        )
    log.info("started worker pid %s for %s (log %s)", proc.pid, db, log_file)
    return proc.pid
