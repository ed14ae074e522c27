"""kill -9 of the worker and of the app at random points: no job lost or finished twice, no half-imported data
set registered, and what a killed process left on disk is never picked up (and is cleaned later)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from nas_core import studio
from nas_core.store import Store
from tests.store.helpers import proposals, wait_until

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def _processes_with(text: str) -> list[int]:
    """Pids of the processes whose command line contains ``text``."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and text in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                found.append(int(pid))
        except OSError:  # gone meanwhile
            pass
    return found


def _wait_gone(text: str, timeout_s: float = 10.0) -> None:
    try:
        wait_until(lambda: not _processes_with(text), timeout_s, 0.05)
    except AssertionError:
        raise AssertionError(f"processes {_processes_with(text)} outlived the killed app") from None


def _worker(db: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nas_core", "worker", "--db", str(db), "--handler", "sleep=tests.store.handlers:sleep",
         "--poll", "0.05", "--heartbeat", "0.2", "--stale-after", "1", *extra],
        cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_workers_killed_at_random_points_lose_and_duplicate_nothing(tmp_path):
    db = tmp_path / "k.db"
    with Store.open(db) as store:
        run = store.create_run("r", "random", "data", {})
        store.start_iteration(run.id)
        for p in proposals(5):
            c = store.add_candidate(run.id, 1, p)
            store.approve(c.id, "t", "sleep", {"steps": 4, "step_s": 0.1}, max_attempts=10)
    rng = random.Random(15)
    for _ in range(4):
        proc = _worker(db)
        time.sleep(rng.uniform(0.6, 2.0))  # interpreter start, claim, mid-job or mid-write
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    final = _worker(db, "--once")
    assert final.wait(120) == 0
    with Store.open(db) as store:
        jobs = store.list_jobs()
        assert [j.status for j in jobs] == ["done"] * 5
        assert [c.status for c in store.list_candidates(1)] == ["done"] * 5
        done_events = [e for e in store.events(limit=1000) if e.entity == "job" and e.to_status == "done"]
        assert sorted(e.job_id for e in done_events) == sorted(j.id for j in jobs)  # each finished once
        assert store.integrity_check() == "ok"


IMPORTER = """
import sys
from nas_core import studio
store = studio.open_store()
data = open(sys.argv[1], 'rb').read()
print('start', flush=True)
studio.import_upload(store, 'tiny.zip', data, 'k', name='tiny', image_size=16)
print('done', flush=True)
"""


def test_an_app_killed_during_a_zip_import_registers_nothing_half_done(tiny_dataset, tmp_path):
    archive = tmp_path / "tiny.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(tiny_dataset.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(tiny_dataset.parent))
    app = tmp_path / "app"
    app.mkdir()
    env = {**_env(), "EQUINAS_DB": str(app / "app.db"), "EQUINAS_CACHE_DIR": str(app / "cache")}
    env.pop("EQUINAS_UPLOADS_DIR", None)
    rng = random.Random(3)
    outcomes = []
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", IMPORTER, str(archive)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout.readline().strip() == "start"
        time.sleep(rng.uniform(0.0, 0.8))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # its image-checking/decoding pool processes die with it (they used to sleep on forever)
        _wait_gone(str(archive))
        with Store.open(app / "app.db") as store:
            names = [d.name for d in store.list_datasets()]
        outcomes.append(names)
        if names:  # it finished before the kill: the data set is whole
            break
        # Not registered: at most hidden temp folders and the extraction of this very name are left.
        visible = [p for p in (app / "uploads").iterdir() if not p.name.startswith(".") and p.name != "incoming"]
        assert visible in ([], [app / "uploads" / "tiny"])
        old = time.time() - 7200  # what the killed run left ages out before the next try
        for p in [*(app / "uploads").rglob("*"), app / "uploads" / "tiny"]:
            if p.exists():
                os.utime(p, (old, old), follow_symlinks=False)
    # The next upload removes the leftovers; then an import of the same name works.
    old = time.time() - 7200
    for p in list((app / "uploads").rglob("*")) + [app / "uploads" / "incoming"]:
        if p.exists():
            os.utime(p, (old, old), follow_symlinks=False)
    store = studio.open_store(app / "app.db")
    try:
        if not outcomes[-1]:
            rec = studio.import_upload(store, "tiny.zip", archive.read_bytes(), "k2", name="tiny", image_size=16)
            assert rec.counts["images"] == 240
        assert [d.name for d in store.list_datasets()] == ["tiny"]
    finally:
        store.close()
    leftovers = [p.name for p in (app / "uploads").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert list((app / "uploads" / "incoming").iterdir()) == []
