"""Ranking honesty: the calibration sub-networks, rank figures, the truth cache, calibrate and its CLI."""

import json
import math

import pytest

from nas_core.cli import main
from nas_core.settings import TrainSettings
from nas_core.store import Store
from nas_core.supernet import calibrate as cal
from nas_core.supernet import checkpoint as ck
from nas_core.supernet import jobs
from nas_core.supernet.registry import list_supernets, register
from nas_core.supernet.space import (
    SupernetSpaceConfig,
    count_subnet_macs,
    largest,
    smallest,
)
from nas_core.supernet.train import SupernetTrainSettings, train_supernet

TINY = SupernetSpaceConfig.tiny()
SCRATCH = TrainSettings(image_size=32, max_epochs=1, batch_size=48, n_bootstrap=0)


def test_calibration_subnets_span_the_space_and_are_deterministic():
    space = SupernetSpaceConfig()
    a = cal.calibration_subnets(space, 24)
    assert [c.key for c in a] == [c.key for c in cal.calibration_subnets(space, 24)]
    assert len({c.key for c in a}) == 24
    assert a[0] == smallest(space) and a[1] == largest(space)
    macs = sorted(count_subnet_macs(c, space, 8, 64) for c in a[2:])
    # Quantiles of MACs: the middle ones are spread out, not bunched at the mode.
    assert macs[-1] > 2 * macs[0]
    kernels = {k for c in a for ks in c.kernels for k in ks}
    expands = {e for c in a for es in c.expands for e in es}
    depths = {(s, d) for c in a for s, d in enumerate(c.depths)}
    assert kernels == set(space.kernels) and expands == set(space.expands)
    assert depths == {(s, d) for s, st in enumerate(space.stages) for d in st.depths}
    with pytest.raises(ValueError):
        cal.calibration_subnets(space, 1)


def _t(acc, unf, groups=None):
    return {"accuracy": acc, "unfairness": unf, "groups": groups or {}, "macs": 1.0}


def test_rank_figures_against_seed_mean_with_ceiling_and_group_error():
    truths = [[_t(0.1 * i, 0.05 * i, {"sex=male": 0.1 * i}), _t(0.1 * i + 0.01, 0.05 * (5 - i))] for i in range(5)]
    perfect = [{"accuracy": 0.1 * i, "unfairness": 0.0, "groups": {"sex=male": 0.1 * i + 0.02}} for i in range(5)]
    figs = cal.rank_figures(perfect, truths)
    assert figs["n"] == 5
    assert figs["accuracy"]["tau"] == pytest.approx(1.0) and figs["accuracy"]["ceiling_tau"] == pytest.approx(1.0)
    # Unfairness: constant estimates cannot rank (None); seeds disagree completely (-1).
    assert figs["unfairness"]["tau"] is None and figs["unfairness"]["ceiling_tau"] == pytest.approx(-1.0)
    assert figs["group_error"] == pytest.approx(0.02)
    reverse = [{"accuracy": -0.1 * i, "unfairness": 0.05 * i} for i in range(5)]
    figs = cal.rank_figures(reverse, truths)
    assert figs["accuracy"]["tau"] == pytest.approx(-1.0) and figs["group_error"] is None
    ok = cal.ranking_ok(figs)
    assert ok["accuracy"] is False and ok["unfairness"] is None  # ceiling <= 0: nothing can be judged


def test_ranking_targets_follow_the_issue():
    def figs(tau, ceil, utau, uceil):
        return {"accuracy": {"tau": tau, "ceiling_tau": ceil}, "unfairness": {"tau": utau, "ceiling_tau": uceil}}

    assert cal.ranking_ok(figs(0.6, 0.9, 0.4, 0.9)) == {"accuracy": True, "unfairness": True}
    assert cal.ranking_ok(figs(0.59, 0.9, 0.39, 0.9)) == {"accuracy": False, "unfairness": False}
    # A ceiling below 0.75 lowers the accuracy target to 0.8 x the ceiling.
    assert cal.ranking_ok(figs(0.41, 0.5, 0.25, 0.3))["accuracy"] is True
    assert cal.ranking_ok(figs(0.39, 0.5, 0.23, 0.3)) == {"accuracy": False, "unfairness": False}
    assert cal.ranking_ok(figs(0.25, 0.5, 0.25, 0.3))["unfairness"] is True


def test_truth_cache_round_trip_and_keys(tmp_path):
    cfg = smallest(TINY)
    k0 = cal.truth_key(cfg, SCRATCH, 0, "abc", 0)
    assert k0 != cal.truth_key(cfg, SCRATCH, 1, "abc", 0)
    assert k0 != cal.truth_key(cfg, TrainSettings(image_size=32, max_epochs=2), 0, "abc", 0)
    assert k0 != cal.truth_key(cfg, SCRATCH, 0, "abd", 0)
    assert k0 != cal.truth_key(largest(TINY), SCRATCH, 0, "abc", 0)
    c = cal.TruthCache(tmp_path / "t.json")
    c.put(k0, {"accuracy": 0.5})
    assert cal.TruthCache(tmp_path / "t.json").get(k0) == {"accuracy": 0.5}
    (tmp_path / "bad.json").write_text("{not json")
    assert cal.TruthCache(tmp_path / "bad.json").get(k0) is None


@pytest.fixture(scope="module")
def trained(tiny_prepared, tmp_path_factory):
    root = tmp_path_factory.mktemp("supernets")
    path = jobs.checkpoint_path(tiny_prepared.dataset_hash, 32, tiny_prepared.split.seed, TINY, root=root)
    settings = SupernetTrainSettings(max_epochs=1, batch_size=48, n_random=1, calib_batches=2)
    train_supernet(tiny_prepared, path, TINY, settings, dataset="tiny")
    return root, path


