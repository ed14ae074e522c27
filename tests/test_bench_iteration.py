"""The iteration benchmark's selection check (halving_quality) over a fake, partly cached fidelity truth."""

from __future__ import annotations

import argparse
import dataclasses
import json
import types

import numpy as np
import pytest

from benchmarks import bench_fidelity as bf
from benchmarks import bench_iteration as bi


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """prepare() and the rung's training faked; the truth cache in tmp_path. Returns (cache a spec, trained)."""
    import nas_core.data.prepare as prep
    import nas_core.rungs as rungs
    from nas_core.settings import TrainSettings

    monkeypatch.setattr(bf, "TRUTH", tmp_path / "truth")
    monkeypatch.setattr(bf, "_dataset", lambda args: tmp_path)
    prepared = types.SimpleNamespace(labels=np.zeros(10), dataset_hash="fake")
    monkeypatch.setattr(prep, "prepare", lambda *a, **k: prepared)
    keys = [s.key for s in bf.benchmark_specs()]
    trained = []

    def rung(request, prepared, progress, should_stop):  # the rung ranks the specs as the truth does
        trained.append(request.arch.key)
        acc = 0.5 + 0.01 * keys.index(request.arch.key)
        return types.SimpleNamespace(val_acc=acc, val_loss=1 - acc, test_acc=acc)

    monkeypatch.setattr(rungs, "_train_and_measure", rung)

    def cache(i: int) -> None:
        for seed in bf.INIT_SEEDS:
            st = dataclasses.replace(TrainSettings(), seed=seed)
            path = bf._cache_path(bf.benchmark_specs()[i], st, "fake", 1.0)
            path.parent.mkdir(parents=True, exist_ok=True)
            acc = 0.5 + 0.01 * i + 0.001 * seed
            path.write_text(json.dumps(
                bf.FidelityResult(test_acc=acc, unfairness=0.1, unfairness_ci=(0.05, 0.15), balanced_acc=acc,
                                  main_group_halfwidth=0.04, epochs=10, cpu_s=100.0, wall_s=100.0,
                                  threads=1).to_dict()))

    return cache, trained


def _args(**kw):
    return argparse.Namespace(**{**dict(quick=False, specs=None, rung=None, shuffles=4), **kw})


def test_halving_quality_checks_the_specs_whose_truth_is_cached_and_says_how_many(fake, capsys):
    cache, trained = fake
    for i in (0, 3, 5, 7, 11):
        cache(i)
    out = bi.halving_quality(_args())
    text = capsys.readouterr().out
    assert "cached for 5 of 24 specs; checking those only" in text
    assert len(trained) == 5  # only the cached specs get a rung
    assert out["tau_score"] == pytest.approx(1.0) and out["ceiling"] == pytest.approx(1.0)
    assert out["kept"] == 4  # the best spec survives every shuffle when the rung ranks like the truth
    assert out["full_cpu"] == pytest.approx(100.0)
    trained.clear()
    bi.halving_quality(_args())
    assert trained == []  # the rungs are cached beside the truth: a rerun trains nothing


def test_halving_quality_is_skipped_with_a_message_below_three_specs(fake, capsys):
    cache, trained = fake
    cache(0)
    cache(1)
    assert bi.halving_quality(_args()) is None
    assert "cached for 2 of 24 specs at these settings (3 needed)" in capsys.readouterr().out
    assert trained == []
