"""The Ray executor on a real local Ray instance: a small search's evaluations, progress, failures, cancel."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import ray

from nas_core.evaluator import EvalRequest
from nas_core.executors import RayExecutor
from nas_core.records import Proposal
from nas_core.settings import Env, TrainSettings
from nas_core.space import ArchSpec
from nas_core.store import Store
from nas_core.testing import ExecutorTestCase
from nas_core.worker import Worker
from tests.store.helpers import proposals

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]
HANDLERS = {"sleep": "tests.store.handlers:sleep"}


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()


def _wait(cond, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _tiny_spec(width: int) -> ArchSpec:
    return ArchSpec.from_dict({
        "stem": {"out_channels": 8, "kernel": 3, "stride": 2},
        "blocks": [{"type": "conv", "out_channels": width, "kernel": 3, "stride": 2, "pool": "avg"}],
        "head": {"hidden": 0, "dropout": 0.0},
    })


def test_small_search_evaluations_run_as_ray_tasks(ray_cluster, tmp_path, tiny_dataset):
    db = tmp_path / "ray.db"
    store = Store.open(db)
    run = store.create_run("ray-search", "random", None, {"evaluation": "scratch"})
    train = TrainSettings(max_epochs=1, patience=1, batch_size=64, image_size=32, n_bootstrap=0, augment=False)
    env = Env(threads=1, batch_size=2, warmup=1, repeats=2)
    cands = []
    for width in (8, 16):
        spec = _tiny_spec(width)
        c = store.add_candidate(run.id, 1, Proposal(spec, "random"))
        req = EvalRequest(dataset=str(tiny_dataset), arch=spec, train=train, env=env, device="cpu",
                          cache_dir=str(tmp_path / "cache"))
        store.approve(c.id, "tester", "evaluate", req.to_dict())
        cands.append(c)
    executor = RayExecutor(num_cpus=1)
    assert executor.capacity == 1
    w = Worker(db, executor, poll_s=0.05, heartbeat_s=0.5, stale_after_s=120)
    assert w.run(once=True) == 2
    for c in cands:
        got = store.get_candidate(c.id)
        job = store.list_jobs(candidate_id=c.id)[0]
        assert got.status == "done", job.error
        assert got.metrics is not None and 0.0 <= got.metrics.test_acc <= 1.0 and got.metrics.epochs == 1
        assert got.metrics.hardware.params > 0 and store.group_metrics(c.id)
        assert job.progress.get("epoch") == 1  # progress came back from the task through the hub actor
    df = store.leaderboard(run.id)
    assert df["accuracy"].notna().all() and df["params"].iloc[0] < df["params"].iloc[1]


def test_progress_failures_and_cancel_through_ray(ray_cluster, tmp_path):
    db = tmp_path / "ray2.db"
    store = Store.open(db)
    run = store.create_run("r", "random", None, {})
    ps = proposals(3, seed=4)
    ok = store.approve(store.add_candidate(run.id, 1, ps[0]).id, "t", "sleep", {"steps": 3, "step_s": 0.05})
    bad = store.approve(store.add_candidate(run.id, 1, ps[1]).id, "t", "sleep", {"steps": 1, "fail": "bad spec"})
    long = store.approve(store.add_candidate(run.id, 1, ps[2]).id, "t", "sleep", {"steps": 2000, "step_s": 0.01})
    w = Worker(db, RayExecutor(num_cpus=1), poll_s=0.05, heartbeat_s=0.2, stale_after_s=60, handlers=HANDLERS)
    t = threading.Thread(target=w.run, kwargs={"once": True})
    t.start()
    _wait(lambda: store.get_job(long.id).progress.get("epoch", 0) >= 3)
    store.cancel_job(long.id, "ann")
    t.join(timeout=60)
    assert not t.is_alive()
    done = store.get_job(ok.id)
    assert done.status == "done" and done.progress["epoch"] == 3
    assert done.result["pid"] != os.getpid()  # it ran in a Ray worker process
    assert store.get_job(bad.id).status == "failed" and store.get_job(bad.id).error == "bad spec"
    assert store.get_job(long.id).status == "cancelled"
    assert store.get_candidate(long.candidate_id).status == "cancelled"


def test_ray_runs_several_jobs_at_once(ray_cluster, tmp_path):
    db = tmp_path / "ray4.db"
    log = tmp_path / "ran.log"
    store = Store.open(db)
    run = store.create_run("r", "random", None, {})
    # 8 s each: long enough that the second task's Ray worker process (started on demand, which takes
    # seconds on a busy machine) begins while the first still runs. The handlers log when they really
    # ran: the worker's "running" event only says when a job was handed to Ray.
    jobs = [store.approve(store.add_candidate(run.id, 1, p).id, "t", "sleep",
                          {"steps": 40, "step_s": 0.2, "log_start": str(log), "tag": f"job{i}"})
            for i, p in enumerate(proposals(2, seed=8))]
    executor = RayExecutor(num_cpus=0.5)  # half a CPU each: two tasks fit the one-CPU instance
    assert executor.capacity == 2
    w = Worker(db, executor, poll_s=0.05, heartbeat_s=0.2, stale_after_s=60, handlers=HANDLERS)
    assert w.run(once=True) == 2
    ev = [e for e in store.events() if e.entity == "job"]
    started = [e.id for e in ev if e.to_status == "running"]
    finished = [e.id for e in ev if e.to_status == "done"]
    assert len(started) == 2 and max(started) < min(finished)  # both handed out before either finished
    spans: dict[str, dict[str, float]] = {}
    for line in log.read_text().splitlines():
        tag, what, t, _pid = line.split()
        spans.setdefault(tag, {})[what] = float(t)
    a, b = spans["job0"], spans["job1"]
    assert a["start"] < b["end"] and b["start"] < a["end"], spans  # they ran at the same time
    pids = {store.get_job(j.id).result["pid"] for j in jobs}
    assert len(pids) == 2 and os.getpid() not in pids  # so in two processes, neither the worker's


def test_worker_cli_joins_an_existing_cluster(ray_cluster, tmp_path):
    db = tmp_path / "ray3.db"
    store = Store.open(db)
    run = store.create_run("r", "random", None, {})
    jobs = [store.approve(store.add_candidate(run.id, 1, p).id, "t", "sleep", {"steps": 2, "step_s": 0.01})
            for p in proposals(2, seed=6)]
    address = ray.get_runtime_context().gcs_address
    proc = subprocess.run(
        [sys.executable, "-m", "nas_core", "worker", "--db", str(db), "--executor", "ray", "--ray-address", address,
         "--once", "--poll", "0.05", "--handler", "sleep=tests.store.handlers:sleep", "--json"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all(store.get_job(j.id).status == "done" for j in jobs)
    assert [w.executor for w in store.worker_status()] == ["ray"]


@pytest.mark.usefixtures("ray_cluster")
class TestRayExecutorContract(ExecutorTestCase):
    """The executor contract (:mod:`nas_core.testing`, as in ``tests/test_contracts.py``), on this module's Ray
    instance: starting a second one for it cost about 8 s of the suite."""

    def make_executor(self):
        return RayExecutor(num_cpus=0.5)  # two tasks at once on the one-CPU instance: the capacity rule runs
