"""Search-efficiency benchmark: LINAS vs NSGA-II vs random on NAS-Bench-Graph (issue 6).

For every data set (cora, citeseer, pubmed), objectives accuracy vs latency, and every seed,
each engine runs until its measured front reaches 0.995 of the hypervolume of the true front
(known from the full table) or its budget is spent. Printed: evaluations needed to reach 0.98 and
0.995 (median and IQR; a seed that never reaches counts as budget + 1, shown as '>budget'), the
ratios LINAS/NSGA-II and LINAS/random (targets <= 0.5x and <= 0.2x), and the time of 20,000
predictor evaluations of LINAS's inner search (target <= 5 s).

Random and NSGA-II cost nothing but table look-ups, so they get a larger budget than LINAS,
whose every iteration fits predictors and runs a pymoo search; a ratio against a baseline that
did not reach the target within its budget is an upper bound (marked '<=').

Usage: ``python -m benchmarks.bench_search [--quick] [--seeds K] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from nas_core.linas.bench import compare, time_inner_search

DATASETS = ("cora", "citeseer", "pubmed")
TARGETS = (0.98, 0.995)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table; returns 0."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 seeds, 5,000 inner evaluations, smaller budgets")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per engine (default 10; quick 3)")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--budget", type=int, default=None, help="LINAS budget (default 1000; quick 600)")
    ap.add_argument("--baseline-budget", type=int, default=None, help="NSGA-II/random budget (default 5000)")
    ap.add_argument("--inner-evaluations", type=int, default=None, help="default 20,000; quick 5,000")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    seeds = args.seeds or (3 if args.quick else 10)
    budget = args.budget or (600 if args.quick else 1000)
    base_budget = args.baseline_budget or 5000
    inner = args.inner_evaluations or (5000 if args.quick else 20_000)
    out: dict = {
        "seeds": seeds,
        "linas_budget": budget,
        "baseline_budget": base_budget,
        "inner_evaluations": inner,
    }

    wall, cpu = time_inner_search("cora", 20_000)
    print(
        f"inner search, 20,000 predictor evaluations (NSGA-II, pop 50): {wall:.2f} s wall, {cpu:.2f} s CPU "
        "(target <= 5 s)"
    )
    out["inner_20k_seconds"] = {"wall": wall, "cpu": cpu}
    out["datasets"] = {}
    ratios: dict[str, list] = {"nsga2": [], "random": []}
    for ds in args.datasets.split(","):
        t0 = time.perf_counter()
        lin = compare(ds, ("linas",), budget=budget, seeds=seeds, targets=TARGETS, inner_evaluations=inner)
        base = compare(ds, ("nsga2", "random"), budget=base_budget, seeds=seeds, targets=TARGETS)
        print(lin.to_text())
        print("\n".join(base.to_text().splitlines()[1:]))
        entry = {"linas": lin.to_dict(), "baselines": base.to_dict(), "ratios": {}}
        ls = lin.get("linas")
        for name in ("nsga2", "random"):
            bs = base.get(name)
            parts = []
            for i, target in enumerate(TARGETS):
                lm, _, _, lr = ls.median_iqr(i, budget)
                bm, _, _, br = bs.median_iqr(i, base_budget)
                # unreached seeds count as budget + 1: a median past the budget is a bound
                if lm > budget and bm > base_budget:
                    entry["ratios"][f"linas/{name}@{target}"] = {"ratio": None, "bound": "neither reached"}
                    parts.append(f"HV>={target}: n/a (neither median reached)")
                    continue
                prefix = ">=" if lm > budget else ("<=" if bm > base_budget else "")
                r = lm / bm
                entry["ratios"][f"linas/{name}@{target}"] = {"ratio": r, "bound": prefix}
                parts.append(f"HV>={target}: {prefix}{r:.2f}x")
                ratios[name].append((ds, target, prefix, r))
            print(f"  ratio linas/{name}: " + ", ".join(parts))
        print(f"  ({time.perf_counter() - t0:.0f} s)")
        sys.stdout.flush()
        out["datasets"][ds] = entry
    print("targets: linas/nsga2 <= 0.5x, linas/random <= 0.2x, inner 20k <= 5 s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
