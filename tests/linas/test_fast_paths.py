"""The CPU shortcuts of a LINAS iteration give the same numbers as the slow paths they replace."""

import numpy as np

from nas_core.linas.engines import LinasEngine, LinasSettings, Observation, greedy_hvi, measured_arrays
from nas_core.linas.fastmoo import crowding, nd_ranks, survive
from nas_core.linas.predictors import make_predictor
from nas_core.linas.space import Objectives
from tests.linas.synthetic import GridProblem


def _history(seed: int, n: int) -> tuple[GridProblem, Objectives, list[Observation]]:
    """The grid space, its (error, latency) objectives and ``n`` measured random configurations."""
    space = GridProblem()
    obj = Objectives.create(("error", "latency"), space.metrics)
    X = space.canonical(space.random_genes(np.random.default_rng(seed), n))
    res = space.evaluate([space.decode(x) for x in X])
    hist = [Observation(str(i), tuple(int(v) for v in x), tuple(sorted(r.items())))
            for i, (x, r) in enumerate(zip(X, res))]
    return space, obj, hist


def _crowding_loop(F, rank):
    """The per-front loop the vectorized crowding replaced (pymoo's normalization)."""
    n, m = F.shape
    cd = np.zeros(n)
    for r in np.unique(rank):
        idx = np.flatnonzero(rank == r)
        if len(idx) <= 2:
            cd[idx] = np.inf
            continue
        Fi = F[idx]
        order = np.argsort(Fi, axis=0, kind="stable")
        Fs = np.take_along_axis(Fi, order, axis=0)
        span = np.where(Fs[-1] - Fs[0] > 0, Fs[-1] - Fs[0], 1.0)
        gap = np.full((len(idx), m), np.inf)
        gap[1:-1] = (Fs[2:] - Fs[:-2]) / span
        d = np.zeros((len(idx), m))
        np.put_along_axis(d, order, gap, axis=0)
        cd[idx] = d.sum(axis=1)
    return cd


def test_vectorized_crowding_matches_the_per_front_loop_with_ties():
    rng = np.random.default_rng(3)
    for _ in range(200):
        F = rng.integers(0, 5, size=(int(rng.integers(1, 80)), int(rng.integers(2, 4)))).astype(float)
        r = nd_ranks(F)
        a, b = _crowding_loop(F, r), crowding(F, r)
        assert np.array_equal(np.isinf(a), np.isinf(b))
        assert np.allclose(a[np.isfinite(a)], b[np.isfinite(b)])


def test_survivor_ranks_equal_a_fresh_sort_of_the_survivors():
    rng = np.random.default_rng(4)
    F = rng.random((100, 2))
    CV = np.where(rng.random(100) < 0.1, rng.random(100), 0.0)
    idx, r2, _ = survive(F, CV, 50)
    feas = CV[idx] <= 0
    fresh = nd_ranks(F[idx][feas])
    # the same order of fronts (labels may differ for infeasible rows, which rank after all)
    assert np.array_equal(fresh, r2[feas])
    assert np.all(r2[~feas] > r2[feas].max(initial=-1))


def test_numpy_predict_equals_scikit_learn():
    rng = np.random.default_rng(0)
    X, Xt = rng.random((200, 12)), rng.random((40, 12))
    y = X @ rng.random(12) + np.sin(4 * X[:, 0])
    from sklearn.svm import SVR

    svr = make_predictor("svr", transform="none").fit(X, y)
    z = (y - y.mean()) / y.std()
    ref = SVR(C=svr.C, epsilon=svr.epsilon, gamma="scale").fit(X, z)  # libsvm's own RBF kernel
    assert np.allclose(svr._predict(Xt), ref.predict(Xt), atol=1e-6)
    assert len(svr.sv_) == len(ref.support_)
    ridge = make_predictor("ridge", transform="none").fit(X, y)
    assert np.allclose(ridge._predict(Xt), ridge.model_.predict(Xt), atol=1e-10)


