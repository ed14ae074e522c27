"""The ``bench-search`` command: LINAS vs NSGA-II vs random on any plug-in benchmark space.

Owns the argument parsing and output of ``python -m nas_core bench-search``; the work is
:func:`nas_core.linas.bench.compare`. Every argument is checked before any run starts.
"""

from __future__ import annotations

import argparse

from nas_core.cli import CliError, emit
from nas_core.linas.bench import compare, load_problem
from nas_core.linas.engines import ENGINES


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``bench-search`` to the CLI."""
    p = subparsers.add_parser(
        "bench-search",
        help="compare search engines on a benchmark space (evaluations to reach the reference front's hypervolume)",
        description="Run LINAS, NSGA-II and random search on a benchmark space for several seeds and "
        "report how many evaluations each needs to reach fractions of the reference front's hypervolume.",
    )
    p.add_argument(
        "--space",
        default="nasbench-graph:cora",
        help="nasbench-graph:DATASET (cora, citeseer, pubmed, ...), mbv3[:SEED] (MobileNetV3-style space, "
        "surrogate seed), or package.module:CLASS[:ARG] (your own SearchSpace with evaluate())",
    )
    p.add_argument("--engines", default="linas,nsga2,random", help="comma-separated: linas, nsga2, random")
    p.add_argument("--objectives", default="accuracy,latency", help="two or more of the space's metrics")
    p.add_argument(
        "--targets", default="0.98,0.995", help="comma-separated fractions of the reference hypervolume"
    )
    p.add_argument("--budget", type=int, default=1000, help="evaluations per run")
    p.add_argument("--seeds", type=int, default=10, help="runs per engine (seeds 0..K-1)")
    p.add_argument(
        "--population", type=int, default=50, help="evaluations per batch, the random first one included"
    )
    p.add_argument(
        "--inner-evaluations", type=int, default=None, help="LINAS predictor evaluations per iteration (default 20,000)"
    )
    p.add_argument(
        "--full-trace", action="store_true", help="run the whole budget instead of stopping at the highest target"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    problem = load_problem(args.space)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    bad = [e for e in engines if e not in ENGINES]
    if bad or not engines:
        raise CliError(f"unknown engine(s) {bad}; choose from: {', '.join(ENGINES)}")
    for name in ("budget", "seeds", "population", "inner_evaluations"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise CliError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    try:
        targets = [float(t) for t in args.targets.split(",") if t.strip()]
    except ValueError:
        raise CliError(f"--targets must be numbers between 0 and 1, got {args.targets!r}") from None
    if not targets or not all(0 < t <= 1.5 for t in targets):
        raise CliError(f"--targets must be fractions such as 0.9,0.95, got {args.targets!r}")
    result = compare(
        problem,
        engines,
        budget=args.budget,
        seeds=args.seeds,
        population=args.population,
        objectives=objectives,
        targets=targets,
        inner_evaluations=args.inner_evaluations,
        stop_early=not args.full_trace,
    )
    lines = [result.to_text()]
    for other in ("nsga2", "random"):
        if "linas" in engines and other in engines:
            r = [result.ratio("linas", other, t) for t in range(len(targets))]
            lines.append(f"  ratio linas/{other}: " + ", ".join(f"{x:.2f}x" for x in r if x is not None))
    emit(args, result.to_dict(), "\n".join(lines))
    return 0
