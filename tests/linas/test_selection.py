"""The LINAS batch rule: greedy hypervolume gain, reserved extremes, predicted anchors, extrapolation."""

import numpy as np
import pytest

from nas_core.linas import LinasEngine, LinasSettings, Objectives
from nas_core.linas.engines import greedy_hvi
from nas_core.linas.fastmoo import crowding, nd_ranks, row_hash
from nas_core.linas.predictors import make_predictor
from tests.linas.synthetic import DIRS, GridSpace

OBJ = Objectives.create(["error", "cost"], DIRS, known=list(DIRS))


def test_greedy_hvi_takes_the_point_that_adds_most_volume_then_fills_gaps():
    anchors = np.array([[0.0, 1.0], [1.0, 0.0]])
    F = np.array([[0.5, 0.5], [0.9, 0.9], [0.2, 0.2], [1.2, 1.2], [0.3, 0.9]])
    CV = np.zeros(len(F))
    picks = greedy_hvi(F, CV, 2, anchors).tolist()
    assert picks[0] == 2  # (0.2, 0.2) dominates the most new volume
    assert 1 not in picks[:2] and 3 not in picks[:2]  # dominated by the anchors: no gain
    assert len(greedy_hvi(F, CV, 5, anchors)) == 5  # the rest by rank and spread
    # an infeasible point is never chosen while feasible ones add volume
    CV2 = np.array([0, 0, 1.0, 0, 0])
    assert greedy_hvi(F, CV2, 1, anchors).tolist() == [0]


def test_greedy_hvi_gain_matches_the_exact_hypervolume():
    from pymoo.indicators.hv import HV

    rng = np.random.default_rng(0)
    anchors = rng.random((6, 2))
    F = rng.random((40, 2))
    j = greedy_hvi(F, np.zeros(40), 1, anchors)[0]
    both = np.vstack([F, anchors])
    lo, span = both.min(axis=0), both.max(axis=0) - both.min(axis=0)
    hv = HV(ref_point=np.array([1.1, 1.1]))
    base = hv((anchors - lo) / span)
    gains = [hv((np.vstack([anchors, f]) - lo) / span) - base for f in F]
    assert gains[j] == pytest.approx(max(gains))


def _engine(**kw):
    return LinasEngine(LinasSettings(population=20, inner_evaluations=400, **kw))


def test_extreme_picks_are_reserved_for_the_best_predicted_value_of_each_objective():
    eng = _engine(extreme_picks=1, selection="spread")
    rng = np.random.default_rng(1)
    F = rng.random((50, 2))
    picks = eng._select(OBJ, np.zeros((50, 4), dtype=int), F, np.zeros(50), 5, F[:0], GridSpace(), None)
    assert picks[0] == np.argmin(F[:, 0]) and picks[1] == np.argmin(F[:, 1])
    assert len(set(picks.tolist())) == 5


def test_anchors_are_the_predicted_values_of_the_measured_front():
    space = GridSpace()
    X = np.array([[1, 1, 1, 1], [5, 5, 3, 2], [2, 3, 1, 0], [0, 0, 0, 0]] * 3)
    X = space.canonical(X + np.repeat(np.arange(3), 4)[:, None] * np.array([0, 0, 0, 0]))
    V = {"error": np.linspace(0.1, 0.9, len(X)), "cost": np.linspace(9, 1, len(X))}
    models = {"error": make_predictor("ridge").fit(_engine().features(space, X), V["error"])}
    measured = _engine(rank_against="measured")._anchors(space, OBJ, models, X, V)
    predicted = _engine(rank_against="predicted")._anchors(space, OBJ, models, X, V)
    assert np.allclose(np.sort(measured[:, 0]), np.sort(V["error"]))
    assert not np.allclose(np.sort(predicted[:, 0])[: len(predicted)], np.sort(V["error"])[: len(predicted)])
    assert len(_engine(rank_against_measured=False)._anchors(space, OBJ, models, X, V)) == 0


