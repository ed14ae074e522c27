"""Super-network jobs through the real worker: train, then measure an approved candidate."""

import pytest

from nas_core.records import Proposal
from nas_core.runconfig import RunConfig
from nas_core.settings import Env, TrainSettings
from nas_core.store import Store
from nas_core.supernet import jobs
from nas_core.supernet.registry import list_supernets
from nas_core.supernet.space import SupernetSpaceConfig, largest, to_arch_spec
from nas_core.supernet.train import SupernetTrainSettings
from nas_core.worker import run_pending

TINY = SupernetSpaceConfig.tiny()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv(jobs.DIR_ENV, str(tmp_path / "supernets"))
    monkeypatch.setenv("EQUINAS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_train_job_then_measure_job_in_the_worker(env, tiny_dataset):
    db = str(env / "w.db")
    train = TrainSettings(image_size=32, seed=0, max_epochs=1, n_bootstrap=10)
    req = jobs.TrainRequest(
        dataset=str(tiny_dataset),
        train=train,
        space=TINY,
        settings=SupernetTrainSettings(max_epochs=1, batch_size=48, n_random=1, calib_batches=2),
        db=db,
    )
    store = Store.open(db)
    job = store.enqueue_job("supernet_train", req.to_dict(), actor="test")
    store.close()
    assert run_pending(db) == 1
    store = Store.open(db)
    done = store.get_job(job.id)
    assert done.status == "done", done.error
    assert done.result["complete"] is True and done.result["epoch"] == 1
    assert done.progress.get("epoch") == 1  # per-epoch progress reached the job row
    assert [r.status for r in list_supernets(store)] == ["trained"]

    config = RunConfig(
        dataset=str(tiny_dataset),
        engine="random",
        evaluation="supernet",
        train=train,
        env=Env(repeats=2, warmup=1),
    )
    run = store.create_run("sn", "random", str(tiny_dataset), config.to_dict())
    spec = to_arch_spec(largest(TINY), TINY)
    cand = store.add_candidate(run.id, 0, Proposal(spec=spec, origin="random"))
    payload = jobs.make_payload(store.get_run(run.id), spec, store=store)
    store.approve(cand.id, "test", "supernet_measure", payload)
    store.close()
    assert run_pending(db) == 1
    store = Store.open(db)
    c = store.get_candidate(cand.id)
    assert c.status == "done", c.error
    assert c.metrics is not None and c.metrics.estimate
    flag = store.conn.execute("SELECT estimate FROM metrics WHERE candidate_id = ?", (cand.id,)).fetchone()[0]
    assert flag == 1
    store.close()
