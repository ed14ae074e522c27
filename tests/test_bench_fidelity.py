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
