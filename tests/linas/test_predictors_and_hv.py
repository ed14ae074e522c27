"""Predictors (fit/predict, Kendall selection, quality figures) and the hypervolume tracker."""

import numpy as np
import pytest

from nas_core.linas import (
    HypervolumeTracker,
    RidgePredictor,
    StackedPredictor,
    SvrPredictor,
    select_predictor,
)
from nas_core.linas.predictors import cv_kendall, kendall_tau, mape


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 4))
    return X, rng


@pytest.mark.parametrize("cls", [RidgePredictor, SvrPredictor, StackedPredictor])
def test_fit_returns_self_and_predicts_a_whole_matrix(cls):
    X, rng = _data()
    y = 3 * X[:, 0] - 2 * X[:, 1] + 0.01 * rng.standard_normal(len(X))
    p = cls()
    assert p.fit(X[:100], y[:100]) is p
    assert hasattr(p, "mean_") and hasattr(p, "scale_")
    pred = p.predict(X[100:])
    assert pred.shape == (20,)
    assert kendall_tau(y[100:], pred) > 0.8


def test_kendall_selection_prefers_svr_on_a_nonlinear_target():
    X, _ = _data(150)
    y = np.sin(6 * X[:, 0]) * np.cos(6 * X[:, 1])  # no linear signal at all
    best, scores = select_predictor(X, y, names=("ridge", "svr"))
    assert best == "svr"
    assert scores["svr"] > scores["ridge"] + 0.2
    assert scores["ridge"] == pytest.approx(cv_kendall("ridge", X, y))


def test_selection_without_enough_data_falls_back_to_ridge():
    X, _ = _data(4)
    best, scores = select_predictor(X, X[:, 0])
    assert best == "ridge" and all(v is None for v in scores.values())


def test_kendall_and_mape_hand_cases():
    assert kendall_tau(np.array([1, 2, 3]), np.array([10, 20, 30])) == pytest.approx(1.0)
    assert kendall_tau(np.array([1, 2, 3]), np.array([3, 2, 1])) == pytest.approx(-1.0)
    assert kendall_tau(np.array([1.0]), np.array([1.0])) is None
    assert mape(np.array([2.0, 4.0]), np.array([1.0, 5.0])) == pytest.approx((0.5 + 0.25) / 2)


def test_hypervolume_matches_a_hand_computed_2d_case():
    hv = HypervolumeTracker(ref_point=[1.0, 1.0], ideal=[0.0, 0.0], nadir=[4.0, 4.0])
    F = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    # normalized points (.25,.75), (.5,.5), (.75,.25): strips of .25 x .25, .25 x .5, .25 x .75
    assert hv.compute(F) == pytest.approx(0.0625 + 0.125 + 0.1875)


def test_tracker_adds_one_evaluation_at_a_time():
    hv = HypervolumeTracker(ref_point=[1.0, 1.0], ideal=[0.0, 0.0], nadir=[4.0, 4.0])
    hv.update([2.0, 2.0])
    assert hv.value == pytest.approx(0.25)
    hv.update([3.0, 3.0])  # dominated: unchanged
    hv.update(None)  # infeasible: unchanged
    hv.update([1.0, 3.0])
    hv.update([3.0, 1.0])
    assert hv.trace == pytest.approx([0.25, 0.25, 0.25, 0.3125, 0.375])
    assert len(hv.front) == 3
    assert hv.evaluations_to_reach(0.3) == 4
    assert hv.evaluations_to_reach(0.5) is None


def test_skewed_positive_targets_are_fitted_in_log_space():
    X, _ = _data(80)
    y = np.exp(4 * X[:, 0] + 2 * X[:, 1])  # multiplicative, spans ~400x
    p = RidgePredictor().fit(X[:60], y[:60])
    assert p.log_ is True
    pred = p.predict(X[60:])
    assert np.all(pred > 0)
    from sklearn.linear_model import Ridge

    raw = Ridge(alpha=1e-3).fit(X[:60], y[:60]).predict(X[60:])  # a linear fit of y itself
    assert mape(y[60:], pred) < 0.5 * mape(y[60:], raw)
    assert RidgePredictor().fit(X, X[:, 0] - 0.5).log_ is False