def test_greedy_hvi_drops_dominated_candidates_without_changing_the_picks():
    rng = np.random.default_rng(5)
    F = rng.random((300, 2))
    anchors = np.array([[0.2, 0.5], [0.5, 0.2]])
    picks = greedy_hvi(F, np.zeros(300), 10, anchors)
    # every greedy pick but the survive_against top-up adds volume over the anchors
    dominated = np.all(F[:, None, :] >= anchors[None, :, :], axis=2).any(axis=1)
    n_gain = int((~dominated).sum())
    assert len(picks) == 10 and len(set(picks.tolist())) == 10
    assert not dominated[picks[: min(10, n_gain)]].any()


def test_inner_search_predicts_each_distinct_row_once():
    space, obj, hist = _history(seed=0, n=40)
    eng = LinasEngine(LinasSettings(inner_evaluations=3000, predictors=("ridge",)))
    models, _ = eng.fit_predictors(space, obj, hist, 1, 0)
    rows: list[int] = []
    orig = eng.predict

    def counting(sp, o, m, Xi):
        rows.append(len(Xi))
        return orig(sp, o, m, Xi)

    eng.predict = counting
    Xm, V, _ = measured_arrays(space, obj, hist)
    A, P = eng._inner_search(space, obj, models, Xm, V, np.random.default_rng(1), 0, None)
    n_distinct = len({tuple(r) for r in A.tolist()})
    assert sum(rows) == n_distinct < len(A)
    again = orig(space, obj, models, A)
    for m in P:
        assert np.allclose(P[m], again[m])


def test_small_space_is_scored_whole_when_asked():
    space, obj, hist = _history(seed=2, n=30)
    eng = LinasEngine(LinasSettings(exhaustive_limit=10_000, predictors=("ridge",)))
    A = eng._enumerate(space)
    # every distinct config once: gene d is switched off when a == 0 (6*6*4*3 rows, 6*4*2 merged)
    assert len(A) == 6 * 6 * 4 * 3 - 6 * 4 * 2
    assert len(set(space.ids(A).tolist())) == len(A)
    assert LinasEngine(LinasSettings(exhaustive_limit=100))._enumerate(space) is None
    batch = eng.propose(space, obj, hist, 10, np.random.default_rng(0), iteration=1)
    seen = set(space.ids(np.array([h.genes for h in hist])).tolist())
    got = space.ids(np.array(batch.genes))
    assert len(set(got.tolist())) == 10 and not (set(got.tolist()) & seen)
    # the reserved extreme is the best predicted error over the whole space, not a search's find
    models, _ = eng.fit_predictors(space, obj, hist, 1, 0)
    new = A[~np.isin(space.ids(A), list(seen))]
    pred = eng.predict(space, obj, models, new)["error"]
    assert space.ids(new[[int(np.argmin(pred))]])[0] in set(got.tolist())


def test_bench_search_script_passes_linas_settings(tmp_path, capsys):
    import json

    from benchmarks.bench_search import main

    out = tmp_path / "r.json"
    argv = ["--spaces", "tests.linas.synthetic:GridProblem", "--seeds", "1", "--budget", "100",
            "--baseline-budget", "100", "--inner-evaluations", "300", "--skip-timing", "--json", str(out),
            "--linas-settings", '{"extreme_picks": 2, "exhaustive_limit": 1000}', "--objectives", "error,latency",
            "--population", "20", "--baseline-population", "25"]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert data["linas_settings"] == {"extreme_picks": 2, "exhaustive_limit": 1000}
    assert (data["population"], data["baseline_population"]) == (20, 25)
    entry = data["spaces"]["tests.linas.synthetic:GridProblem"]
    assert (entry["linas"]["population"], entry["baselines"]["population"]) == (20, 25)
    first = capsys.readouterr().out
    assert "population 20" in first and "NSGA-II and random: budget 100, population 25" in first
    assert "tests.linas.synthetic:GridProblem" in data["spaces"]
    assert "ratio linas/nsga2" in first
