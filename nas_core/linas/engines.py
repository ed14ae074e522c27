"""The search engines (LINAS, NSGA-II on real evaluations, random search) and ``run_search``.

Owns the engines and the store-free loop the benchmark and ``bench-search`` use. Every engine
is stateless: ``propose(space, objectives, history, n, rng, exclude)`` reads everything
measured so far (a tuple of frozen :class:`Observation`) and returns a :class:`Batch` of exactly
``n`` configs that are new under the space's canonical ids (fewer only when the space is
exhausted). The session's designers (:mod:`nas_core.linas.designers`) and :func:`run_search`
drive the same engines, so budget accounting and dedup are shared.

LINAS (seed 001, section 3.5): random initial population; then per iteration fit one predictor
per objective that needs measuring (ridge / SVR / stacked, chosen by cross-validated Kendall
tau), run a pymoo algorithm on the predictors (warm-started from the measured non-dominated
set), and choose the batch from *everything the inner search visited* that is not measured yet
(the whole archive, not only the final inner population, which on small spaces is mostly
measured already). The batch rule (issue 12, each part a :class:`LinasSettings` switch): one
pick per objective reserved for its best predicted value, then greedy predicted-hypervolume
gain against the *predicted* values of the measured front (predictions and anchors are shrunk
alike, so a config that would extend the front's ends is not mistaken for a dominated one);
accuracy predictions may leave the measured range and positive costs are fitted on a log scale.
Accuracy is fitted as normal scores of its ranks (extended linearly past the extremes) only when
the measured values have a long tail (NAS-Bench-Graph's broken architectures), as standardized
values otherwise (``transform="auto"``: the rank transform needed 1.5x the evaluations to 0.90 on the
MobileNetV3-style ``mbv3:1``, standardized values 2x those to 0.98 on cora). The inner NSGA-II is the vectorized
:func:`nas_core.linas.fastmoo.nsga2_search` (one predictor call per generation, each distinct
row predicted once per iteration); other inner algorithms (``algorithm="unsga3"``,
``"agemoea"``, ...) run through pymoo. A space with at most ``exhaustive_limit`` gene rows is
scored whole instead of searched.

NSGA-II on real evaluations: the parents are the best ``population`` measured configs by
rank and crowding (an elitist (mu + lambda) reading of the history, so no hidden state), and each
proposal batch is one generation's offspring (binary tournament, uniform crossover, per-gene
random-reset mutation).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nas_core.linas.hypervolume import HypervolumeTracker
from nas_core.linas.predictors import (
    PREDICTOR_NAMES,
    PredictorReport,
    PredictorScore,
    kendall_tau,
    make_predictor,
    mape,
    select_predictor,
)
from nas_core.linas.space import (
    Objectives,
    ObjectiveSource,
    SearchError,
    SearchSpace,
    check_algorithm,
    sample_new,
)

log = logging.getLogger(__name__)

Progress = Callable[[float], None]


@dataclass(frozen=True)
class Observation:
    """One measured config."""

    key: str
    genes: tuple[int, ...]
    values: tuple[tuple[str, float], ...]  # metric -> measured value
    batch: int = 0  # proposal batch (iteration) it came from

    def value(self, name: str) -> float | None:
        """The measured value of ``name`` (None if not measured)."""
        for n, v in self.values:
            if n == name:
                return v
        return None


@dataclass(frozen=True)
class Batch:
    """An engine's proposals for one iteration."""

    genes: tuple[tuple[int, ...], ...]
    predicted: tuple[tuple[tuple[str, float], ...], ...] = ()  # per config: metric -> predicted value
    report: PredictorReport | None = None
    exhausted: bool = False  # fewer than asked because the space has no more new configs

    def __len__(self) -> int:
        return len(self.genes)


# ----------------------------------------------------------------------------- helpers
def measured_arrays(space: SearchSpace, objectives: Objectives, history: Sequence[Observation]):
    """Canonical genes, metric arrays and batch numbers of observations that have every metric."""
    rows = [o for o in history if all(o.value(m) is not None for m in objectives.metrics)]
    X = space.canonical(np.array([o.genes for o in rows], dtype=np.int64).reshape(len(rows), space.n_var))
    V = {m: np.array([o.value(m) for o in rows], dtype=float) for m in objectives.metrics}
    batches = np.array([o.batch for o in rows], dtype=np.int64)
    return X, V, batches


def _history_ids(space: SearchSpace, history: Sequence[Observation]) -> set:
    if not history:
        return set()
    X = np.array([o.genes for o in history], dtype=np.int64)
    return set(space.ids(X).tolist())


def survive(F: np.ndarray, CV: np.ndarray, n: int) -> np.ndarray:
    """Indices of the best ``n`` rows: feasible first, then non-domination rank, then crowding.

    Infeasible rows are ordered by their violation. Within the front that does not fit whole,
    :func:`spread` picks, which keeps the picks diverse in objective space.
    """
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    n = min(n, len(F))
    feas = np.flatnonzero(CV <= 0)
    infeas = np.flatnonzero(CV > 0)
    out: list[int] = []
    if len(feas):
        fronts = NonDominatedSorting().do(F[feas], n_stop_if_ranked=n)
        for front in fronts:
            idx = feas[front]
            if len(out) + len(idx) <= n:
                out.extend(idx.tolist())
            else:
                out.extend(idx[spread(F[idx], n - len(out))].tolist())
            if len(out) >= n:
                break
    if len(out) < n:
        out.extend(infeas[np.argsort(CV[infeas], kind="stable")][: n - len(out)].tolist())
    return np.array(out, dtype=np.int64)


