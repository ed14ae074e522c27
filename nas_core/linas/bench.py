"""Search-efficiency comparison on a tabular benchmark: shared by ``bench-search`` and the benchmark script.

Owns :func:`compare` (every engine x every seed on one NAS-Bench-Graph data set, evaluations
needed to reach fractions of the true front's hypervolume), its frozen result records, and
:func:`time_inner_search` (seconds for a given number of predictor evaluations of the inner
search). Hypervolume normalization is fixed per data set: ideal and nadir of the true Pareto
front of the full table, reference point 1.1 in normalized space.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nas_core.linas.engines import (
    LinasEngine,
    LinasSettings,
    Observation,
    RandomEngine,
    make_engine,
    run_search,
)
from nas_core.linas.hypervolume import HypervolumeTracker
from nas_core.linas.space import Objectives, SearchError
from nas_core.linas.tabular import METRICS, TabularBenchmark


@dataclass(frozen=True)
class EngineStats:
    """One engine on one data set over all seeds."""

    engine: str
    targets: tuple[float, ...]  # fractions of the true front's hypervolume
    # per target: evaluations needed per seed (None: not reached within the budget)
    reached: tuple[tuple[int | None, ...], ...]
    final_hv: tuple[float, ...]  # per seed: final hypervolume / true hypervolume
    seconds: float

    def median_iqr(self, t: int, budget: int) -> tuple[float, float, float, int]:
        """(median, q25, q75, n reached) of target ``t``; unreached seeds count as budget + 1."""
        vals = np.array([budget + 1 if v is None else v for v in self.reached[t]], dtype=float)
        q25, med, q75 = np.percentile(vals, [25, 50, 75])
        return float(med), float(q25), float(q75), sum(v is not None for v in self.reached[t])


@dataclass(frozen=True)
class Comparison:
    """Every engine on one data set."""

    dataset: str
    objectives: tuple[str, ...]
    budget: int
    population: int
    seeds: int
    true_front_size: int
    stats: tuple[EngineStats, ...]

    def get(self, engine: str) -> EngineStats | None:
        """The stats of ``engine``."""
        return next((s for s in self.stats if s.engine == engine), None)

    def ratio(self, a: str, b: str, t: int) -> float | None:
        """Median evaluations of ``a`` over ``b`` for target ``t`` (unreached counts as budget + 1)."""
        sa, sb = self.get(a), self.get(b)
        if sa is None or sb is None:
            return None
        return sa.median_iqr(t, self.budget)[0] / sb.median_iqr(t, self.budget)[0]

    def to_dict(self) -> dict:
        """JSON-able summary."""
        out = {
            "dataset": self.dataset,
            "objectives": list(self.objectives),
            "budget": self.budget,
            "population": self.population,
            "seeds": self.seeds,
            "true_front_size": self.true_front_size,
            "engines": {},
        }
        for s in self.stats:
            e = {"seconds": round(s.seconds, 2), "final_hv_fraction": [round(v, 4) for v in s.final_hv]}
            for t, target in enumerate(s.targets):
                med, q25, q75, n = s.median_iqr(t, self.budget)
                e[f"hv{target}"] = {
                    "median": med,
                    "q25": q25,
                    "q75": q75,
                    "reached": n,
                    "per_seed": list(s.reached[t]),
                }
            out["engines"][s.engine] = e
        return out

    def to_text(self) -> str:
        """A plain table (unreached seeds count as budget + 1, shown as '>budget')."""
        lines = [
            f"{self.dataset}: {' vs '.join(self.objectives)}, budget {self.budget}, population {self.population}, "
            f"{self.seeds} seeds, true front {self.true_front_size} points"
        ]
        for s in self.stats:
            parts = [f"  {s.engine:7s}"]
            for t, target in enumerate(s.targets):
                med, q25, q75, n = s.median_iqr(t, self.budget)

                def f(v: float) -> str:
                    return f">{self.budget}" if v > self.budget else f"{v:.0f}"

                parts.append(
                    f"HV>={target}: median {f(med)} [IQR {f(q25)}-{f(q75)}] reached {n}/{self.seeds}"
                )
            parts.append(f"final HV {np.median(s.final_hv):.4f}  {s.seconds:.1f}s")
            lines.append("  ".join(parts))
        return "\n".join(lines)


def compare(
    dataset: str = "cora",
    engines: Sequence[str] = ("linas", "nsga2", "random"),
    budget: int = 1000,
    seeds: int = 10,
    population: int = 50,
    objectives: Sequence[str] = ("accuracy", "latency"),
    targets: Sequence[float] = (0.98, 0.995),
    inner_evaluations: int = 20_000,
    stop_early: bool = True,
) -> Comparison:
    """Run every engine for every seed on a NAS-Bench-Graph data set.

    Args:
        stop_early: stop a run once it reaches the highest target (the later trace is not needed).

    Raises:
        SearchError: unknown data set/engine/objective, budget below the population.
    """
    bench = TabularBenchmark(dataset)
    obj = Objectives.create(objectives, METRICS, known=list(METRICS))
    front = bench.true_front(obj.names)
    true_hv = HypervolumeTracker.from_front(front).compute(front)
    stats = []
    for name in engines:
        make_engine(name)  # validates the name before any run
    for name in engines:
        t0 = time.perf_counter()
        reached: list[list[int | None]] = [[] for _ in targets]
        final = []
        for seed in range(seeds):
            hv = HypervolumeTracker.from_front(front)
            engine = (
                LinasEngine(LinasSettings(inner_evaluations=inner_evaluations))
                if name == "linas"
                else make_engine(name)
            )
            res = run_search(
                bench,
                bench,
                engine,
                budget,
                population,
                seed,
                obj,
                hv=hv,
                stop_at=max(targets) * true_hv if stop_early else None,
            )
            for t, target in enumerate(targets):
                reached[t].append(res.evaluations_to_reach(target * true_hv))
            final.append(hv.value / true_hv)
        stats.append(
            EngineStats(
                engine=name,
                targets=tuple(targets),
                reached=tuple(tuple(r) for r in reached),
                final_hv=tuple(final),
                seconds=time.perf_counter() - t0,
            )
        )
    return Comparison(
        dataset=dataset,
        objectives=obj.names,
        budget=budget,
        population=population,
        seeds=seeds,
        true_front_size=len(front),
        stats=tuple(stats),
    )


def time_inner_search(
    dataset: str = "cora", evaluations: int = 20_000, n_train: int = 200, seed: int = 0
) -> tuple[float, float]:
    """(wall, CPU) seconds of one LINAS inner search of ``evaluations`` predictor evaluations.

    Predictors are fitted first and a warm-up search runs untimed. CPU time is reported too
    because on a shared machine wall time mostly measures the neighbours.
    """
    bench = TabularBenchmark(dataset)
    obj = Objectives.create(("accuracy", "latency"), METRICS, known=list(METRICS))
    rng = np.random.default_rng(seed)
    X = RandomEngine().propose(bench, obj, (), n_train, rng).genes
    configs = [bench.decode(g) for g in X]
    hist = [
        Observation(bench.key(c), g, tuple(sorted(r.items())), 0)
        for g, c, r in zip(X, configs, bench.evaluate(configs))
    ]
    eng = LinasEngine(LinasSettings(inner_evaluations=evaluations))
    models, _ = eng.fit_predictors(bench, obj, hist, 0, seed)
    from nas_core.linas.engines import measured_arrays

    Xm, V, _ = measured_arrays(bench, obj, hist)
    eng._inner_search(bench, obj, models, Xm, V, rng, seed, None)  # warm-up: imports, first calls
    t0, c0 = time.perf_counter(), time.process_time()
    eng._inner_search(bench, obj, models, Xm, V, rng, seed, None)
    return time.perf_counter() - t0, time.process_time() - c0


def parse_space(text: str) -> str:
    """The data set of ``nasbench-graph:NAME``.

    Raises:
        SearchError: any other form.
    """
    prefix = "nasbench-graph:"
    if not text.startswith(prefix) or not text[len(prefix) :]:
        raise SearchError(f"unknown space {text!r}; use nasbench-graph:DATASET, e.g. nasbench-graph:cora")
    return text[len(prefix) :]