def test_calibrate_stores_tau_ceiling_and_cost_and_reuses_the_cache(trained, tiny_prepared, tmp_path):
    _, path = trained
    cache = cal.TruthCache(tmp_path / "truth.json")
    seen = []
    res = cal.calibrate(path, tiny_prepared, SCRATCH, n=3, seeds=2, cache=cache, progress=seen.append)
    assert res.n == 3 and res.seeds == 2 and res.trained == 6 and res.cpu_seconds > 0
    assert seen[-1]["fraction"] == 1.0 and all("eta_seconds" in s and s["message"] for s in seen)
    meta = ck.read_meta(path)
    assert meta.kendall_n == 3 and meta.calibration["n"] == 3
    assert meta.kendall_tau == meta.calibration["figures"]["accuracy"]["tau"]
    assert set(meta.calibration["figures"]) >= {"accuracy", "unfairness", "group_error"}
    again = cal.calibrate(path, tiny_prepared, SCRATCH, n=3, seeds=2, cache=cache)
    assert again.trained == 0  # every from-scratch result came from the cache
    assert again.figures["accuracy"]["ceiling_tau"] == res.figures["accuracy"]["ceiling_tau"]
    text = cal.describe(meta.calibration)
    assert "ceiling" in text and "3 sub-networks x 2 seeds" in text and "CPU-min" in text
    assert "not measured" in cal.describe(None)


def test_calibrate_job_refuses_a_bad_payload():
    with pytest.raises(jobs.PayloadError, match="checkpoint"):
        cal.calibrate_job({"n": 3})
    with pytest.raises(jobs.PayloadError, match="unknown"):
        cal.calibrate_job({"checkpoint": "x.pt", "bogus": 1})


def test_cli_calibrate_status_and_finetune(trained, tiny_dataset, tmp_path, monkeypatch, capsys):
    _, src = trained
    monkeypatch.setenv(jobs.DIR_ENV, str(tmp_path / "sn"))
    monkeypatch.setenv("EQUINAS_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "sn" / src.name
    path.parent.mkdir()
    path.write_bytes(src.read_bytes())
    ck.update_meta(path, dataset=str(tiny_dataset), kendall_tau=None, kendall_n=0, calibration=None)
    db = str(tmp_path / "x.db")
    store = Store.open(db)
    register(store, path, ck.read_meta(path))
    store.close()
    assert main(["supernet", "status", "--db", db]) == 0
    assert "ranking not measured yet" in capsys.readouterr().out
    assert main(["supernet", "calibrate", "--db", db, "--n", "3", "--epochs", "1", "--threads", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 3 and out["trained"] == 6 and "ceiling_tau" in out["figures"]["accuracy"]
    assert (tmp_path / "sn" / (src.name + ".truth.json")).is_file()
    store = Store.open(db)
    row = list_supernets(store)[0]
    store.close()
    assert row.kendall_n == 3 and row.meta["calibration"]["n"] == 3
    assert main(["supernet", "status", "--db", db]) == 0
    text = capsys.readouterr().out
    assert "seed-vs-seed ceiling" in text and "3 sub-networks x 2 seeds" in text
    assert main(["supernet", "calibrate", "--db", db, "--n", "2"]) == 2
    assert "--n must be at least 3" in capsys.readouterr().err

    assert main(["supernet", "finetune", "--db", db, "--config", "smallest", "--epochs", "1", "--threads", "1",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["metrics"]["estimate"] is False and res["from_scratch"] is False
    assert res["metrics"]["epochs"] == 1 and not math.isnan(res["metrics"]["test_acc"])
    assert main(["supernet", "finetune", "--db", db, "--config", "nonsense"]) == 2
    assert "is not largest, smallest, random" in capsys.readouterr().err


def test_studio_shows_tau_and_ceiling_and_queues_calibration(trained, tmp_path):
    from nas_core import studio
    from nas_core.errors import UserError

    _, src = trained
    path = tmp_path / src.name
    path.write_bytes(src.read_bytes())
    store = Store.open(str(tmp_path / "s.db"))
    try:
        with pytest.raises(UserError, match="no trained super-network"):
            studio.queue_supernet_calibration(store)
        ck.update_meta(path, kendall_tau=None, kendall_n=0, calibration=None)
        register(store, path, ck.read_meta(path))
        assert "not measured yet" in studio.supernet_ranking_text(store)
        job = store.get_job(studio.queue_supernet_calibration(store, n=4))
        assert job.kind == "supernet_calibrate" and job.payload["n"] == 4
        assert job.payload["checkpoint"] == str(path.resolve())
        figs = {"accuracy": {"tau": 0.5, "ceiling_tau": 0.7}, "unfairness": {"tau": 0.3, "ceiling_tau": 0.4},
                "group_error": 0.02}
        res = cal.CalibrationResult(figs, 8, 2, 600.0, 700.0, 16)
        register(store, path, ck.update_meta(path, kendall_tau=0.5, kendall_n=8, calibration=res.to_dict()))
        row = studio.supernet_overview(store).iloc[0]
        assert row["Kendall tau vs scratch"] == 0.5 and row["noise ceiling (seed vs seed)"] == 0.7
        assert row["Unfairness tau"] == 0.3 and row["Unfairness ceiling"] == 0.4
        text = studio.supernet_ranking_text(store)
        assert "accuracy 0.50 (seed-vs-seed ceiling 0.70)" in text and "10.0 CPU-min" in text
    finally:
        store.close()
