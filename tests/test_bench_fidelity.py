"""The fidelity benchmark's parts: its spec list, rank statistics, training subset, cache and one training."""

import dataclasses

import numpy as np
import pytest

from benchmarks import bench_fidelity as bf
from nas_core.settings import TrainSettings
from nas_core.space import Choices, validate


def test_spec_list_is_deterministic_valid_and_covers_the_space():
    specs = bf.benchmark_specs()
    assert len(specs) >= 24 and len({s.key for s in specs}) == len(specs)
    assert [s.key for s in specs] == [s.key for s in bf.benchmark_specs()]
    choices = Choices.default()
    for s in specs:
        assert validate(s, choices, 64) == [], s
    blocks = [b for s in specs for b in s.blocks]
    assert {b.type for b in blocks} == {"conv", "residual", "mbconv", "dwsep"}
    assert {b.norm for b in blocks} == {"batch", "group", "layer", "instance", "none"}
    assert {b.kernel for b in blocks} == {3, 5, 7} and {s.stem.stride for s in specs} == {1, 2}
    depths = [len(s.blocks) for s in specs]
    assert min(depths) == 2 and max(depths) >= 6


def test_rank_agreement_matches_scipy_and_skips_missing():
    a = [0.1, 0.2, 0.3, 0.4, None]
    b = [0.1, 0.3, 0.2, 0.4, 0.9]
    tau, rho = bf.rank_agreement(a, b)
    assert tau == pytest.approx(4 / 6) and rho == pytest.approx(0.8)
    assert np.isnan(bf.rank_agreement([1, None], [1, 2])[0])


def test_train_subset_keeps_every_class_share_and_other_parts(tiny_prepared):
    split = tiny_prepared.split
    labels = tiny_prepared.labels.numpy()
    sub = bf._train_subset(split, labels, 0.25, seed=0)
    assert set(sub.train) <= set(split.train) and np.array_equal(sub.test, split.test)
    assert abs(len(sub.train) - 0.25 * len(split.train)) <= len(np.unique(labels))
    assert set(labels[sub.train]) == set(labels[split.train])
    assert bf._train_subset(split, labels, 1.0, seed=0) is split


def test_cache_key_follows_spec_settings_and_data():
    s0, s1 = bf.benchmark_specs()[:2]
    t = TrainSettings()
    key = bf._cache_path(s0, t, "h", 1.0)
    assert key == bf._cache_path(s0, TrainSettings(), "h", 1.0)
    others = [bf._cache_path(s1, t, "h", 1.0), bf._cache_path(s0, dataclasses.replace(t, seed=1), "h", 1.0),
              bf._cache_path(s0, t, "other", 1.0), bf._cache_path(s0, t, "h", 0.25),
              bf._cache_path(s0, dataclasses.replace(t, schedule="onecycle"), "h", 1.0)]
    assert len({key, *others}) == 6


def test_train_at_fidelity_and_the_estimates(tiny_prepared):
    spec = bf.benchmark_specs()[5]  # the tiny one
    s = TrainSettings(image_size=32, max_epochs=1, patience=1, batch_size=32, n_bootstrap=20)
    r = bf.train_at_fidelity(spec, tiny_prepared, s)
    assert 0 <= r.test_acc <= 1 and r.epochs == 1 and r.cpu_s > 0 and r.threads >= 1
    assert bf.FidelityResult.from_dict(r.to_dict()) == r
    names = [e.name for e in bf.all_estimates()]
    assert {"1 epoch", "half resolution", "1/4 of training split", "1 epoch @ half res"} <= set(names)
    half = next(e for e in bf.all_estimates() if e.name == "half resolution")
    assert half.settings(TrainSettings(image_size=64)).image_size == 32


