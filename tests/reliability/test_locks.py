"""A foreign lock (another connection holding BEGIN EXCLUSIVE: a backup, an sqlite3 shell) delays writes but
loses nothing: approvals wait and succeed, or say clearly that they could not with nothing half done; the
worker survives; ``db cancel`` answers with a message. Timeouts are shortened through the settings
(EQUINAS_BUSY_TIMEOUT_S, EQUINAS_LOCK_WAIT_S) so a "45 s" lock takes about a second of test time.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nas_core.cli import main
from nas_core.records import Proposal
from nas_core.space import default_spec
from nas_core.store import Store, StoreBusy
from nas_core.worker import Worker
from tests.store.helpers import proposals

ROOT = Path(__file__).resolve().parents[2]


def _hold_lock(db: Path, seconds: float, started: threading.Event) -> threading.Thread:
    def hold() -> None:
        conn = sqlite3.connect(str(db), isolation_level=None, timeout=10)
        conn.execute("BEGIN EXCLUSIVE")
        started.set()
        time.sleep(seconds)
        conn.execute("ROLLBACK")
        conn.close()

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    assert started.wait(10)
    return t


@pytest.fixture
def db(tmp_path, monkeypatch):
    monkeypatch.setenv("EQUINAS_BUSY_TIMEOUT_S", "0.2")
    path = tmp_path / "locks.db"
    with Store.open(path) as store:
        run = store.create_run("r", "random", "data", {})
        store.start_iteration(run.id)
        for p in proposals(3):
            store.add_candidate(run.id, 1, p)
    return path


def test_an_approval_waits_out_a_foreign_lock_longer_than_the_busy_timeout(db, monkeypatch):
    monkeypatch.setenv("EQUINAS_LOCK_WAIT_S", "10")
    store = Store.open(db)
    cid = store.list_candidates(1)[0].id
    t = _hold_lock(db, 1.5, threading.Event())  # 7x the busy timeout: one attempt alone would fail
    start = time.monotonic()
    job = store.approve(cid, "app", "evaluate", {})
    waited = time.monotonic() - start
    t.join()
    assert job.status == "queued" and waited >= 1.0
    assert store.get_candidate(cid).status == "queued"
    store.close()


def test_an_approval_past_the_lock_wait_says_so_and_changes_nothing(db, monkeypatch):
    monkeypatch.setenv("EQUINAS_LOCK_WAIT_S", "0.6")
    store = Store.open(db)
    cid = store.list_candidates(1)[0].id
    t = _hold_lock(db, 2.0, threading.Event())
    with pytest.raises(StoreBusy, match="locked by another program.*nothing was changed"):
        store.approve(cid, "app", "evaluate", {})
    t.join()
    assert store.get_candidate(cid).status == "proposed" and store.list_jobs() == []
    job = store.approve(cid, "app", "evaluate", {})  # once released, the same approval works
    assert job.status == "queued"
    store.close()


def test_db_cancel_under_a_held_lock_prints_a_message_not_a_traceback(db, monkeypatch, capsys):
    monkeypatch.setenv("EQUINAS_LOCK_WAIT_S", "0.4")
    with Store.open(db) as store:
        job = store.approve(store.list_candidates(1)[0].id, "app", "evaluate", {})
    t = _hold_lock(db, 1.5, threading.Event())
    code = main(["db", "cancel", str(job.id), "--db", str(db)])
    _, err = capsys.readouterr()
    t.join()
    assert code == 2 and err.startswith("error: ") and "locked" in err and "Traceback" not in err
    assert main(["db", "cancel", str(job.id), "--db", str(db)]) == 0
    assert "cancelled" in capsys.readouterr().out


def test_a_worker_survives_a_lock_held_past_every_wait(db, monkeypatch):
    monkeypatch.setenv("EQUINAS_LOCK_WAIT_S", "0.3")
    with Store.open(db) as store:
        ids = [c.id for c in store.list_candidates(1)]
        for cid in ids:
            store.approve(cid, "app", "sleep", {"steps": 4, "step_s": 0.1})
    worker = Worker(db, poll_s=0.1, heartbeat_s=0.2, stale_after_s=30,
                    handlers={"sleep": "tests.store.handlers:sleep"})
    done = threading.Event()
    result: list[int] = []

    def run() -> None:
        result.append(worker.run(once=True))
        done.set()

    threading.Thread(target=run, daemon=True).start()
    time.sleep(0.3)
    t = _hold_lock(db, 2.0, threading.Event())  # heartbeats, progress and results all hit the lock
    t.join()
    assert done.wait(60), "the worker did not finish after the lock was released"
    with Store.open(db) as store:
        jobs = store.list_jobs()
        assert result == [3] and [j.status for j in jobs] == ["done"] * 3
        assert all(j.attempts == 1 for j in jobs)
        assert [c.status for c in store.list_candidates(1)] == ["done"] * 3


def test_a_45_s_lock_from_another_process_with_the_default_wait(db, tmp_path):
    """The default wait (120 s) outlasts a 45 s lock; shown here with the lock and wait scaled by 1/30."""
    script = ("import sqlite3,sys,time; c=sqlite3.connect(sys.argv[1], isolation_level=None); "
              "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(1.5); c.execute('ROLLBACK')")
    proc = subprocess.Popen([sys.executable, "-c", script, str(db)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    store = Store.open(db, busy_timeout_s=0.1, lock_wait_s=120 / 30)
    c = store.add_candidate(1, 1, Proposal(spec=default_spec(), origin="app"))
    proc.wait(10)
    assert store.get_candidate(c.id).status == "proposed"
    store.close()


def test_an_app_approval_during_a_long_lock_says_so_and_a_retry_after_it_works(tmp_path, monkeypatch, tiny_dataset):
    from streamlit.testing.v1 import AppTest

    from nas_core import studio

    monkeypatch.setenv("EQUINAS_DB", str(tmp_path / "app.db"))
    monkeypatch.setenv("EQUINAS_DEFAULT_DATASET", str(tiny_dataset))
    monkeypatch.setenv("EQUINAS_FAST", "1")
    store = studio.open_store()
    run_id = studio.create_run(store, studio.default_config(name="locked", engine="heuristic"))
    (cand,) = studio.session(store, run_id).propose("test")
    store.close()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["run"] = str(run_id)
    at.run()
    at.switch_page("pages/search.py").run()
    monkeypatch.setenv("EQUINAS_LOCK_WAIT_S", "0.5")
    db = tmp_path / "app.db"
    started = threading.Event()
    t = _hold_lock(db, 2.5, started)
    at.button(key=f"approve_{cand.id}").click().run()
    t.join()
    assert not at.exception, [e.value for e in at.exception]
    assert any("locked by another program" in e.value for e in at.error), [e.value for e in at.error]
    with Store.open(db) as s:
        assert s.get_candidate(cand.id).status == "proposed" and s.list_jobs() == []
    at.button(key=f"approve_{cand.id}").click().run()
    with Store.open(db) as s:
        assert s.get_candidate(cand.id).status == "queued" and len(s.list_jobs()) == 1
