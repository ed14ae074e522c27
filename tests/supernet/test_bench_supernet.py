"""The super-network benchmark's bookkeeping: ranking only the cached truth, and the closing table."""

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from nas_core.settings import TrainSettings
from nas_core.supernet import calibrate as cal
from nas_core.supernet.space import SupernetSpaceConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_supernet as bench  # noqa: E402

TINY = SupernetSpaceConfig.tiny()


def _record(acc: float, unf: float) -> dict:
    return {"accuracy": acc, "unfairness": unf, "groups": {}, "epochs": 1, "cpu_seconds": 1.0, "seconds": 1.0,
            "macs": 1e6}


def test_cached_truth_only_ranks_the_sub_networks_with_both_seeds_cached(tmp_path, capsys):
    configs = cal.calibration_subnets(TINY, 5)
    train = TrainSettings(image_size=32, max_epochs=1)
    prepared = SimpleNamespace(dataset_hash="a" * 64, split=SimpleNamespace(seed=0))
    cache = cal.TruthCache(tmp_path / "truth.json")
    for i, cfg in enumerate(configs):
        for seed in range(2 if i != 2 else 1):  # the third has only seed 0: left out
            cache.put(cal.truth_key(cfg, train, seed, "a" * 64, 0), _record(0.5 + 0.1 * i + 0.01 * seed, 0.1 * i))
    args = argparse.Namespace(workdir=str(tmp_path), cached_truth_only=True)
    kept, truths = bench._truth(args, configs, TINY, prepared, train)
    assert [c.key for c in kept] == [c.key for i, c in enumerate(configs) if i != 2]
    assert [[t["accuracy"] for t in ts] for ts in truths] == [
        [0.5 + 0.1 * i, 0.5 + 0.1 * i + 0.01] for i in (0, 1, 3, 4)]
    assert "4 of 5 sub-networks have both seeds cached" in capsys.readouterr().out


def test_shards_train_their_own_share_and_the_main_run_joins_them(tmp_path, monkeypatch, capsys):
    configs = cal.calibration_subnets(TINY, 5)
    train = TrainSettings(image_size=32, max_epochs=1)
    prepared = SimpleNamespace(dataset_hash="a" * 64, split=SimpleNamespace(seed=0))
    trained: list[tuple[str, int]] = []

    def fake_train(cfg, space, prepared, train, seed):
        trained.append((cfg.key, seed))
        return _record(0.5 + 0.01 * len(trained), 0.1)

    monkeypatch.setattr(cal, "train_truth", fake_train)
    for k in range(2):
        args = argparse.Namespace(workdir=str(tmp_path), cached_truth_only=False, shard=f"{k}/2")
        kept, _ = bench._truth(args, configs, TINY, prepared, train)
        assert [c.key for c in kept] == [c.key for i, c in enumerate(configs) if i % 2 == k]
    assert sorted(trained) == sorted((c.key, s) for c in configs for s in range(2))  # each once, by some shard
    assert not (tmp_path / "truth.json").exists()
    trained.clear()
    args = argparse.Namespace(workdir=str(tmp_path), cached_truth_only=True, shard=None)
    kept, truths = bench._truth(args, configs, TINY, prepared, train)
    assert len(kept) == 5 and trained == []  # the joined cache holds every result
    assert len(cal.TruthCache(tmp_path / "truth.json").data) == 10
    with pytest.raises(SystemExit, match="K/N"):
        bench._shard("2/2")


def test_summary_table_prints_every_estimator_beside_the_ceiling(capsys):
    truths = [[_record(0.5 + 0.1 * i, 0.1 * i), _record(0.5 + 0.1 * i, 0.1 * i)] for i in range(4)]
    ceiling = cal.rank_figures([{"accuracy": ts[0]["accuracy"], "unfairness": ts[0]["unfairness"]}
                                for ts in truths], truths)
    good = cal.rank_figures([{"accuracy": 0.1 * i, "unfairness": 0.2 * i} for i in range(4)], truths)
    bad = cal.rank_figures([{"accuracy": -0.1 * i, "unfairness": 0.2 * i} for i in range(4)], truths)
    bench._summary_table([("good", good, 0.5, 60.0), ("reversed", bad, 2.0, 120.0)], ceiling, truths)
    lines = capsys.readouterr().out.splitlines()
    row = {ln.split()[0]: ln.split() for ln in lines if ln.split() and ln.split()[0] in ("ceiling", "good", "reversed")}
    assert row["ceiling"][-6:] == ["1.00", "1.00", "1.00", "1.00", "1.00", "1.0"]  # taus, ratios, truth CPU-s
    assert row["good"][1:7] == ["1.00", "1.00", "1.00", "1.00", "1.00", "0.50"]
    assert row["reversed"][1:3] == ["-1.00", "-1.00"] and row["reversed"][-1] == "2.0"