def _fake_training(monkeypatch, tmp_path):
    """The benchmark over a fake data set and a fake training: returns the list of (spec key, settings) trained."""
    import types

    import nas_core.data.prepare as prep

    monkeypatch.setattr(bf, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(bf, "TRUTH", tmp_path / "cache" / "truth")
    fake = types.SimpleNamespace(labels=np.zeros(10), split=types.SimpleNamespace(test=np.arange(4)),
                                 dataset_hash="fake")
    monkeypatch.setattr(prep, "prepare", lambda *a, **k: fake)
    monkeypatch.setattr(bf, "_dataset", lambda args: tmp_path)
    keys = [s.key for s in bf.benchmark_specs()]
    trained = []

    def train(spec, prepared, settings, train_fraction=1.0):
        trained.append((spec.key, settings.seed, settings.image_size, settings.max_epochs, train_fraction))
        i = keys.index(spec.key)
        acc = 0.5 + 0.01 * i + 0.001 * settings.seed  # ranks the same with both seeds
        return bf.FidelityResult(test_acc=acc, unfairness=0.1 - 0.001 * i, unfairness_ci=(0.05, 0.15),
                                 balanced_acc=acc, main_group_halfwidth=0.04, epochs=settings.max_epochs,
                                 cpu_s=1.0, wall_s=1.0, threads=1)

    monkeypatch.setattr(bf, "train_at_fidelity", train)
    return trained


def _args(**kw):
    import argparse

    base = dict(quick=False, dataset=None, specs=6, epochs=0, threads=1, no_cache=False, no_estimates=False,
                recipes=False, json=None, shard=None, cached_only=False)
    return argparse.Namespace(**{**base, **kw})


def test_shards_train_their_share_once_and_the_main_run_reads_the_cache(monkeypatch, tmp_path, capsys):
    trained = _fake_training(monkeypatch, tmp_path)
    n_est = len(bf.all_estimates())
    outs = [bf.run(_args(shard=f"{k}/2")) for k in range(2)]
    assert [o["specs"] for o in outs] == [[0, 2, 4], [5, 1, 3]]  # balanced by MACs, cheapest first
    assert len(trained) == len(set(trained)) == 6 * (2 + n_est)  # each job by exactly one shard
    keys = [s.key for s in bf.benchmark_specs()]
    spec_of = [keys.index(t[0]) for t in trained]
    first_other = spec_of.index(2)  # shard 0 goes spec by spec: 0, then 2
    assert set(spec_of[:first_other]) == {0} and [t[1] for t in trained[:2]] == [0, 1]  # both truth seeds first
    assert (keys[0], 0, 32, 5, 1.0) in trained[:first_other]  # with the default first rung (5 epochs at 32 px)
    assert (keys[0], 0, 64, 10, 0.25) not in trained[:first_other]  # a dear estimate waits for every spec's truth
    trained.clear()
    out = bf.run(_args())
    assert trained == [] and out["cached"] == 12  # the main run trains nothing
    assert out["tau_acc"] == pytest.approx(1.0) and len(out["estimates"]) == n_est
    with pytest.raises(SystemExit, match="K/N"):
        bf.run(_args(shard="2/2"))


def test_cached_only_ranks_the_specs_that_have_both_truth_seeds(monkeypatch, tmp_path, capsys):
    trained = _fake_training(monkeypatch, tmp_path)
    with pytest.raises(SystemExit, match="at least 3 specs"):
        bf.run(_args(cached_only=True))
    bf.run(_args(shard="0/2", no_estimates=True))  # truth of specs 0, 2, 4 only
    bf.run(_args(shard="1/2", specs=2, no_estimates=True))  # spec 1 too
    trained.clear()
    out = bf.run(_args(cached_only=True))
    assert trained == [] and out["n_specs"] == 4
    assert "4 of 6 specs" in capsys.readouterr().out
    assert out["estimates"] == {}  # no estimate cached: each is reported as such, none made up


def test_shards_split_the_24_specs_by_macs_and_train_the_cheapest_first():
    from nas_core.models.builder import build_model, count_macs

    specs = bf.benchmark_specs()
    shards = bf.shard_specs(specs, 64, 2)
    assert sorted(i for s in shards for i in s) == list(range(24))  # every spec in exactly one shard
    macs = [count_macs(build_model(sp, (3, 64, 64), 8), (3, 64, 64)) for sp in specs]
    loads = [sum(macs[i] for i in s) for s in shards]
    assert max(loads) / min(loads) < 1.05
    for s in shards:
        assert [macs[i] for i in s] == sorted(macs[i] for i in s)


def test_an_estimate_cached_for_some_specs_says_so_and_compares_with_the_same_specs(monkeypatch, tmp_path, capsys):
    trained = _fake_training(monkeypatch, tmp_path)
    bf.run(_args(specs=4))  # truth and every estimate of specs 0-3
    bf.run(_args(no_estimates=True))  # the truth of specs 4 and 5 only
    trained.clear()
    capsys.readouterr()
    out = bf.run(_args(cached_only=True))
    assert trained == [] and out["n_specs"] == 6
    text = capsys.readouterr().out
    est = out["estimates"]
    assert est and all(e["n_specs"] == 4 for e in est.values())
    name = next(iter(est))
    assert f"{name} (4/6)" in text
    assert f"{name}: only 4 of 6 specs cached; its ceiling (1.000 / 1.000)" in text
    assert est[name]["ceiling_acc"] == pytest.approx(1.0) and est[name]["tau_acc"] == pytest.approx(1.0)
