"""LINAS (seed 001), NSGA-II and random search on plug-in search spaces, with hypervolume.

This package owns the multi-objective engines and their plug-in API:

- a :class:`~nas_core.linas.space.SearchSpace` is a list of integer genes (``Gene(name, n, kind)``,
  kind ``int`` for ordered values or ``cat`` for labels) with ``encode(config) -> np.ndarray``,
  ``decode(x) -> config``, a canonical ``key(config) -> str`` (ignores inactive genes),
  ``sample(rng, n)`` and, optionally, ``exact_objectives(configs) -> {name: array}`` for
  objectives known without training (parameters, MACs);
- an :class:`~nas_core.linas.space.ObjectiveSource` has ``evaluate(configs) -> [{name: value}]``;
- :class:`~nas_core.linas.space.CnnSpace` is the CNN Template, :class:`~nas_core.linas.tabular.
  TabularBenchmark` is NAS-Bench-Graph (cora, citeseer, pubmed, ...);
- :class:`~nas_core.linas.mbv3_space.MobileNetV3Space` is a 46-gene MobileNetV3-style space with
  a seeded accuracy surrogate and a latency look-up table (``bench-search --space mbv3:SEED``);
- engines ``linas``, ``nsga2``, ``random`` (:mod:`nas_core.linas.engines`; LINAS's inner NSGA-II
  is the vectorized :mod:`nas_core.linas.fastmoo`), the store-free loop :func:`run_search`,
  :class:`HypervolumeTracker`, the benchmark harness (:mod:`nas_core.linas.bench`: any plug-in
  space by registered name or ``package.module:CLASS``) and the session's designers
  (:mod:`nas_core.linas.designers`).

``canonical`` and ``ids`` are optional but worth writing: ``canonical`` zeroes genes that mean
nothing (an inactive layer), so one network has one row, and LINAS then also marks those genes
as inactive in its features; ``ids`` is the vectorized identity the engines dedup on (the
default calls ``key(decode(x))`` per row).

LINAS on your own space and objective function::

    import numpy as np
    from nas_core.linas import Gene, SearchSpace, run_search

    class Mine(SearchSpace):
        genes = (Gene("width", 8), Gene("depth", 6), Gene("act", 3, "cat"))
        def canonical(self, X):  # act means nothing at depth 0: zero it, one row per network
            X = np.array(X, dtype=np.int64).reshape(-1, 3)
            X[X[:, 1] == 0, 2] = 0
            return X
        def ids(self, X):  # vectorized identity: equal exactly when the networks are
            C = self.canonical(X)
            return C[:, 0] * 100 + C[:, 1] * 10 + C[:, 2]
        def encode(self, c): return self.canonical([c])[0]
        def decode(self, x): return tuple(int(v) for v in self.canonical([x])[0])
        def key(self, c): return "-".join(map(str, self.encode(c)))

    class Source:
        def evaluate(self, configs):
            return [{"error": 1 / (1 + w + d), "cost": w * d + a} for w, d, a in configs]

    result = run_search(Mine(), Source(), "linas", budget=120, population=20, seed=0,
                        objectives=["error", "cost"], directions={"error": "min", "cost": "min"})
    print(result.n_evaluations, [o.values for o in result.observations[:3]])
"""

from nas_core.linas.engines import (
    Batch,
    LinasEngine,
    LinasSettings,
    Nsga2Engine,
    Nsga2Settings,
    Observation,
    RandomEngine,
    SearchResult,
    make_engine,
    run_search,
)
from nas_core.linas.hypervolume import HypervolumeTracker, non_dominated
from nas_core.linas.predictors import (
    PredictorReport,
    PredictorScore,
    RidgePredictor,
    StackedPredictor,
    SvrPredictor,
    select_predictor,
)
from nas_core.linas.space import (
    CnnSpace,
    Constraint,
    Gene,
    Objectives,
    ObjectiveSource,
    SearchError,
    SearchSpace,
)

__all__ = [
    "Batch",
    "CnnSpace",
    "Constraint",
    "Gene",
    "HypervolumeTracker",
    "LinasEngine",
    "LinasSettings",
    "Nsga2Engine",
    "Nsga2Settings",
    "ObjectiveSource",
    "Objectives",
    "Observation",
    "PredictorReport",
    "PredictorScore",
    "RandomEngine",
    "RidgePredictor",
    "SearchError",
    "SearchResult",
    "SearchSpace",
    "StackedPredictor",
    "SvrPredictor",
    "make_engine",
    "non_dominated",
    "run_search",
    "select_predictor",
]