def survive_against(F: np.ndarray, CV: np.ndarray, n: int, measured: np.ndarray) -> np.ndarray:
    """Like :func:`survive`, but ranks the candidates together with the measured feasible points.

    A candidate predicted to be dominated by something already measured brings nothing, so the
    fronts are computed over candidates and ``measured`` together and only candidates are taken.
    Within the front that does not fit whole, the measured points of that front are anchors of
    :func:`spread`, so the picks fill the gaps of the measured front instead of crowding it.
    """
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    measured = np.asarray(measured, dtype=float).reshape(-1, F.shape[1])
    if len(measured) == 0:
        return survive(F, CV, n)
    n = min(n, len(F))
    m = len(measured)
    feas = np.flatnonzero(CV <= 0)
    infeas = np.flatnonzero(CV > 0)
    out: list[int] = []
    if len(feas):
        F_all = np.vstack([measured, F[feas]])
        for front in NonDominatedSorting().do(F_all, n_stop_if_ranked=n + m):
            cand = feas[front[front >= m] - m]
            if len(cand) == 0:
                continue
            anchors = F_all[front[front < m]]
            k = n - len(out)
            if len(cand) <= k:
                out.extend(cand[spread(F[cand], len(cand), anchors)].tolist())
            else:
                out.extend(cand[spread(F[cand], k, anchors)].tolist())
            if len(out) >= n:
                break
    if len(out) < n:
        out.extend(infeas[np.argsort(CV[infeas], kind="stable")][: n - len(out)].tolist())
    return np.array(out, dtype=np.int64)


def spread(F: np.ndarray, k: int, anchors: np.ndarray | None = None) -> np.ndarray:
    """``k`` indices of ``F`` spread over objective space: the extremes, then farthest-point picks.

    One crowding pass would pick neighbours on an evenly spaced front (equal distances tie);
    greedy max-min distance in normalized objective space does not.
    """
    n = len(F)
    k = min(k, n)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    has_anchors = anchors is not None and len(anchors) > 0
    both = np.vstack([F, anchors]) if has_anchors else F
    lo, span = both.min(axis=0), both.max(axis=0) - both.min(axis=0)
    span = np.where(span > 0, span, 1.0)
    Z = (F - lo) / span
    if has_anchors:
        # points already measured on this front count as chosen: fill the gaps between them
        A = (np.asarray(anchors) - lo) / span
        chosen: list[int] = []
        dist = np.min(np.linalg.norm(Z[:, None, :] - A[None, :, :], axis=2), axis=1)
    else:
        chosen = list(dict.fromkeys(int(i) for i in np.argmin(Z, axis=0)))[:k]
        dist = np.min(np.linalg.norm(Z[:, None, :] - Z[None, chosen, :], axis=2), axis=1)
    dist[chosen] = -1.0
    while len(chosen) < k:
        i = int(np.argmax(dist))
        chosen.append(i)
        dist = np.minimum(dist, np.linalg.norm(Z - Z[i], axis=1))
        dist[i] = -1.0
    return np.array(chosen, dtype=np.int64)


