"""``serve``: Streamlit plus a worker beside it; the worker stops with the app or on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from nas_core.store import Store
from nas_core.store_cli import serve
from nas_core.worker import worker_status
from tests.store.helpers import children, free_port, streamlit_healthy, wait_until

ROOT = Path(__file__).resolve().parents[1]



def _wait(cond, timeout=60.0, step=0.1):
    return wait_until(cond, timeout, step)


def test_serve_runs_streamlit_and_a_worker_and_ctrl_c_stops_both(tmp_path):
    app = tmp_path / "app.py"
    app.write_text("import os\nimport streamlit as st\nst.write(os.environ['EQUINAS_DB'])\n")
    db = tmp_path / "serve.db"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas_core", "serve", "--db", str(db), "--port", str(port), "--app", str(app)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait(lambda: streamlit_healthy(port) or proc.poll() is not None, timeout=90)
        assert proc.poll() is None, proc.stderr.read()
        store = Store.open(db)
        _wait(lambda: any(w.alive for w in worker_status(store)))
        kids = children(proc.pid)
        assert len(kids) == 2
        for k in kids:
            env = Path(f"/proc/{k}/environ").read_bytes().split(b"\0")
            assert f"EQUINAS_DB={db.resolve()}".encode() in env
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=40)
        assert proc.returncode == 0, err
        assert f"http://localhost:{port}" in err
        assert [w.status for w in worker_status(store)] == ["stopped"]
        assert not streamlit_healthy(port)
        assert all(not Path(f"/proc/{k}").exists() or "Z" in Path(f"/proc/{k}/stat").read_text().split()[2]
                   for k in kids)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_worker_stops_when_the_app_exits_and_is_restarted_if_it_dies(tmp_path):
    db = tmp_path / "s2.db"
    store = Store.open(db)
    killed: list[int] = []

    def kill_first_worker() -> None:
        own = Store.open(db)  # one connection per thread
        first = _wait(lambda: [w for w in worker_status(own) if w.alive], timeout=30)
        own.close()
        killed.append(first[0].pid)
        os.kill(first[0].pid, signal.SIGKILL)

    t = threading.Thread(target=kill_first_worker)
    t.start()
    # The "app" exits once the replacement worker is up (not after a fixed sleep, which a loaded
    # machine's slow worker start outruns), then serve must stop that worker too.
    app_cmd = [sys.executable, "-c",
               "import os, time\n"
               "from nas_core.store import Store\n"
               "from nas_core.worker import worker_status\n"
               "store, deadline = Store.open(os.environ['EQUINAS_DB']), time.time() + 120\n"
               "while time.time() < deadline:\n"
               "    ws = worker_status(store)\n"
               "    if len(ws) >= 2 and any(w.alive for w in ws):\n"
               "        break\n"
               "    time.sleep(0.1)\n"
               "raise SystemExit(3)\n"]
    code = serve(str(db), app_cmd=app_cmd, worker_args=["--poll", "0.1", "--heartbeat", "0.2"])
    t.join(timeout=10)
    assert code == 3 and killed
    workers = worker_status(store)
    assert len(workers) == 2  # the killed one and its replacement
    replacement = [w for w in workers if w.pid != killed[0]][0]
    assert replacement.status == "stopped"  # stopped cleanly when the app exited
    assert all(w.status == "stopped" and not w.alive for w in workers)  # the killed one was noticed as gone


def test_serve_refuses_a_missing_database_folder(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "nas_core", "serve", "--db", str(tmp_path / "no" / "x.db"), "--app", "app.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "database folder" in proc.stderr and "Traceback" not in proc.stderr


def test_the_cli_runs_from_any_folder_not_only_the_repository(tmp_path):
    """`make install` puts the project on the venv's path (a .pth file): a user beside their data can run it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-m", "nas_core", "datasets", "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "make-default" in proc.stdout


def test_the_app_run_from_the_repository_skips_streamlits_full_gc_after_every_rerun(tmp_path):
    """Streamlit's default runs gc.collect(2) after every script run, each timed fragment rerun of a live
    page included: most of the CPU a watched page took from the training beside it (benchmarks/bench_live.py).
    ``serve`` starts Streamlit in the repository root, whose .streamlit/config.toml turns it off; elsewhere
    Streamlit's default stays (so this checks the file, not a global; HOME is empty, so no user-wide
    ~/.streamlit/config.toml counts)."""
    probe = "from streamlit import config; print(config.get_option('runner.postScriptGC'))"
    env = {**os.environ, "HOME": str(tmp_path)}
    here = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert here.stdout.strip() == "False", here.stderr
    outside = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                             check=True)
    assert outside.stdout.strip() == "True", outside.stderr
