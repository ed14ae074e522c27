"""The worker with real processes: results, failures, cancellation, SIGTERM, several workers, kill -9."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from nas_core.records import Proposal
from nas_core.space import default_spec
from nas_core.store import Store
from nas_core.worker import Worker, start_worker_process, worker_status
from tests.store.helpers import proposals, wait_until

ROOT = Path(__file__).resolve().parents[1]
HANDLER = "sleep=tests.store.handlers:sleep"
HANDLERS = {"sleep": "tests.store.handlers:sleep", "ignores_stop": "tests.store.handlers:ignores_stop",
            "bad_metrics": "tests.store.handlers:bad_metrics"}


def _worker_cmd(db, *extra):
    return [sys.executable, "-m", "nas_core", "worker", "--db", str(db), "--poll", "0.05", "--heartbeat", "0.2",
            "--stale-after", "5", "--handler", HANDLER, *extra]


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _queue(store, n, payload, seed=0, max_attempts=3, kind="sleep"):
    run = store.create_run(f"run-{seed}", "random", None, {})
    jobs = []
    for p in proposals(n, seed=seed):
        c = store.add_candidate(run.id, 1, p)
        jobs.append(store.approve(c.id, "tester", kind, {**payload, "tag": c.id}, max_attempts=max_attempts))
    return run, jobs


def _wait(cond, timeout=30.0, step=0.05):
    return wait_until(cond, timeout, step)


def test_local_worker_runs_results_failures_and_unknown_kinds(tmp_path):
    db = tmp_path / "w.db"
    store = Store.open(db)
    run, jobs = _queue(store, 3, {"steps": 3, "step_s": 0.01, "metrics": True})
    c_fail = store.add_candidate(run.id, 2, Proposal(default_spec(), "llm"))
    j_fail = store.approve(c_fail.id, "t", "sleep", {"steps": 1, "fail": "the spec exceeds the MAC cap"})
    c_bug = store.add_candidate(run.id, 2, proposals(1, seed=9)[0])
    j_bug = store.approve(c_bug.id, "t", "sleep", {"steps": 1, "crash": True})
    j_bad = store.enqueue_job("bad_metrics", {}, run_id=run.id,
                              candidate_id=store.add_candidate(run.id, 2, proposals(1, seed=11)[0]).id)
    j_unknown = store.enqueue_job("no_such_kind", {})
    w = Worker(db, poll_s=0.05, heartbeat_s=0.1, stale_after_s=5, handlers=HANDLERS)
    assert w.run(once=True) == 7
    for j in jobs:
        job = store.get_job(j.id)
        assert job.status == "done" and job.progress == {"epoch": 3, "fraction": 1.0, "train_loss": 1 / 3,
                                                     "message": "epoch 3"}
        cand = store.get_candidate(job.candidate_id)
        assert cand.status == "done" and cand.metrics.test_acc == 0.7
        assert len(store.group_metrics(cand.id)) == 5
    assert store.get_job(j_fail.id).error == "the spec exceeds the MAC cap"
    assert store.get_candidate(c_fail.id).status == "failed"
    assert store.get_job(j_bug.id).error == "ZeroDivisionError: bug in handler"
    assert store.get_job(j_bad.id).status == "failed" and "malformed metrics" in store.get_job(j_bad.id).error
    assert "no handler for job kind 'no_such_kind'" in store.get_job(j_unknown.id).error
    ws = worker_status(store)
    assert len(ws) == 1 and ws[0].status == "stopped" and not ws[0].alive
    assert store.integrity_check() == "ok"


def test_cancel_a_running_job(tmp_path):
    db = tmp_path / "c.db"
    store = Store.open(db)
    _, (job,) = _queue(store, 1, {"steps": 400, "step_s": 0.01})
    w = Worker(db, poll_s=0.05, heartbeat_s=0.1, stale_after_s=5, handlers=HANDLERS)
    t = threading.Thread(target=w.run, kwargs={"once": True})
    t.start()
    _wait(lambda: store.get_job(job.id).progress.get("epoch", 0) >= 2)
    alive = worker_status(store)
    assert len(alive) == 1 and alive[0].alive
    store.cancel_job(job.id, "ann")
    t.join(timeout=20)
    assert not t.is_alive()
    got = store.get_job(job.id)
    assert got.status == "cancelled" and got.progress["epoch"] < 400
    assert store.get_candidate(job.candidate_id).status == "cancelled"
    actors = [(e.to_status, e.actor) for e in store.events(job_id=job.id) if e.entity == "job"]
    assert ("running", "ann") in actors and actors[-1] == ("cancelled", w.worker_id)


def test_sigterm_requeues_an_unfinished_job_and_exits_cleanly(tmp_path):
    db = tmp_path / "s.db"
    store = Store.open(db)
    _, (job,) = _queue(store, 1, {"steps": 1000, "step_s": 0.01})
    proc = subprocess.Popen(_worker_cmd(db, "--finish-grace", "0.2", "--stop-grace", "5"), cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait(lambda: store.get_job(job.id).progress.get("epoch", 0) >= 1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    got = store.get_job(job.id)
    assert got.status == "queued" and got.attempts == 0 and got.worker_id is None
    assert store.get_candidate(job.candidate_id).status == "queued"
    assert [w.status for w in store.worker_status()] == ["stopped"]


def test_sigterm_lets_a_job_finish_within_the_grace(tmp_path):
    db = tmp_path / "g.db"
    store = Store.open(db)
    _, (job,) = _queue(store, 1, {"steps": 15, "step_s": 0.05})
    proc = subprocess.Popen(_worker_cmd(db, "--finish-grace", "20"), cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait(lambda: store.get_job(job.id).status == "running")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert store.get_job(job.id).status == "done"


def test_worker_that_ignores_stop_is_requeued_after_the_grace(tmp_path):
    db = tmp_path / "i.db"
    store = Store.open(db)
    job = store.enqueue_job("ignores_stop", {"seconds": 60})
    w = Worker(db, poll_s=0.05, heartbeat_s=0.1, stale_after_s=5, handlers=HANDLERS, finish_grace_s=0.1,
               stop_grace_s=0.3)
    t = threading.Thread(target=w.run)
    t.start()
    _wait(lambda: store.get_job(job.id).status == "running")
    w.request_stop()
    t.join(timeout=10)
    assert not t.is_alive() and store.get_job(job.id).status == "queued"


def test_job_of_a_silent_remote_worker_is_requeued_and_finished(tmp_path):
    db = tmp_path / "stale.db"
    store = Store.open(db)
    _, (job,) = _queue(store, 1, {"steps": 2, "step_s": 0.01})
    store.register_worker("far-away", pid=4242, host="another-host")  # pid means nothing here
    store.claim_job("far-away")
    store.conn.execute("UPDATE jobs SET heartbeat_at = heartbeat_at - 30 WHERE id=?", (job.id,))
    w = Worker(db, poll_s=0.05, heartbeat_s=0.1, stale_after_s=10, handlers=HANDLERS)
    assert w.run(once=True) == 1
    got = store.get_job(job.id)
    assert got.status == "done" and got.attempts == 2 and got.worker_id == w.worker_id
    moves = [(e.from_status, e.to_status, e.actor) for e in store.events(job_id=job.id) if e.entity == "job"]
    assert ("running", "queued", w.worker_id) in moves


def test_two_workers_never_share_a_job(tmp_path):
    db = tmp_path / "two.db"
    log = tmp_path / "ran.log"
    store = Store.open(db)
    _, jobs = _queue(store, 12, {"steps": 2, "step_s": 0.02, "log": str(log)})
    procs = [subprocess.Popen(_worker_cmd(db, "--once", "--json"), cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    claimed = [json.loads(o[0])["claimed"] for o in outs]
    assert sum(claimed) == 12
    assert all(store.get_job(j.id).status == "done" for j in jobs)
    assert len(log.read_text().splitlines()) == 12
    starts = Counter(e.job_id for e in store.events() if e.entity == "job" and e.to_status == "running")
    assert set(starts.values()) == {1} and len(starts) == 12


def test_start_worker_process_runs_in_background(tmp_path):
    db = tmp_path / "bg.db"
    store = Store.open(db)
    _, (job,) = _queue(store, 1, {"steps": 2, "step_s": 0.01})
    pid = start_worker_process(db, extra_args=["--poll", "0.05", "--handler", HANDLER])
    try:
        _wait(lambda: store.get_job(job.id).status == "done")
        _wait(lambda: any(w.pid == pid and w.alive for w in worker_status(store)))
    finally:
        os.kill(pid, signal.SIGTERM)
        _wait(lambda: any(w.pid == pid and w.status == "stopped" for w in worker_status(store)))
        os.waitpid(pid, 0)
    assert (tmp_path / "bg.db.worker.log").exists()


def test_kill_9_twenty_times_loses_nothing_and_runs_nothing_twice(tmp_path):
    db = tmp_path / "k.db"
    log = tmp_path / "completed.log"
    store = Store.open(db)
    payload = {"steps": 6, "step_s": 0.06, "metrics": True, "log": str(log)}
    runs, jobs = [], []
    run, batch = _queue(store, 10, payload, seed=1, max_attempts=1000)
    runs.append(run)
    jobs += batch
    rng = random.Random(20261123)
    kills = 0
    while kills < 20:
        if not store.list_jobs(status=["queued", "running"]):
            run, batch = _queue(store, 4, payload, seed=100 + kills, max_attempts=1000)
            runs.append(run)
            jobs += batch
        proc = subprocess.Popen(_worker_cmd(db), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        # Kill while a job runs, at a random moment of it (also right around the result's commit).
        marker = f":{proc.pid}:"
        _wait(lambda m=marker, p=proc: any(j.worker_id and m in j.worker_id for j in store.list_jobs(status="running"))
              or p.poll() is not None, timeout=30, step=0.02)
        time.sleep(rng.uniform(0.0, 0.5))
        proc.kill()
        proc.wait()
        kills += 1
    final = subprocess.run(_worker_cmd(db, "--once"), cwd=ROOT, env=_env(), capture_output=True, text=True,
                           timeout=120)
    assert final.returncode == 0, final.stderr
    assert store.integrity_check() == "ok"
    all_jobs = store.list_jobs()
    assert len(all_jobs) == len(jobs) and {j.status for j in all_jobs} == {"done"}
    done_events = Counter(e.job_id for e in store.events(limit=None) if e.entity == "job" and e.to_status == "done")
    assert all(done_events[j.id] == 1 for j in jobs) and len(done_events) == len(jobs)
    for r in runs:
        for c in store.list_candidates(r.id):
            assert c.status == "done" and c.metrics is not None and c.metrics.test_acc == 0.7
            assert len(store.group_metrics(c.id)) == 5  # written once, never duplicated
    assert store.conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == len(jobs)
    # A job's handler may have finished and been killed before its commit (then it ran again),
    # but every job's result was committed exactly once, and no job ran after its result was stored.
    lines = [line.split() for line in log.read_text().splitlines()]
    assert {int(t) for t, _, _ in lines} == {j.candidate_id for j in jobs}
    ended = {j.candidate_id: j.ended_at for j in all_jobs}
    assert all(float(t_done) <= ended[int(tag)] for tag, t_done, _ in lines)
    requeues = [e for e in store.events(limit=None) if e.entity == "job" and e.to_status == "queued" and e.from_status]
    assert requeues, "the kills should have interrupted some jobs"