def test_rank_transform_extrapolates_past_the_measured_range_unless_clamped():
    rng = np.random.default_rng(0)
    X = rng.random((80, 3))
    y = X @ np.array([1.0, 0.5, 0.2]) - 0.5  # not all positive: fitted as rank scores
    far = np.array([[3.0, 3.0, 3.0]])
    clamped = make_predictor("ridge", transform="rank_clamped").fit(X, y).predict(far)[0]
    free = make_predictor("ridge", transform="rank").fit(X, y).predict(far)[0]
    assert clamped == pytest.approx(y.max())
    assert free > y.max() + 0.1
    # costs on a log scale stay positive however far out a prediction goes
    lat = np.exp(3 * y)
    low = make_predictor("svr", log_target=True).fit(X, lat).predict(-5 * far)[0]
    assert low > 0


def test_auto_transform_fits_rank_scores_only_for_long_tailed_targets():
    from scipy.stats import skew

    from nas_core.linas.predictors import SKEW_LIMIT, skewness

    rng = np.random.default_rng(1)
    X = rng.random((120, 3))
    good = 0.8 + 0.05 * (X @ np.array([1.0, 0.5, 0.2]))  # symmetric: accuracies of working nets
    broken = good.copy()
    broken[:12] = 0.1 + 0.05 * X[:12, 0]  # a tail of broken architectures, as in NAS-Bench-Graph
    assert skewness(good) == pytest.approx(skew(good))
    assert abs(skewness(good)) < SKEW_LIMIT < abs(skewness(broken))
    for y, ranked in ((good, False), (broken, True)):
        auto = make_predictor("ridge", transform="auto", log_target=False).fit(X, y)
        same = make_predictor("ridge", transform="rank" if ranked else "none", log_target=False).fit(X, y)
        assert (auto.quantiles_ is not None) is ranked
        far = np.array([[3.0, 3.0, 3.0], [0.5, 0.5, 0.5]])
        assert np.allclose(auto.predict(far), same.predict(far))  # and rank extrapolates
    assert LinasSettings().transform == "auto"
    with pytest.raises(ValueError, match="auto, rank, rank_clamped, none"):
        make_predictor("ridge", transform="quantile")


def test_inactive_flags_are_features_only_when_asked():
    space = GridSpace()
    space.active = lambda X: np.column_stack(
        [np.ones((len(X), 3), dtype=bool), np.asarray(X)[:, 0] != 0]
    )  # gene d is inactive when a == 0
    X = np.array([[0, 1, 1, 0], [1, 1, 1, 0]])
    plain = _engine(inactive_features=False).features(space, X)
    flagged = _engine(inactive_features=True).features(space, X)
    assert flagged.shape[1] == plain.shape[1] + 1
    assert flagged[:, -1].tolist() == [1.0, 0.0]
    # without an active() method the flags are inferred from canonical()
    inferred = _engine(inactive_features=True).features(GridSpace(), X)
    assert np.array_equal(inferred, flagged)


def test_fast_moo_ranks_crowding_and_hashes():
    F = np.array([[0, 2], [1, 1], [2, 0], [1, 2], [2, 2]], dtype=float)
    assert nd_ranks(F).tolist() == [0, 0, 0, 1, 2]
    cd = crowding(F, nd_ranks(F))
    assert np.isinf(cd[[0, 2]]).all() and np.isfinite(cd[1])
    X = np.array([[1, 2, 3], [1, 2, 3], [3, 2, 1]])
    h = row_hash(X)
    assert h[0] == h[1] != h[2]


def test_cnn_space_active_mask_matches_what_canonical_zeroes():
    from nas_core.linas.engines import _inactive
    from nas_core.linas.space import CnnSpace
    from nas_core.space import Choices

    space = CnnSpace(Choices(), (3, 16, 16), 4)
    X = space.random_genes(np.random.default_rng(0), 64)
    cols = np.arange(space.n_var)
    inferred = _inactive(type("Plain", (), {"canonical": space.canonical, "genes": space.genes})(), X, cols)
    assert np.array_equal(~space.active(X), inferred)
