"""Budget accounting, dedup, warm start and a tiny end-to-end LINAS run on a synthetic source."""

import numpy as np
import pytest

from nas_core.linas import HypervolumeTracker, LinasEngine, LinasSettings, Objectives, run_search
from nas_core.linas.engines import Nsga2Engine, Observation, RandomEngine, survive
from tests.linas.synthetic import DIRS, GridSource, GridSpace

FAST = LinasSettings(population=20, inner_evaluations=600)
OBJ = Objectives.create(["error", "cost"], DIRS, known=list(DIRS))


def _space_size(space):
    X = np.array(np.meshgrid(*[np.arange(g.n) for g in space.genes])).reshape(len(space.genes), -1).T
    return len(set(space.ids(X).tolist()))


@pytest.mark.parametrize("engine", ["random", "nsga2", LinasEngine(FAST)])
def test_exact_budget_no_duplicates_batches_cut_to_the_budget(engine):
    space, source = GridSpace(), GridSource()
    res = run_search(space, source, engine, budget=47, population=10, seed=1, objectives=OBJ)
    assert res.n_evaluations == 47 == len(source.evaluated)
    keys = [o.key for o in res.observations]
    assert len(set(keys)) == 47
    sizes = [sum(o.batch == b for o in res.observations) for b in range(5)]
    assert sizes == [10, 10, 10, 10, 7]
    assert all(space.key(c) in keys for c in source.evaluated)


@pytest.mark.parametrize("engine", [RandomEngine(), Nsga2Engine(), LinasEngine(FAST)])
def test_exhausted_space_returns_what_is_left_then_stops(engine):
    space, source = GridSpace(), GridSource()
    size = _space_size(space)  # 6*6*4*3 minus the inactive-gene duplicates
    assert size == 6 * 4 + 5 * 6 * 4 * 3  # a == 0: d is inactive
    res = run_search(space, source, engine, budget=size + 40, population=100, seed=0, objectives=OBJ)
    assert res.n_evaluations == size
    assert res.exhausted
    assert len({o.key for o in res.observations}) == size


def _history(space, source, n, seed=0, batches=3):
    rng = np.random.default_rng(seed)
    hist = []
    for b in range(batches):
        batch = RandomEngine().propose(space, OBJ, hist, n, rng)
        configs = [space.decode(g) for g in batch.genes]
        for g, c, r in zip(batch.genes, configs, source.evaluate(configs)):
            hist.append(Observation(space.key(c), g, tuple(r.items()), b))
    return hist


def test_linas_proposes_exactly_n_new_and_reports_out_of_sample_quality():
    space, source = GridSpace(), GridSource()
    hist = _history(space, source, 15)
    batch = LinasEngine(FAST).propose(space, OBJ, hist, 12, np.random.default_rng(3), iteration=3)
    assert len(batch) == 12
    known = {o.key for o in hist}
    new = [space.key(space.decode(g)) for g in batch.genes]
    assert len(set(new)) == 12 and not set(new) & known
    # predicted values for both objectives; cost is exact (cheap exact objective), error predicted
    for genes, pred in zip(batch.genes, batch.predicted):
        p = dict(pred)
        assert p["cost"] == pytest.approx(space.exact_array(np.array([genes]))["cost"][0])
        assert 0 < p["error"] < 1.5
    rep = batch.report
    assert rep.n_train == 45 and rep.n_test == 15
    names = {(s.objective, s.predictor) for s in rep.scores}
    assert names == {("error", "ridge"), ("error", "svr"), ("error", "stacked")}
    assert sum(s.chosen for s in rep.scores) == 1
    assert all(s.oos_tau is not None and s.oos_mape is not None for s in rep.scores)
    assert dict(rep.to_extra())["linas.n_test"] == 15


def test_warm_start_holds_the_measured_non_dominated_set():
    space, source = GridSpace(), GridSource()
    hist = _history(space, source, 20, batches=1)
    eng = LinasEngine(FAST)
    from nas_core.linas.engines import measured_arrays

    X, V, _ = measured_arrays(space, OBJ, hist)
    W = eng.warm_start(space, OBJ, X, V, np.random.default_rng(0))
    assert len(W) == FAST.population
    F = OBJ.to_min(V)
    dominated = [np.any(np.all(F <= F[i], axis=1) & np.any(F < F[i], axis=1)) for i in range(len(F))]
    nd_ids = set(space.ids(X[~np.array(dominated)]).tolist())
    assert 0 < len(nd_ids) < len(X)
    assert nd_ids <= set(space.ids(W).tolist())
    assert space.is_valid(W).all()


def test_survive_prefers_feasible_then_front_then_spread():
    F = np.array([[0, 4], [1, 3], [2, 2], [3, 1], [4, 0], [2.1, 2.1], [0, 0]], dtype=float)
    CV = np.array([0, 0, 0, 0, 0, 0, 1.0])  # the ideal point is infeasible
    picked = survive(F, CV, 3).tolist()
    assert set(picked) == {0, 4, 2}  # the two extremes and the middle of the front
    assert survive(F, CV, 7).tolist()[-1] == 6


def test_linas_reaches_a_better_front_than_random_on_the_same_budget():
    space = GridSpace()
    ideal, nadir = [0.0, 0.0], [1.05, 16.5]
    final = {}
    for name, eng in [("linas", LinasEngine(FAST)), ("random", RandomEngine())]:
        vals = []
        for seed in range(2):
            hv = HypervolumeTracker([1.1, 1.1], ideal, nadir)
            run_search(space, GridSource(), eng, 60, 15, seed, OBJ, hv=hv)
            assert hv.trace == sorted(hv.trace)  # a front never loses volume
            assert len(hv.trace) == 60
            vals.append(hv.value)
        final[name] = np.mean(vals)
    assert final["linas"] > final["random"]


def test_constraints_keep_proposals_feasible_by_prediction():
    obj = Objectives.create(["error", "latency"], DIRS, constraints=[("cost", "<=", 6.0)], known=list(DIRS))
    space, source = GridSpace(), GridSource()
    res = run_search(space, source, LinasEngine(FAST), 60, 15, 0, obj)
    later = [o for o in res.observations if o.batch > 0]
    assert all(o.value("cost") <= 6.0 for o in later)  # cost is exact, so never broken


@pytest.mark.parametrize("algorithm", ["unsga3", "moead", "ctaea"])
def test_many_objective_inner_algorithms_run_within_the_budget(algorithm):
    obj = Objectives.create(["error", "cost", "latency"], DIRS, known=list(DIRS), algorithm=algorithm)
    eng = LinasEngine(LinasSettings(population=20, inner_evaluations=300, algorithm=algorithm))
    res = run_search(GridSpace(), GridSource(), eng, 35, 15, 0, obj)
    assert res.n_evaluations == 35 and len({o.key for o in res.observations}) == 35
    assert len(res.reports) == 2
