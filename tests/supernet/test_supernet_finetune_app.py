"""The app's fine-tune action (studio.queue_finetune): the job carries the run's DatasetRef, the result is
an ordinary measured candidate, and the estimates' ranking against the fine-tuned results is counted."""

from __future__ import annotations

import json
import random

import pytest

from nas_core import studio, studio_supernet
from nas_core.cli import main
from nas_core.data.ref import DatasetRef
from nas_core.errors import UserError
from nas_core.records import Proposal
from nas_core.runconfig import RunConfig
from nas_core.settings import Env, TrainSettings
from nas_core.store import Store
from nas_core.supernet import jobs
from nas_core.supernet.space import SupernetSpaceConfig, largest, sample_config, smallest, to_arch_spec
from nas_core.supernet.train import SupernetTrainSettings
from nas_core.worker import run_pending
from tests.factories import make_metrics

TINY = SupernetSpaceConfig.tiny()


@pytest.fixture
def sn_run(tmp_path, monkeypatch, tiny_dataset):
    """A super-network-mode run on a registered data set, a tiny trained super-network, 3 estimates."""
    monkeypatch.setenv(jobs.DIR_ENV, str(tmp_path / "supernets"))
    monkeypatch.setenv("EQUINAS_CACHE_DIR", str(tmp_path / "cache"))
    db = str(tmp_path / "app.db")
    store = Store.open(db)
    train = TrainSettings(image_size=32, seed=0, max_epochs=1, patience=1, n_bootstrap=10, batch_size=48)
    config = RunConfig(dataset=str(tiny_dataset), engine="random", evaluation="supernet", train=train,
                       env=Env(repeats=2, warmup=1, threads=1))
    run_id = studio.create_run(store, config)
    ref = studio.session(store, run_id).config.dataset_ref
    assert isinstance(ref, DatasetRef)
    jobs.run_training(jobs.TrainRequest(dataset=ref, train=train, space=TINY, settings=SupernetTrainSettings(
        max_epochs=1, batch_size=48, n_random=1, calib_batches=2)), store=store)
    configs = [smallest(TINY), largest(TINY)]
    rng = random.Random(3)
    while len(configs) < 3:
        cfg = sample_config(TINY, rng)
        if all(cfg.key != c.key for c in configs):
            configs.append(cfg)
    cands = []
    for i, cfg in enumerate(configs):
        c = store.add_candidate(run_id, 1, Proposal(spec=to_arch_spec(cfg, TINY), origin="random"), status="done")
        store.set_metrics(c.id, make_metrics(acc=0.3 + 0.1 * i, estimate=True))
        cands.append(c.id)
    yield {"db": db, "store": store, "run_id": run_id, "ref": ref, "cands": cands}
    store.close()


def test_finetune_is_queued_with_the_runs_dataset_ref_and_becomes_measured(sn_run, capsys):
    store, ref = sn_run["store"], sn_run["ref"]
    job_ids = [studio.queue_finetune(store, cid) for cid in sn_run["cands"]]
    for job_id, cid in zip(job_ids, sn_run["cands"]):
        job = store.get_job(job_id)
        assert job.kind == "supernet_finetune" and job.candidate_id == cid and job.run_id == sn_run["run_id"]
        assert DatasetRef.from_dict(job.payload["dataset"]) == ref  # the record, not the data set's name
        assert job.payload["split"] == "test"
        assert job.payload["estimate"]["accuracy"] == pytest.approx(store.get_candidate(cid).metrics.test_acc)
        assert store.get_candidate(cid).status == "queued"
    with pytest.raises(UserError, match="wait until it is done"):
        studio.queue_finetune(store, sn_run["cands"][0])

    assert run_pending(sn_run["db"]) == 3
    for job_id, cid in zip(job_ids, sn_run["cands"]):
        assert store.get_job(job_id).status == "done", store.get_job(job_id).error
        c = store.get_candidate(cid)
        assert c.status == "done" and c.metrics is not None
        assert c.metrics.estimate is False  # an ordinary measured candidate now
        assert not studio.can_finetune(c)
        assert studio_supernet.finetune_pairs(store)  # read back from the finished jobs
    with pytest.raises(UserError, match="not a super-network estimate"):
        studio.queue_finetune(store, sn_run["cands"][0])
    board = studio.leaderboard(store, sn_run["run_id"])
    assert not board["estimate"].any()
    overview = studio.supernet_overview(store)
    assert list(overview["sub-networks fine-tuned"]) == [3]
    tau, n = studio.finetune_ranking(store)
    assert n == 3 and (tau is None or -1.0 <= tau <= 1.0)
    assert "3 fine-tuned estimate(s)" in studio.supernet_ranking_text(store)
    # The CLI's status counts them too.
    capsys.readouterr()
    assert main(["supernet", "status", "--db", sn_run["db"], "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["supernets"]
    assert row["finetune_n"] == 3 and row["finetune_tau"] == tau
    assert main(["supernet", "status", "--db", sn_run["db"]]) == 0
    assert "vs 3 fine-tuned: Kendall tau" in capsys.readouterr().out


def test_finetune_ranking_is_kendall_tau_b(monkeypatch):
    from scipy.stats import kendalltau

    est = [0.31, 0.42, 0.42, 0.55, 0.60]
    got = [0.40, 0.38, 0.50, 0.61, 0.61]
    pairs = [{"checkpoint": "/x.pt", "candidate": i, "estimate": e, "measured": g}
             for i, (e, g) in enumerate(zip(est, got))]
    monkeypatch.setattr(studio_supernet, "finetune_pairs", lambda store: pairs)
    tau, n = studio_supernet.finetune_ranking(None)
    assert n == 5
    assert tau == pytest.approx(kendalltau(est, got).statistic)
    assert studio_supernet.finetune_ranking(None, "/other.pt") == (None, 0)
    monkeypatch.setattr(studio_supernet, "finetune_pairs", lambda store: pairs[:2])
    assert studio_supernet.finetune_ranking(None) == (None, 2)
