"""Search-efficiency comparison on any plug-in space: shared by ``bench-search`` and the benchmark script.

Owns :func:`load_problem` (a benchmark space by registered name or module path),
:func:`compare` (every engine x every seed on one problem: evaluations needed to reach
fractions of the reference front's hypervolume, hypervolume at fixed evaluation counts, CPU
time per LINAS iteration), its frozen result records, and :func:`time_inner_search`.
Hypervolume normalization is fixed per problem: ideal and nadir of the reference front (the
true front of a table, or the best union of long runs), reference point 1.1 in normalized space.

Space specs (``--space``): ``nasbench-graph:DATASET`` (cora, citeseer, pubmed, ...),
``mbv3[:SEED]`` (the MobileNetV3-style space, :mod:`nas_core.linas.mbv3_space`, surrogate seed),
or ``package.module:ATTR[:ARG]`` where ``ATTR`` is a class or factory called with ``ARG`` (a
string, if given) that returns an object that is both a
:class:`~nas_core.linas.space.SearchSpace` and has ``evaluate(configs)``. Its objective
directions come from a ``metrics`` / ``METRICS`` attribute (name -> "max"/"min"); its
reference front from ``reference_front(names)`` or ``true_front(names)`` when it has one,
otherwise from the non-dominated union of every run of the comparison.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas_core.linas.engines import (
    LinasEngine,
    LinasSettings,
    Observation,
    RandomEngine,
    make_engine,
    measured_arrays,
    run_search,
)
from nas_core.linas.engines import _point as _engine_point
from nas_core.linas.hypervolume import HypervolumeTracker, non_dominated
from nas_core.linas.space import Objectives, SearchError, SearchSpace
from nas_core.linas.tabular import DATASETS

#: Registered benchmark spaces: name -> (module, class, default argument).
SPACES: dict[str, tuple[str, str, str | None]] = {
    "nasbench-graph": ("nas_core.linas.tabular", "TabularBenchmark", None),
    "mbv3": ("nas_core.linas.mbv3_space", "MobileNetV3Space", "0"),
}
CHECKPOINTS = (250, 500, 1000, 2000)


@dataclass(frozen=True)
class Problem:
    """A benchmark problem: a space that evaluates itself, its metrics and reference front."""

    name: str
    space: Any  # a SearchSpace with evaluate(configs)
    metrics: Mapping[str, str]  # name -> "max" | "min"
    reference: Callable[[Sequence[str]], np.ndarray] | None = None  # names -> minimization-form front


def load_problem(spec: str | Problem) -> Problem:
    """The benchmark problem of a space spec (see the module docstring).

    Raises:
        SearchError: unknown name, a module or attribute that does not import, or an object that
            is not a search space with ``evaluate``.
    """
    if isinstance(spec, Problem):
        return spec
    text = str(spec).strip()
    head, _, arg = text.partition(":")
    if head in SPACES:
        mod, attr, default = SPACES[head]
        arg = arg or default
        if arg is None:
            raise SearchError(f"space {head!r} needs an argument, e.g. {head}:cora")
        if head == "mbv3":
            try:
                int(arg)
            except ValueError:
                raise SearchError(f"mbv3 takes an integer surrogate seed, e.g. mbv3:0; got {arg!r}") from None
            obj = getattr(importlib.import_module(mod), attr)(int(arg))
        else:
            obj = getattr(importlib.import_module(mod), attr)(arg)
    elif "." in head and ":" in text:
        attr, _, arg = arg.partition(":")
        try:
            module = importlib.import_module(head)
        except ImportError as exc:
            raise SearchError(f"cannot import space module {head!r}: {exc}") from exc
        if not hasattr(module, attr):
            raise SearchError(f"module {head!r} has no attribute {attr!r}")
        factory = getattr(module, attr)
        obj = factory(arg) if arg else factory()
    else:
        raise SearchError(
            f"unknown space {text!r}; use nasbench-graph:DATASET (e.g. nasbench-graph:cora), mbv3[:SEED], "
            "or package.module:CLASS[:ARG] for your own space"
        )
    if not isinstance(obj, SearchSpace) or not callable(getattr(obj, "evaluate", None)):
        raise SearchError(f"space {text!r} must be a SearchSpace with an evaluate(configs) method")
    metrics = getattr(obj, "metrics", None) or getattr(obj, "METRICS", None)
    if metrics is None:
        module = importlib.import_module(type(obj).__module__)
        metrics = getattr(module, "METRICS", None)
    if not isinstance(metrics, Mapping):
        raise SearchError(f"space {text!r} needs a metrics (or METRICS) mapping of objective name -> max/min")
    ref = getattr(obj, "reference_front", None) or getattr(obj, "true_front", None)
    return Problem(name=text, space=obj, metrics=dict(metrics), reference=ref)


@dataclass(frozen=True)
class EngineStats:
    """One engine on one problem over all seeds."""

    engine: str
    targets: tuple[float, ...]  # fractions of the reference front's hypervolume
    # per target: evaluations needed per seed (None: not reached within the budget)
    reached: tuple[tuple[int | None, ...], ...]
    final_hv: tuple[float, ...]  # per seed: final hypervolume / reference hypervolume
    seconds: float
    checkpoints: tuple[int, ...] = ()
    # per checkpoint: HV fraction per seed (None: the run stopped early or the budget is smaller)
    hv_at: tuple[tuple[float | None, ...], ...] = ()
    iteration_cpu: tuple[float, ...] = ()  # CPU seconds of every engine iteration (LINAS), all seeds
    cpu_seconds: float = 0.0

    def median_iqr(self, t: int, budget: int) -> tuple[float, float, float, int]:
        """(median, q25, q75, n reached) of target ``t``; unreached seeds count as budget + 1."""
        vals = np.array([budget + 1 if v is None else v for v in self.reached[t]], dtype=float)
        q25, med, q75 = np.percentile(vals, [25, 50, 75])
        return float(med), float(q25), float(q75), sum(v is not None for v in self.reached[t])

    def range_of(self, t: int) -> tuple[int | None, int | None]:
        """(min, max) evaluations over the seeds that reached target ``t``."""
        got = [v for v in self.reached[t] if v is not None]
        return (min(got), max(got)) if got else (None, None)

    def hv_median(self, c: int) -> float | None:
        """Median HV fraction at checkpoint ``c`` over the seeds that have one."""
        got = [v for v in self.hv_at[c] if v is not None] if c < len(self.hv_at) else []
        return float(np.median(got)) if got else None


@dataclass(frozen=True)
class Comparison:
    """Every engine on one problem."""

    dataset: str  # the space spec
    objectives: tuple[str, ...]
    budget: int
    population: int
    seeds: int
    true_front_size: int
    stats: tuple[EngineStats, ...]
    reference: str = "true front"  # how the reference front was made

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
            "reference": self.reference,
            "engines": {},
        }
        for s in self.stats:
            e = {
                "seconds": round(s.seconds, 2),
                "cpu_seconds": round(s.cpu_seconds, 2),
                "final_hv_fraction": [round(v, 4) for v in s.final_hv],
            }
            for t, target in enumerate(s.targets):
                med, q25, q75, n = s.median_iqr(t, self.budget)
                lo, hi = s.range_of(t)
                e[f"hv{target}"] = {
                    "median": med,
                    "q25": q25,
                    "q75": q75,
                    "min": lo,
                    "max": hi,
                    "reached": n,
                    "per_seed": list(s.reached[t]),
                }
            for c, at in enumerate(s.checkpoints):
                e[f"hv_at_{at}"] = {"median": s.hv_median(c), "per_seed": list(s.hv_at[c])}
            if s.iteration_cpu:
                e["iteration_cpu"] = {
                    "median": float(np.median(s.iteration_cpu)),
                    "max": float(np.max(s.iteration_cpu)),
                    "n": len(s.iteration_cpu),
                }
            out["engines"][s.engine] = e
        return out

    def to_text(self) -> str:
        """A plain table (unreached seeds count as budget + 1, shown as '>budget')."""
        lines = [
            f"{self.dataset}: {' vs '.join(self.objectives)}, budget {self.budget}, population {self.population}, "
            f"{self.seeds} seeds, reference front ({self.reference}) {self.true_front_size} points"
        ]

        def f(v: float | None) -> str:
            return "-" if v is None else (f">{self.budget}" if v > self.budget else f"{v:.0f}")

        for s in self.stats:
            parts = [f"  {s.engine:7s}"]
            for t, target in enumerate(s.targets):
                med, _, _, n = s.median_iqr(t, self.budget)
                lo, hi = s.range_of(t)
                parts.append(f"HV>={target}: median {f(med)} [range {f(lo)}-{f(hi)}] reached {n}/{self.seeds}")
            lines.append("  ".join(parts))
            hv = [
                f"@{at}: {'-' if s.hv_median(c) is None else f'{s.hv_median(c):.4f}'}"
                for c, at in enumerate(s.checkpoints)
            ]
            extra = f"final HV {np.median(s.final_hv):.4f}  {s.seconds:.1f}s wall {s.cpu_seconds:.1f}s CPU"
            if s.iteration_cpu:
                extra += (
                    f"  CPU/iteration median {np.median(s.iteration_cpu):.2f}s max {np.max(s.iteration_cpu):.2f}s"
                )
            lines.append(f"  {'':7s}  HV {', '.join(hv)}  {extra}")
        return "\n".join(lines)


class _TimedLinas(LinasEngine):
    """LINAS that records the CPU seconds of every iteration."""

    def __init__(self, settings: LinasSettings):
        super().__init__(settings)
        self.cpu: list[float] = []

    def propose(self, *args: Any, **kwargs: Any):
        c0 = time.process_time()
        out = super().propose(*args, **kwargs)
        if out.report is not None:
            self.cpu.append(time.process_time() - c0)
        return out


def _problem_of(space: str | Problem) -> Problem:
    if isinstance(space, str) and ":" not in space and space not in SPACES:
        if space in DATASETS:  # the old compare("cora") form
            space = f"nasbench-graph:{space}"
    return load_problem(space)


def compare(
    space: str | Problem = "nasbench-graph:cora",
    engines: Sequence[str] = ("linas", "nsga2", "random"),
    budget: int = 1000,
    seeds: int = 10,
    population: int = 50,
    objectives: Sequence[str] = ("accuracy", "latency"),
    targets: Sequence[float] = (0.98, 0.995),
    inner_evaluations: int | None = None,
    stop_early: bool = True,
    settings: Mapping[str, Any] | None = None,
    checkpoints: Sequence[int] = CHECKPOINTS,
    first_seed: int = 0,
) -> Comparison:
    """Run every engine for every seed on a benchmark problem.

    Args:
        space: a space spec (see the module docstring) or a :class:`Problem`; a bare
            NAS-Bench-Graph data set name (``"cora"``) still works.
        inner_evaluations: LINAS predictor evaluations per iteration (None: the default).
        stop_early: stop a run once it reaches the highest target (the later trace is not needed;
            HV at later checkpoints is then reported as missing).
        settings: extra :class:`LinasSettings` fields for the LINAS runs.
        checkpoints: evaluation counts at which the HV fraction is reported.
        first_seed: seeds run are ``first_seed .. first_seed + seeds - 1``.

    Raises:
        SearchError: unknown space/engine/objective/setting, budget below the population.
    """
    problem = _problem_of(space)
    bench = problem.space
    obj = Objectives.create(objectives, problem.metrics, known=list(problem.metrics))
    for name in engines:
        make_engine(name)  # validates the name before any run
    lin_settings = dict(settings or {})
    if inner_evaluations is not None:
        lin_settings["inner_evaluations"] = inner_evaluations
    try:
        LinasSettings(**lin_settings)
    except TypeError as exc:
        raise SearchError(f"unknown LINAS setting: {exc}") from exc
    front = problem.reference(obj.names) if problem.reference is not None else None
    stop_early = stop_early and front is not None
    runs: dict[str, list] = {}
    timing: dict[str, tuple[float, float, list[float]]] = {}
    for name in engines:
        t0, c0 = time.perf_counter(), time.process_time()
        out, cpu = [], []
        for seed in range(first_seed, first_seed + seeds):
            hv = HypervolumeTracker.from_front(front) if front is not None else None
            true_hv = hv.compute(front) if hv is not None else None
            engine = _TimedLinas(LinasSettings(**lin_settings)) if name == "linas" else make_engine(name)
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
            out.append(res)
            cpu += getattr(engine, "cpu", [])
        runs[name] = out
        timing[name] = (time.perf_counter() - t0, time.process_time() - c0, cpu)
    how = "given"
    if front is None:
        pts = [_points(obj, r) for rs in runs.values() for r in rs]
        front = non_dominated(np.vstack([p for p in pts if len(p)]))
        how = "union of every run"
    elif problem.name.startswith("nasbench-graph"):
        how = "true front of the table"
    else:
        how = "union of long runs"
    tracker = HypervolumeTracker.from_front(front)
    true_hv = tracker.compute(front)
    stats = []
    for name in engines:
        reached: list[list[int | None]] = [[] for _ in targets]
        at: list[list[float | None]] = [[] for _ in checkpoints]
        final = []
        for res in runs[name]:
            trace = np.asarray(res.hv_trace) if res.hv_trace else _trace(tracker, obj, res)
            frac = trace / true_hv
            for t, target in enumerate(targets):
                hit = np.flatnonzero(frac >= target - 1e-12)
                reached[t].append(int(hit[0]) + 1 if len(hit) else None)
            for c, n in enumerate(checkpoints):
                at[c].append(float(frac[n - 1]) if n <= len(frac) else None)
            final.append(float(frac[-1]) if len(frac) else 0.0)
        wall, cpu_total, it_cpu = timing[name]
        stats.append(
            EngineStats(
                engine=name,
                targets=tuple(targets),
                reached=tuple(tuple(r) for r in reached),
                final_hv=tuple(final),
                seconds=wall,
                checkpoints=tuple(checkpoints),
                hv_at=tuple(tuple(a) for a in at),
                iteration_cpu=tuple(it_cpu),
                cpu_seconds=cpu_total,
            )
        )
    return Comparison(
        dataset=problem.name,
        objectives=obj.names,
        budget=budget,
        population=population,
        seeds=seeds,
        true_front_size=len(front),
        stats=tuple(stats),
        reference=how,
    )


def _points(obj: Objectives, res) -> np.ndarray:
    rows = [p for p in (_point(obj, o) for o in res.observations) if p is not None]
    return np.array(rows).reshape(-1, len(obj.names))


def _point(obj: Objectives, o: Observation) -> np.ndarray | None:
    return _engine_point(obj, o)


def _trace(tracker: HypervolumeTracker, obj: Objectives, res) -> np.ndarray:
    hv = HypervolumeTracker(tracker.ref_point, tracker.ideal, tracker.nadir)
    for o in res.observations:
        hv.update(_point(obj, o))
    return np.asarray(hv.trace)


def time_inner_search(
    space: str | Problem = "nasbench-graph:cora",
    evaluations: int = 20_000,
    n_train: int = 200,
    seed: int = 0,
    settings: Mapping[str, Any] | None = None,
) -> tuple[float, float]:
    """(wall, CPU) seconds of one LINAS inner search of ``evaluations`` predictor evaluations.

    Predictors are fitted first and a warm-up search runs untimed. CPU time is reported too
    because on a shared machine wall time mostly measures the neighbours.
    """
    problem = _problem_of(space)
    bench = problem.space
    names = tuple(problem.metrics)[:2]
    obj = Objectives.create(names, problem.metrics, known=list(problem.metrics))
    rng = np.random.default_rng(seed)
    X = RandomEngine().propose(bench, obj, (), n_train, rng).genes
    configs = [bench.decode(g) for g in X]
    hist = [
        Observation(bench.key(c), g, tuple(sorted(r.items())), 0)
        for g, c, r in zip(X, configs, bench.evaluate(configs))
    ]
    eng = LinasEngine(LinasSettings(**{**dict(settings or {}), "inner_evaluations": evaluations}))
    models, _ = eng.fit_predictors(bench, obj, hist, 0, seed)
    Xm, V, _ = measured_arrays(bench, obj, hist)
    eng._inner_search(bench, obj, models, Xm, V, rng, seed, None)  # warm-up: imports, first calls
    t0, c0 = time.perf_counter(), time.process_time()
    eng._inner_search(bench, obj, models, Xm, V, rng, seed, None)
    return time.perf_counter() - t0, time.process_time() - c0


def time_iteration(
    space: str | Problem = "mbv3:0", n_measured: int = 1000, n: int = 50, seed: int = 0,
    settings: Mapping[str, Any] | None = None,
) -> tuple[float, float]:
    """(wall, CPU) seconds of one whole LINAS iteration (fit, inner search, picks) at ``n_measured``."""
    problem = _problem_of(space)
    bench = problem.space
    names = tuple(problem.metrics)[:2]
    obj = Objectives.create(names, problem.metrics, known=list(problem.metrics))
    rng = np.random.default_rng(seed)
    hist: list[Observation] = []
    for b in range(-(-n_measured // n)):
        X = RandomEngine().propose(bench, obj, hist, min(n, n_measured - len(hist)), rng).genes
        configs = [bench.decode(g) for g in X]
        hist += [
            Observation(bench.key(c), g, tuple(sorted(r.items())), b)
            for g, c, r in zip(X, configs, bench.evaluate(configs))
        ]
    eng = LinasEngine(LinasSettings(**dict(settings or {})))
    # untimed warm-up on a small history: imports (scikit-learn, pymoo) and the space's tables
    # load once per process, not per iteration
    eng.propose(bench, obj, hist[: 2 * n], n, np.random.default_rng(seed + 1), iteration=2)
    t0, c0 = time.perf_counter(), time.process_time()
    eng.propose(bench, obj, hist, n, rng, iteration=len(hist) // n)
    return time.perf_counter() - t0, time.process_time() - c0


def parse_space(text: str) -> str:
    """The space spec of ``--space`` after a check that it loads (kept for callers of the old API).

    Raises:
        SearchError: unknown name, or a module path that does not load.
    """
    return load_problem(text).name
