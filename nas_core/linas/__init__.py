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
- engines ``linas``, ``nsga2``, ``random`` (:mod:`nas_core.linas.engines`), the store-free loop
  :func:`run_search`, :class:`HypervolumeTracker`, and the session's designers
  (:mod:`nas_core.linas.designers`).

LINAS on your own space and objective function::

    import numpy as np
    from nas_core.linas import Gene, SearchSpace, run_search

    class Mine(SearchSpace):
        genes = (Gene("width", 8), Gene("depth", 6), Gene("act", 3, "cat"))
        def encode(self, c): return np.array(c)
        def decode(self, x): return tuple(int(v) for v in x)
        def key(self, c): return "-".join(map(str, c))

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
