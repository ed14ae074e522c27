"""The ``bench-search`` command: LINAS vs NSGA-II vs random on NAS-Bench-Graph.

Owns the argument parsing and output of ``python -m nas_core bench-search``; the work is
:func:`nas_core.linas.bench.compare`. Every argument is checked before any run starts.
"""

from __future__ import annotations

import argparse

from nas_core.cli import CliError, emit
from nas_core.linas.bench import compare, parse_space
from nas_core.linas.engines import ENGINES
from nas_core.linas.tabular import METRICS


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``bench-search`` to the CLI."""
    p = subparsers.add_parser(
        "bench-search",
        help="compare search engines on NAS-Bench-Graph (evaluations to reach the true front's hypervolume)",
        description="Run LINAS, NSGA-II and random search on a NAS-Bench-Graph data set for several seeds and "
        "report how many evaluations each needs to reach 0.98 and 0.995 of the true front's hypervolume.",
    )
    p.add_argument(
        "--space", default="nasbench-graph:cora", help="nasbench-graph:DATASET (cora, citeseer, pubmed, ...)"
    )
    p.add_argument("--engines", default="linas,nsga2,random", help="comma-separated: linas, nsga2, random")
    p.add_argument("--objectives", default="accuracy,latency", help=f"two or more of: {', '.join(METRICS)}")
    p.add_argument("--budget", type=int, default=1000, help="evaluations per run")
    p.add_argument("--seeds", type=int, default=10, help="runs per engine (seeds 0..K-1)")
    p.add_argument(
        "--population", type=int, default=50, help="evaluations per batch, the random first one included"
    )
    p.add_argument(
        "--inner-evaluations", type=int, default=20_000, help="LINAS predictor evaluations per iteration"
    )
    p.add_argument(
        "--full-trace", action="store_true", help="run the whole budget instead of stopping at 0.995"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    dataset = parse_space(args.space)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    bad = [e for e in engines if e not in ENGINES]
    if bad or not engines:
        raise CliError(f"unknown engine(s) {bad}; choose from: {', '.join(ENGINES)}")
    for name in ("budget", "seeds", "population", "inner_evaluations"):
        if getattr(args, name) < 1:
            raise CliError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    result = compare(
        dataset,
        engines,
        budget=args.budget,
        seeds=args.seeds,
        population=args.population,
        objectives=objectives,
        inner_evaluations=args.inner_evaluations,
        stop_early=not args.full_trace,
    )
    lines = [result.to_text()]
    for other in ("nsga2", "random"):
        if "linas" in engines and other in engines:
            r = [result.ratio("linas", other, t) for t in range(2)]
            lines.append(f"  ratio linas/{other}: " + ", ".join(f"{x:.2f}x" for x in r if x is not None))
    emit(args, result.to_dict(), "\n".join(lines))
    return 0