def rank_and_crowding(F: np.ndarray, CV: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: a rank (infeasible rows after every feasible front) and a crowding distance."""
    from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    rank = np.full(len(F), np.iinfo(np.int32).max, dtype=np.int64)
    crowd = np.zeros(len(F))
    feas = np.flatnonzero(CV <= 0)
    if len(feas):
        for r, front in enumerate(NonDominatedSorting().do(F[feas])):
            idx = feas[front]
            rank[idx] = r
            crowd[idx] = calc_crowding_distance(F[idx]) if len(idx) > 2 else np.inf
    infeas = np.flatnonzero(CV > 0)
    rank[infeas] = 10**6 + np.argsort(np.argsort(CV[infeas]))
    return rank, crowd


def _uniform_crossover(A: np.ndarray, B: np.ndarray, prob: float, rng: np.random.Generator) -> np.ndarray:
    do = rng.random(len(A)) < prob
    mask = rng.random(A.shape) < 0.5
    return np.where(do[:, None] & mask, B, A)


def _reset_mutation(X: np.ndarray, upper: np.ndarray, prob: float, rng: np.random.Generator) -> np.ndarray:
    mask = rng.random(X.shape) < prob
    return np.where(mask, rng.integers(0, upper + 1, size=X.shape), X)


def _fill_random(space, rng, n, out_X, seen) -> tuple[np.ndarray, bool]:
    """Top up ``out_X`` with random new rows; returns (rows, exhausted)."""
    if len(out_X) >= n:
        return out_X, False
    extra = sample_new(space, rng, n - len(out_X), exclude=frozenset(seen))
    X = np.vstack([out_X.reshape(-1, space.n_var), extra]) if len(extra) else out_X
    return X, len(X) < n


def _batch(X: np.ndarray, predicted=(), report=None, exhausted=False) -> Batch:
    return Batch(
        genes=tuple(tuple(int(v) for v in x) for x in X),
        predicted=tuple(predicted),
        report=report,
        exhausted=exhausted,
    )


# ----------------------------------------------------------------------------- random
class RandomEngine:
    """Random search without replacement."""

    name = "random"

    def propose(
        self,
        space: SearchSpace,
        objectives: Objectives,
        history: Sequence[Observation],
        n: int,
        rng: np.random.Generator,
        exclude: frozenset = frozenset(),
        progress: Progress | None = None,
    ) -> Batch:
        """``n`` uniformly random valid configs never seen before."""
        seen = _history_ids(space, history) | set(exclude)
        X = sample_new(space, rng, n, exclude=frozenset(seen))
        if progress:
            progress(1.0)
        return _batch(X, exhausted=len(X) < n)


# ----------------------------------------------------------------------------- NSGA-II
@dataclass(frozen=True)
class Nsga2Settings:
    """NSGA-II on real evaluations (seed 001 Table 5 defaults)."""

    population: int = 50  # parents kept from the history
    crossover: float = 0.9  # probability that a mating does uniform crossover
    mutation: float | None = None  # per-gene reset probability; None = 1 / n_var


class Nsga2Engine:
    """NSGA-II whose every generation's offspring is one proposal batch."""

    name = "nsga2"

    def __init__(self, settings: Nsga2Settings | None = None):
        self.settings = settings or Nsga2Settings()

    def propose(
        self,
        space: SearchSpace,
        objectives: Objectives,
        history: Sequence[Observation],
        n: int,
        rng: np.random.Generator,
        exclude: frozenset = frozenset(),
        progress: Progress | None = None,
    ) -> Batch:
        """One generation of ``n`` new offspring (random when nothing is measured yet)."""
        seen = _history_ids(space, history) | set(exclude)
        X, V, _ = measured_arrays(space, objectives, history)
        if len(X) < 2:
            return RandomEngine().propose(space, objectives, history, n, rng, exclude, progress)
        F = objectives.to_min(V)
        CV = objectives.violation(V, len(X))
        keep = survive(F, CV, self.settings.population)
        P, rank, crowd = X[keep], *rank_and_crowding(F[keep], CV[keep])
        p_mut = self.settings.mutation or 1.0 / space.n_var
        out: list[np.ndarray] = []
        for _ in range(100):
            m = max(2 * (n - len(out)), 8)
            a, b = rng.integers(0, len(P), size=(2, m)), rng.integers(0, len(P), size=(2, m))

            def winner(i: np.ndarray, j: np.ndarray) -> np.ndarray:
                better = (rank[i] < rank[j]) | ((rank[i] == rank[j]) & (crowd[i] >= crowd[j]))
                return np.where(better, i, j)

            A, B = P[winner(a[0], a[1])], P[winner(b[0], b[1])]
            C = _reset_mutation(
                _uniform_crossover(A, B, self.settings.crossover, rng), space.upper, p_mut, rng
            )
            C = space.canonical(C)
            C = C[space.is_valid(C)]
            for c, i in zip(C, space.ids(C)):
                if i not in seen:
                    seen.add(i)
                    out.append(c)
                    if len(out) == n:
                        break
            if len(out) == n:
                break
        Xo, exhausted = _fill_random(
            space, rng, n, np.array(out, dtype=np.int64).reshape(-1, space.n_var), seen
        )
        if progress:
            progress(1.0)
        return _batch(Xo, exhausted=exhausted)


# ----------------------------------------------------------------------------- LINAS
@dataclass(frozen=True)
class LinasSettings:
    """LINAS defaults (seed 001 Tables 4-5; the inner search runs on predictors only).

    The selection defaults were chosen by ``benchmarks/bench_search.py`` on NAS-Bench-Graph and
    the MobileNetV3-style space (issue 12); each is a switch so the benchmark can compare them.
    """

    population: int = 50  # inner population size
    inner_evaluations: int = 20_000  # predictor evaluations of the inner search per iteration
    crossover: float = 0.9  # inner crossover probability
    mutation: float | None = 0.02  # inner per-gene mutation probability (Table 5); None = 1 / n_var
    algorithm: str = "auto"  # auto | nsga2 | agemoea | unsga3 | moead | ctaea
    predictors: tuple[str, ...] = PREDICTOR_NAMES  # candidates chosen per objective by CV Kendall tau
    cv_folds: int = 3  # folds of the Kendall-tau selection
    min_train: int = 8  # fewer measured configs than this: propose at random
    rank_against_measured: bool = True  # rank picks together with the measured front (fill its gaps)
    exact_features: bool = False  # add cheap exact objectives (log) as features; hurt SVR on cora
    exact_rerank: int = 3  # non-cheap exact objectives: compute them for this many x n picks, re-rank
    # target transform: auto (rank when the measured targets have a long tail, else none) | rank
    # (normal scores, extended past the measured range) | rank_clamped | none; see predictors.SKEW_LIMIT
    transform: str = "auto"
    log_costs: bool = True  # fit logs of every positive "min" objective (else only when max/min > 5)
    rank_against: str = "predicted"  # anchors of the picks: measured values | predicted values of them
    extreme_picks: int = 1  # picks per objective reserved for the best predicted value of it
    inactive_features: bool = True  # add an "inactive" flag per gene the space can switch off
    selection: str = "hvi"  # hvi (greedy predicted HV gain, 2 objectives) | spread (farthest point)
    disagreement_share: float = 0.0  # share of picks with the largest ensemble disagreement (untested)
    fast_inner: bool = True  # nsga2: the vectorized inner search (nas_core.linas.fastmoo), not pymoo's
    # spaces with at most this many gene rows are scored whole instead of searched (0: never)
    exhaustive_limit: int = 0


class LinasEngine:
    """Lightweight Iterative NAS: predictors + an inner pymoo search per iteration."""

    name = "linas"

    def __init__(self, settings: LinasSettings | None = None):
        self.settings = settings or LinasSettings()

    # -- predictors
    def _expensive(self, space: SearchSpace, objectives: Objectives) -> list[str]:
        cheap = set(space.exact_names) if space.exact_is_cheap else set()
        return [m for m in objectives.metrics if m not in cheap]

    def _make(self, objectives: Objectives, metric: str, name: str, seed: int):
        s = self.settings
        direction = dict(zip(objectives.names, objectives.directions)).get(metric, "min")
        log_target = True if (s.log_costs and direction == "min") else None
        return make_predictor(name, seed, transform=s.transform, log_target=log_target)

    def fit_predictors(
        self,
        space: SearchSpace,
        objectives: Objectives,
        history: Sequence[Observation],
        iteration: int,
        seed: int,
    ) -> tuple[dict[str, Any], PredictorReport]:
        """Choose and fit one predictor per expensive metric; score every candidate out of sample."""
        s = self.settings
        X, V, batches = measured_arrays(space, objectives, history)
        feats = self.features(space, X)
        newest = batches.max() if len(batches) else 0
        old, new = batches < newest, batches == newest
        scores: list[PredictorScore] = []
        models: dict[str, Any] = {}
        for m in self._expensive(space, objectives):
            y = V[m]
            best, cv = select_predictor(feats, y, s.predictors, s.cv_folds, seed)
            models[m] = self._make(objectives, m, best, seed).fit(feats, y)
            for name in s.predictors:
                tau = err = None
                # past 300 measured only the chosen predictor is scored out of sample: refitting
                # every candidate on the older batches was a third of an iteration's CPU
                if old.sum() >= 2 and new.sum() >= 2 and (name == best or old.sum() <= 300):
                    pred = self._make(objectives, m, name, seed).fit(feats[old], y[old]).predict(feats[new])
                    tau, err = kendall_tau(y[new], pred), mape(y[new], pred)
                scores.append(PredictorScore(m, name, cv.get(name), tau, err, name == best))
        n_test = int(new.sum()) if old.sum() >= 2 and new.sum() >= 2 else 0
        return models, PredictorReport(
            iteration=iteration, n_train=len(X), n_test=n_test, scores=tuple(scores)
        )

    def _members(self, space, objectives, models, history, seed: int, k: int = 3) -> dict[str, list]:
        """Bootstrap refits (80% subsamples) of every chosen predictor: the disagreement ensemble."""
        X, V, _ = measured_arrays(space, objectives, history)
        feats = self.features(space, X)
        rng = np.random.default_rng(seed + 7)
        out: dict[str, list] = {}
        for m, mdl in models.items():
            name = getattr(mdl, "name", "ridge")
            out[m] = []
            for _ in range(k):
                idx = rng.choice(len(X), size=max(2, int(0.8 * len(X))), replace=False)
                out[m].append(self._make(objectives, m, name, seed).fit(feats[idx], V[m][idx]))
        return out

    def _inactive_columns(self, space: SearchSpace) -> np.ndarray | None:
        """Genes the space can switch off (probed once per space), or None when not asked for."""
        if not self.settings.inactive_features:
            return None
        cache = self.__dict__.setdefault("_inactive_cache", {})
        if id(space) not in cache:
            probe = space.random_genes(np.random.default_rng(0), 512)
            cols = np.arange(space.n_var)
            cache[id(space)] = cols[_inactive(space, probe, cols).any(axis=0)]
        return cache[id(space)]

    def features(self, space: SearchSpace, X: np.ndarray) -> np.ndarray:
        """Gene features, plus an "inactive" flag per gene the space can switch off (an inactive
        layer is then not the same as its smallest choice), plus the log of every cheap exact
        objective when ``exact_features`` (parameters say much about latency and capacity)."""
        F = space.features(X)
        cols = self._inactive_columns(space)
        if cols is not None and len(cols):
            F = np.column_stack([F, _inactive(space, X, cols)])
        if not (self.settings.exact_features and space.exact_is_cheap and space.exact_names):
            return F
        ex = space.exact_array(X)
        cols = [np.log1p(np.maximum(np.asarray(ex[m], dtype=float), 0.0)) for m in space.exact_names]
        return np.column_stack([F, *cols])

    def predict(self, space: SearchSpace, objectives: Objectives, models: dict[str, Any], X: np.ndarray):
        """Predicted (or exact, where cheap) values of every metric for gene rows."""
        feats = self.features(space, X)
        vals = {m: mdl.predict(feats) for m, mdl in models.items()}
        missing = [m for m in objectives.metrics if m not in vals]
        if missing:
            exact = space.exact_array(X)
            vals.update({m: exact[m] for m in missing})
        return vals

    # -- the iteration
    def propose(
        self,
        space: SearchSpace,
        objectives: Objectives,
        history: Sequence[Observation],
        n: int,
        rng: np.random.Generator,
        exclude: frozenset = frozenset(),
        progress: Progress | None = None,
        iteration: int = 0,
    ) -> Batch:
        """The best predicted ``n`` new configs (random until ``min_train`` are measured)."""
        s = self.settings
        t0 = time.perf_counter()
        X, V, _ = measured_arrays(space, objectives, history)
        if len(X) < max(s.min_train, 2):
            return RandomEngine().propose(space, objectives, history, n, rng, exclude, progress)
        seen = _history_ids(space, history) | set(exclude)
        seed = int(rng.integers(2**31 - 1))
        models, report = self.fit_predictors(space, objectives, history, iteration, seed)
        A = self._enumerate(space)
        if A is not None:
            # a small space: the predicted front of every distinct config, not of a search's archive
            P = self.predict(space, objectives, models, A)
        else:
            A, P = self._inner_search(space, objectives, models, X, V, rng, seed, progress)
        # every distinct, valid, new config the inner search visited, with its predictions
        ok = space.is_valid(A)
        A, P = A[ok], {m: v[ok] for m, v in P.items()}
        ids = space.ids(A)
        _, first = np.unique(ids, return_index=True) if ids.dtype != object else _unique_obj(ids)
        first = np.sort(first)
        new = first[np.array([i not in seen for i in ids[first]], dtype=bool)] if len(first) else first
        A, ids, P = A[new], ids[new], {m: v[new] for m, v in P.items()}
        anchors = self._anchors(space, objectives, models, X, V)
        members = self._members(space, objectives, models, history, seed) if s.disagreement_share > 0 else None
        picks = self._pick(space, objectives, models, A, n, anchors, P, members)
        Xo = A[picks]
        seen |= set(ids[picks].tolist())
        Xo, exhausted = _fill_random(space, rng, n, Xo, seen)
        vals = self.predict(space, objectives, models, Xo) if len(Xo) else {}
        if len(Xo) and not space.exact_is_cheap and set(space.exact_names) & set(objectives.metrics):
            exact = space.exact_array(Xo)
            vals.update({m: exact[m] for m in objectives.metrics if m in exact})
        predicted = [tuple((m, float(vals[m][i])) for m in objectives.metrics) for i in range(len(Xo))]
        report = PredictorReport(
            iteration=report.iteration,
            n_train=report.n_train,
            n_test=report.n_test,
            scores=report.scores,
            seconds=time.perf_counter() - t0,
        )
        if progress:
            progress(1.0)
        return _batch(Xo, predicted, report, exhausted)

    def _enumerate(self, space: SearchSpace) -> np.ndarray | None:
        """One valid canonical row per distinct config when the space has at most
        ``exhaustive_limit`` gene rows (cached per space); None otherwise."""
        limit = self.settings.exhaustive_limit
        n_rows = float(np.prod(space.upper.astype(float) + 1.0))
        if limit <= 0 or n_rows > limit:
            return None
        cache = self.__dict__.setdefault("_enum_cache", {})
        if id(space) not in cache:
            grids = np.meshgrid(*[np.arange(int(u) + 1) for u in space.upper], indexing="ij")
            A = space.canonical(np.stack([g.ravel() for g in grids], axis=1).astype(np.int64))
            A = A[space.is_valid(A)]
            ids = space.ids(A)
            _, first = np.unique(ids, return_index=True) if ids.dtype != object else _unique_obj(ids)
            cache[id(space)] = (space, A[np.sort(first)])
        return cache[id(space)][1]

    def _anchors(self, space, objectives, models, X: np.ndarray, V) -> np.ndarray:
        """Points the picks are ranked against: the measured feasible front, as measured or as
        predicted (shrunk predictions then compete with equally shrunk anchors)."""
        s = self.settings
        Fm, CVm = objectives.to_min(V), objectives.violation(V, len(X))
        if not s.rank_against_measured:
            return Fm[:0]
        feas = np.flatnonzero(CVm <= 0)
        if s.rank_against == "measured" or len(feas) == 0:
            return Fm[feas]
        from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

        front = feas[NonDominatedSorting().do(Fm[feas], only_non_dominated_front=True)]
        return objectives.to_min(self.predict(space, objectives, models, X[front]))

    def _pick(
        self, space, objectives, models, A: np.ndarray, n: int, measured: np.ndarray, vals=None, members=None
    ) -> np.ndarray:
        if len(A) == 0:
            return np.zeros(0, dtype=np.int64)
        if vals is None:
            vals = self.predict(space, objectives, models, A)
        F, CV = objectives.to_min(vals), objectives.violation(vals, len(A))
        rerank = [m for m in objectives.metrics if m in space.exact_names and not space.exact_is_cheap]
        if not rerank:
            return self._select(objectives, A, F, CV, n, measured, space, members)
        # exact objectives too slow for the whole archive: shortlist by prediction, re-rank exactly
        short = survive_against(F, CV, self.settings.exact_rerank * n, measured)
        exact = space.exact_array(A[short])
        sub = {m: (exact[m] if m in rerank else np.asarray(vals[m])[short]) for m in objectives.metrics}
        Fs, CVs = objectives.to_min(sub), objectives.violation(sub, len(short))
        return short[self._select(objectives, A[short], Fs, CVs, n, measured, space, members)]

    def _select(self, objectives, A, F, CV, n: int, anchors, space, members) -> np.ndarray:
        """The batch: reserved extremes, a share by ensemble disagreement, the rest by the rule."""
        s = self.settings
        n = min(n, len(F))
        chosen: list[int] = []
        feas = np.flatnonzero(CV <= 0)
        if s.extreme_picks > 0 and len(feas):
            for j in range(F.shape[1]):
                order = feas[np.argsort(F[feas, j], kind="stable")]
                chosen += [int(i) for i in order[: s.extreme_picks] if int(i) not in chosen]
        chosen = chosen[:n]
        k_dis = int(round(s.disagreement_share * n)) if members else 0
        if k_dis > 0 and len(chosen) < n:
            pool = survive_against(F, CV, min(len(F), 6 * n), anchors)
            pool = np.array([i for i in pool if i not in set(chosen)], dtype=np.int64)
            if len(pool):
                feats = self.features(space, A[pool])
                spread_ = np.zeros(len(pool))
                for mem in members.values():
                    P = np.column_stack([mm.predict(feats) for mm in mem])
                    spread_ += P.std(axis=1) / (np.std(P) or 1.0)
                chosen += pool[np.argsort(-spread_, kind="stable")[: min(k_dis, n - len(chosen))]].tolist()
        rest = n - len(chosen)
        if rest <= 0:
            return np.array(chosen[:n], dtype=np.int64)
        mask = np.ones(len(F), dtype=bool)
        mask[chosen] = False
        left = np.flatnonzero(mask)
        if s.selection == "hvi" and F.shape[1] == 2:
            sel = greedy_hvi(F[left], CV[left], rest, np.vstack([anchors, F[chosen]]) if chosen else anchors)
        else:
            sel = survive_against(F[left], CV[left], rest, np.vstack([anchors, F[chosen]]) if chosen else anchors)
        return np.array(chosen + left[sel].tolist(), dtype=np.int64)

    def _inner_search(self, space, objectives, models, X, V, rng, seed, progress):
        """Run the inner algorithm on the predictors; return every row it evaluated and its predictions."""
        s = self.settings
        algo_name = check_algorithm(s.algorithm, len(objectives.names), bool(objectives.constraints))
        if algo_name == "nsga2" and s.fast_inner:
            from nas_core.linas.fastmoo import nsga2_search, row_hash

            store: list[dict] = []
            # predictions are deterministic per canonical row: on a small space (NAS-Bench-Graph:
            # 2,500 distinct rows in 20,000 inner evaluations) each distinct row is predicted once
            memo: dict[int, int] = {}
            uvals: list[dict] = []
            done = [0]

            def evaluate(Xi: np.ndarray):
                h = row_hash(Xi).tolist()
                new_rows: dict[int, int] = {}
                for i, k in enumerate(h):
                    if k not in memo and k not in new_rows:
                        new_rows[k] = i
                fresh = list(new_rows.values())
                if fresh:
                    base = len(memo)
                    for j, k in enumerate(new_rows):
                        memo[k] = base + j
                    uvals.append(self.predict(space, objectives, models, Xi[fresh]))
                    if len(uvals) > 1:  # keep one concatenated table
                        uvals[:] = [{m: np.concatenate([v[m] for v in uvals]) for m in uvals[0]}]
                pos = np.array([memo[k] for k in h], dtype=np.int64)
                vals = {m: v[pos] for m, v in uvals[0].items()}
                store.append(vals)
                done[0] += len(Xi)
                cv = objectives.violation(vals, len(Xi)) + np.where(space.is_valid(Xi), 0.0, 1.0)
                if progress:
                    progress(min(0.99, done[0] / s.inner_evaluations))
                return objectives.to_min(vals), cv

            W = self.warm_start(space, objectives, X, V, rng)
            p_mut = s.mutation or 1.0 / space.n_var
            A, _, _ = nsga2_search(
                space, evaluate, W, s.inner_evaluations, s.population, s.crossover, p_mut, rng
            )
            P = {m: np.concatenate([v[m] for v in store]) for m in store[0]} if store else {}
            return A, P
        A = self._pymoo_search(space, objectives, models, X, V, rng, seed, progress)
        return A, self.predict(space, objectives, models, A) if len(A) else {}

    def _pymoo_search(self, space, objectives, models, X, V, rng, seed, progress) -> np.ndarray:
        """Run the pymoo algorithm on the predictors; return every gene row it evaluated."""
        from pymoo.core.problem import Problem

        s = self.settings
        engine = self
        archive: list[np.ndarray] = []
        algo_name = check_algorithm(s.algorithm, len(objectives.names), bool(objectives.constraints))
        # MOEA/D takes no constraints: invalid rows get a penalty on every objective instead
        use_g = algo_name != "moead"
        n_con = len(objectives.constraints) + 1 if use_g else 0  # +1: the space's own validity

        class PredictedProblem(Problem):
            def __init__(self) -> None:
                super().__init__(
                    n_var=space.n_var,
                    n_obj=len(objectives.names),
                    n_ieq_constr=n_con,
                    xl=np.zeros(space.n_var),
                    xu=space.upper.astype(float),
                    vtype=int,
                )

            def _evaluate(self, x, out, *args, **kwargs):
                Xi = space.canonical(np.rint(x).astype(np.int64))
                archive.append(Xi)
                vals = engine.predict(space, objectives, models, Xi)
                F = objectives.to_min(vals)
                valid = space.is_valid(Xi)
                if not use_g:
                    out["F"] = F + np.where(valid, 0.0, 1e9)[:, None]
                    return
                out["F"] = F
                G = [c.violation(np.asarray(vals[c.metric], dtype=float)) for c in objectives.constraints]
                G.append(np.where(valid, -1.0, 1.0))
                out["G"] = np.column_stack(G)

        problem = PredictedProblem()
        algo = self._algorithm(space, objectives, X, V, rng)
        algo.setup(problem, termination=("n_eval", s.inner_evaluations), seed=seed, verbose=False)
        while algo.has_next():
            algo.next()
            if progress:
                progress(min(0.99, algo.evaluator.n_eval / s.inner_evaluations))
        return np.vstack(archive) if archive else np.zeros((0, space.n_var), dtype=np.int64)

    def warm_start(self, space, objectives, X: np.ndarray, V, rng: np.random.Generator) -> np.ndarray:
        """Initial inner population: the measured non-dominated set, topped up at random."""
        s = self.settings
        F, CV = objectives.to_min(V), objectives.violation(V, len(X))
        from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

        feas = np.flatnonzero(CV <= 0)
        nd = feas[NonDominatedSorting().do(F[feas], only_non_dominated_front=True)] if len(feas) else feas
        W = X[nd]
        _, first = _unique_obj(space.ids(W)) if len(W) else (None, np.zeros(0, dtype=np.int64))
        W = W[np.sort(first)][: s.population]
        if len(W) < s.population:
            R = space.random_genes(rng, 4 * (s.population - len(W)))
            R = R[space.is_valid(R)][: s.population - len(W)]
            W = np.vstack([W, R]) if len(W) else R
        return W

    def _algorithm(self, space, objectives, X, V, rng):
        from pymoo.core.mutation import Mutation
        from pymoo.core.repair import Repair
        from pymoo.operators.crossover.ux import UX

        s = self.settings
        n_obj = len(objectives.names)
        name = check_algorithm(s.algorithm, n_obj, bool(objectives.constraints))
        p_mut = s.mutation or 1.0 / space.n_var

        class ResetMutation(Mutation):
            def _do(self, problem, X, random_state=None, **kwargs):
                return _reset_mutation(np.rint(X).astype(np.int64), space.upper, p_mut, random_state)

        class CanonicalRepair(Repair):
            def _do(self, problem, X, **kwargs):
                return space.canonical(np.rint(X).astype(np.int64))

        W = self.warm_start(space, objectives, X, V, rng)
        ops = dict(
            sampling=W.astype(float),
            crossover=UX(prob=s.crossover),
            mutation=ResetMutation(prob=1.0),
            repair=CanonicalRepair(),
            eliminate_duplicates=True,
        )
        if name == "nsga2":
            from pymoo.algorithms.moo.nsga2 import NSGA2

            return NSGA2(pop_size=s.population, **ops)
        if name == "agemoea":
            from pymoo.algorithms.moo.age import AGEMOEA

            return AGEMOEA(pop_size=s.population, **ops)
        ref_dirs = _ref_dirs(n_obj, s.population)
        if name == "unsga3":
            from pymoo.algorithms.moo.unsga3 import UNSGA3

            return UNSGA3(ref_dirs=ref_dirs, pop_size=s.population, **ops)
        if name == "moead":
            from pymoo.algorithms.moo.moead import MOEAD

            return MOEAD(
                ref_dirs=ref_dirs,
                n_neighbors=min(15, len(ref_dirs) - 1),
                sampling=ops["sampling"][: len(ref_dirs)],  # one individual per direction
                crossover=ops["crossover"],
                mutation=ops["mutation"],
                repair=ops["repair"],
            )
        from pymoo.algorithms.moo.ctaea import CTAEA

        return CTAEA(
            ref_dirs=ref_dirs,
            sampling=ops["sampling"][: len(ref_dirs)],
            crossover=ops["crossover"],
            mutation=ops["mutation"],
            repair=ops["repair"],
        )




def greedy_hvi(F: np.ndarray, CV: np.ndarray, k: int, anchors: np.ndarray) -> np.ndarray:
    """``k`` indices of ``F`` (two objectives, minimization) chosen greedily by hypervolume gain.

    Each step takes the candidate whose predicted point adds the most hypervolume to the anchors
    plus the points chosen so far (objectives normalized over candidates and anchors, reference
    point 1.1). Once nothing adds volume, the rest follow :func:`survive_against`.
    """
    n = len(F)
    k = min(k, n)
    feas = np.flatnonzero(CV <= 0)
    anchors = np.asarray(anchors, dtype=float).reshape(-1, 2)
    if k == 0 or len(feas) == 0:
        return survive_against(F, CV, k, anchors)
    both = np.vstack([F[feas], anchors])
    lo, span = both.min(axis=0), both.max(axis=0) - both.min(axis=0)
    span = np.where(span > 0, span, 1.0)
    Z = (F[feas] - lo) / span
    S = (anchors - lo) / span
    ref = np.array([1.1, 1.1])
    chosen: list[int] = []
    avail = np.ones(len(feas), dtype=bool)
    while len(chosen) < k:
        if len(S):
            S = S[np.lexsort((S[:, 1], S[:, 0]))]
            S = S[np.concatenate([[True], np.minimum.accumulate(S[:, 1])[:-1] > S[1:, 1]])]
        c = Z[avail]
        box = np.clip(ref[0] - c[:, 0], 0, None) * np.clip(ref[1] - c[:, 1], 0, None)
        if len(S):
            T1 = np.minimum(np.maximum(S[None, :, 0], c[:, None, 0]), ref[0])
            T2 = np.minimum(np.maximum(S[None, :, 1], c[:, None, 1]), ref[1])
            width = np.diff(np.concatenate([T1, np.full((len(c), 1), ref[0])], axis=1), axis=1)
            height = ref[1] - np.minimum.accumulate(T2, axis=1)
            gain = box - (width * height).sum(axis=1)
        else:
            gain = box
        if len(gain) == 0 or gain.max() <= 1e-12:
            break
        idx = np.flatnonzero(avail)
        j = idx[int(np.argmax(gain))]
        # gains only shrink as points are added: a candidate that adds nothing now never will
        avail[idx[gain <= 1e-12]] = False
        chosen.append(int(j))
        avail[j] = False
        S = np.vstack([S, Z[j]]) if len(S) else Z[j][None, :]
    picked = feas[chosen]
    if len(picked) < k:
        rest = np.setdiff1d(np.arange(n), picked)
        more = survive_against(F[rest], CV[rest], k - len(picked), np.vstack([anchors, F[picked]]))
        picked = np.concatenate([picked, rest[more]])
    return picked.astype(np.int64)

def _inactive(space: SearchSpace, X: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(n, len(cols)) mask: gene ``cols[j]`` means nothing in row i.

    Uses the space's ``active(X)`` when it has one; otherwise a gene is inactive where changing
    it leaves the canonical row unchanged (so the CNN and super-network spaces get the flags too).
    """
    X = np.asarray(X, dtype=np.int64)
    active = getattr(space, "active", None)
    if active is not None:
        return ~np.asarray(active(X), dtype=bool)[:, cols]
    C = space.canonical(X)
    out = np.zeros((len(X), len(cols)), dtype=bool)
    for j, c in enumerate(cols):
        n = space.genes[c].n
        if n < 2:
            continue
        Y = X.copy()
        Y[:, c] = (Y[:, c] + 1) % n
        out[:, j] = np.all(space.canonical(Y) == C, axis=1)
    return out


def _unique_obj(ids: np.ndarray) -> tuple[list, np.ndarray]:
    seen: dict = {}
    for i, v in enumerate(ids.tolist()):
        seen.setdefault(v, i)
    return list(seen), np.array(list(seen.values()), dtype=np.int64)


def _ref_dirs(n_obj: int, n_points: int) -> np.ndarray:
    """Das-Dennis reference directions, as many as fit in ``n_points``.

    The seed used Riesz s-energy directions; pymoo takes 5-10 s to optimize those on this
    machine, too slow for an interactive step, while the uniform lattice is instant.
    """
    from math import comb

    from pymoo.util.ref_dirs import get_reference_directions

    p = 1
    while comb(p + 1 + n_obj - 1, n_obj - 1) <= n_points:
        p += 1
    return get_reference_directions("das-dennis", n_obj, n_partitions=p)


ENGINES = {"linas": LinasEngine, "nsga2": Nsga2Engine, "random": RandomEngine}


def make_engine(name: str, **settings: Any):
    """An engine by name (linas, nsga2, random) with optional settings fields."""
    if name not in ENGINES:
        raise SearchError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
    if name == "linas":
        return LinasEngine(LinasSettings(**settings))
    if name == "nsga2":
        return Nsga2Engine(Nsga2Settings(**settings))
    return RandomEngine()


# ----------------------------------------------------------------------------- the loop
@dataclass(frozen=True)
class SearchResult:
    """Everything one store-free search produced."""

    engine: str
    seed: int
    objectives: Objectives
    observations: tuple[Observation, ...]
    hv_trace: tuple[float, ...] = ()  # hypervolume after evaluation 1, 2, ... (empty without a tracker)
    reports: tuple[PredictorReport, ...] = ()  # LINAS: one per iteration that fitted predictors
    seconds: float = 0.0
    exhausted: bool = False
    stopped_early: bool = False  # stop_at hypervolume reached before the budget
    extra: tuple[tuple[str, Any], ...] = field(default=())

    @property
    def n_evaluations(self) -> int:
        """Evaluations spent."""
        return len(self.observations)

    def evaluations_to_reach(self, hv: float) -> int | None:
        """First evaluation count whose hypervolume is at least ``hv`` (None: never)."""
        for i, v in enumerate(self.hv_trace):
            if v >= hv:
                return i + 1
        return None


def run_search(
    space: SearchSpace,
    source: ObjectiveSource,
    engine: Any,
    budget: int,
    population: int,
    seed: int,
    objectives: Objectives | Sequence[str],
    directions: dict[str, str] | None = None,
    constraints: Sequence[tuple[str, str, float]] = (),
    hv: HypervolumeTracker | None = None,
    stop_at: float | None = None,
    progress: Progress | None = None,
) -> SearchResult:
    """Run an engine for ``budget`` evaluations in batches of ``population``.

    The first batch is random (every engine); each later batch is one engine iteration. The last
    batch is cut to what the budget allows, so exactly ``budget`` configs are evaluated unless the
    space runs out or ``stop_at`` is reached.

    Args:
        space: the search space.
        source: evaluates configs to metric values.
        engine: an engine object or name (linas, nsga2, random).
        budget: total evaluations allowed.
        population: evaluations per batch, the first (random) one included.
        seed: seeds everything.
        objectives: validated :class:`Objectives` or names (then ``directions``/``constraints``).
        hv: tracker updated after every evaluation (feasible measured points only).
        stop_at: stop once the tracker's hypervolume reaches this value.
        progress: called with the fraction of the budget spent (0..1).

    Raises:
        SearchError: bad objectives, constraints, engine, or a budget below the population.
    """
    if not isinstance(objectives, Objectives):
        objectives = Objectives.create(objectives, directions, constraints)
    if isinstance(engine, str):
        engine = make_engine(engine)
    if population < 1:
        raise SearchError(f"population must be at least 1, got {population}")
    if budget < population:
        raise SearchError(
            f"budget ({budget}) is smaller than the initial population ({population}); "
            "raise the budget or lower the population"
        )
    if isinstance(engine, LinasEngine):
        check_algorithm(engine.settings.algorithm, len(objectives.names), bool(objectives.constraints))
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    history: list[Observation] = []
    reports: list[PredictorReport] = []
    exhausted = stopped = False
    it = 0
    while len(history) < budget:
        n = min(population, budget - len(history))
        if it == 0:
            batch = RandomEngine().propose(space, objectives, history, n, rng)
        elif isinstance(engine, LinasEngine):
            batch = engine.propose(space, objectives, history, n, rng, iteration=it)
        else:
            batch = engine.propose(space, objectives, history, n, rng)
        if batch.report is not None:
            reports.append(batch.report)
        if len(batch) == 0:
            exhausted = True
            break
        configs = [space.decode(g) for g in batch.genes]
        results = source.evaluate(configs)
        for g, c, r in zip(batch.genes, configs, results):
            obs = Observation(key=space.key(c), genes=g, values=tuple(sorted(r.items())), batch=it)
            history.append(obs)
            if hv is not None:
                hv.update(_point(objectives, obs))
        if progress:
            progress(len(history) / budget)
        it += 1
        if batch.exhausted:
            exhausted = True
            break
        if hv is not None and stop_at is not None and hv.value >= stop_at:
            stopped = True
            break
    return SearchResult(
        engine=getattr(engine, "name", str(engine)),
        seed=seed,
        objectives=objectives,
        observations=tuple(history),
        hv_trace=tuple(hv.trace) if hv is not None else (),
        reports=tuple(reports),
        seconds=time.perf_counter() - t0,
        exhausted=exhausted,
        stopped_early=stopped,
    )


def _point(objectives: Objectives, obs: Observation) -> np.ndarray | None:
    """Minimization-form objective vector of a feasible observation (None: infeasible/missing)."""
    vals = {m: obs.value(m) for m in objectives.metrics}
    if any(v is None for v in vals.values()):
        return None
    arr = {m: np.array([v]) for m, v in vals.items()}
    if objectives.violation(arr, 1)[0] > 0:
        return None
    return objectives.to_min(arr)[0]
