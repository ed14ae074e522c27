"""Search-efficiency benchmark: LINAS vs NSGA-II vs random on NAS-Bench-Graph and a large space (issues 6, 12).

Spaces: NAS-Bench-Graph cora, citeseer, pubmed (26,206 architectures, true front known from
the table) and the MobileNetV3-style space ``mbv3:SEED`` (46 genes, about 1.5e20 networks;
:mod:`nas_core.linas.mbv3_space`) for several surrogate seeds, whose reference front is the
non-dominated union of long NSGA-II runs on the surrogate (cached on disk). Objectives:
accuracy vs latency. For every space and seed each engine runs until its measured front
reaches 0.995 of the reference hypervolume or its budget is spent.

Printed per space: evaluations to 0.90 / 0.95 / 0.98 / 0.995 of the reference HV (median, range
over the seeds that reached it, seeds reached; a seed that never reaches counts as budget + 1,
shown as '>budget'), the HV fraction after 250 / 500 / 1,000 / 2,000 evaluations ('-' where a run
stopped early at 0.995, so it is at least that), the ratios LINAS/NSGA-II and LINAS/random, and
the CPU seconds of a LINAS iteration. Once: CPU seconds of 20,000 inner predictor evaluations
on the 46-gene space and of one LINAS iteration at 1,000 measured.

Random and NSGA-II cost nothing but look-ups, so they get a larger budget; a ratio against a
baseline whose median did not reach the target within its budget is a bound (marked '<=').

Usage: ``python -m benchmarks.bench_search [--quick] [--seeds K] [--spaces ...] [--json OUT]``.

Measured (issue 12 defaults, 2-core machine shared by 8 jobs; CPU seconds):
- inner search, 20,000 predictor evaluations on mbv3: 0.75 s CPU (cora 1.68 s); one LINAS
  iteration at 1,000 measured: 3.4 s CPU on mbv3, 5.7 s on cora.
- NAS-Bench-Graph, 10 seeds, LINAS budget 1,000: evaluations to 0.98 / 0.995 (median) and
  LINAS/NSGA-II at 0.98: cora 114 / 633 (10/10), 0.31x; citeseer 220 / 652 (9/10), 0.35x;
  pubmed 0.98 not reached in 1,000 (0/10; NSGA-II 3/10 in 5,000), 0.43x at 0.95.
- mbv3:0 (NSGA-II 10 seeds: 844 to 0.90, 2,416 to 0.95), LINAS 3 seeds, budget 1,000:
  259 to 0.90 (0.31x), 661 to 0.95 (0.27x, 3/3). mbv3:1, 3 seeds: 405 to 0.90 (0.44x NSGA-II's
  920), 0.95 in 1/3 within 1,000. The 10-seed mbv3 LINAS runs did not fit the CPU budget.

Later (iteration CPU work; machine at load 6-12 on 2 cores, so CPU seconds are inflated and
vary by +-40% between runs; A/B pairs were run back to back):
- iteration at 1,000 measured, old -> new code in the same minute: cora 13.2 -> 4.6 s CPU,
  mbv3 6.8 -> 4.5 s (at load 12: cora 15.2 (with imports) -> 6.6 s, mbv3 10.4 -> 4.3 s).
  Final code at load 9-11: cora 5.6 s, mbv3 5.7 s per iteration; 20,000 inner evaluations
  2.3 s cora, 2.5 s mbv3 (0.75 s on a quiet machine before this round): over the targets
  while the machine is this busy. The inner search predicts each distinct row once (cora: 2,519 distinct of 20,000), the
  predictors predict by numpy, crowding is vectorized, SVR gets a precomputed kernel.
- ``--spaces mbv3:2 --seeds 3 --budget 1000``: LINAS 154 to 0.90 vs NSGA-II 752 (0.20x),
  747 to 0.95 vs 1,797 (0.42x; LINAS 3/3 within 1,000); CPU/iteration median 3.27 s, max 5.57 s.
- selection variants, LINAS only, seeds 0-2, budget 1,000 (to 0.90 per seed; 0.95 reached;
  final HV): mbv3:1 default 405/365/440, 1/3, 0.949/0.966/0.948; ``extreme_picks=3``
  472/169/682, 2/3, 0.961/0.980/0.923; ``disagreement_share=0.2`` 435/174/707, 2/3,
  0.969/0.972/0.928: neither is a clear win on 3 seeds, defaults kept.
  ``exhaustive_limit=100000`` (score all 26k NAS-Bench-Graph configs): pubmed to 0.90
  99/74/216 vs default 100/253/205, both stall at 0.9643 of the HV; cora (seeds 0-1) to 0.98
  152/316 vs default 106/106: worse on cora, so off by default.
- target transform, 10 seeds, budget 1,000, ``--skip-timing`` (evaluations to 0.90 on mbv3, to 0.98
  on NAS-Bench-Graph; LINAS/NSGA-II): ``rank`` (the former default) mbv3:0 259 (0.31x), mbv3:1 394
  (0.47x), mbv3:2 199 (0.21x), cora 114 (0.31x), citeseer 220 (0.35x); ``none`` mbv3:1 264 (0.32x),
  cora 234 (0.63x), citeseer 274 (0.43x); ``auto`` (the default: rank only when the measured
  accuracies have |skewness| > 1) mbv3:0 215 (0.25x), mbv3:1 264 (0.32x), mbv3:2 168 (0.18x),
  cora 114 (0.31x), citeseer 220 (0.35x), pubmed unchanged (0.98 not reached, 0.43x at 0.95).
- Re-measured 2026-12-07 (two niced benchmarks on both cores, load 3-5): 20,000 inner evaluations
  0.56-0.60 s CPU on mbv3:0 and cora; an iteration at 1,000 measured 3.15 / 3.24 s CPU on mbv3:0,
  2.99 / 2.94 s on cora (``time_inner_search`` / ``time_iteration``): both targets met at this load.
- Why pubmed stalls: every seed ends at 0.9643 of the HV because the three most accurate points of the
  true front (0.786, 0.783 and 0.781 accuracy, of 26,206 networks whose top 0.1% span 0.778-0.786) are
  never measured; together they are 3.6% of the HV (the 0.781 one, the fastest of them, 1.5%).
  Tried: a local search beside the predictor (5 picks per batch from the unmeasured one-gene
  neighbours of the measured front, ranked by the same HV rule), pubmed, 10 seeds, LINAS only,
  against the default in the same run: 0.90 at 194 vs 223, 0.95 at 688 vs 716 (7/10 vs 8/10),
  final HV 0.9643 in both: the stall is unchanged, so it was not kept. The predictor cannot see
  them: after 1,000 measured (seed 0) the chosen predictor (stacked) ranks them 1,960th, 1,737th
  and 10,944th of 26,206 by predicted accuracy; Kendall tau of predicted vs true accuracy is 0.42
  over all networks and 0.07 within the true top 300 (latency 0.71).
- 2026-12-07, more variants, LINAS only, 10 seeds, budget 1,000 (``--linas-settings``), evaluations to
  0.98 (median; LINAS/NSGA-II) on citeseer and cora against the default's 220 (0.35x) and 114 (0.31x):
  ``disagreement_share=0.1`` citeseer 260 (0.41x); ``mutation=null`` (1 / n_var) 253 (0.40x) and 147
  (0.40x); ``exhaustive_limit=100000`` (every config scored) 342 (0.54x) and 234 (0.63x; 0.995 sooner on
  cora, 350 vs 633, but never on citeseer); ``extreme_picks=2`` 210 (0.33x) and 139 (0.37x); inner
  ``population=100`` 215 (0.34x) and 142 (0.38x). None is better on both, so the defaults stay.
- 2026-12-07, LINAS measuring 25 per iteration instead of 50 (``--population 25``; the paper's Table 5
  uses 10 on its smallest space and finds smaller populations work on smaller spaces; NSGA-II kept at 50),
  10 seeds, budget 1,000: cora 106 to 0.98 (**0.28x**, against 114 / 0.31x at 50) but 768 to 0.995 in
  8/10 (633 in 10/10 at 50); citeseer 221 to 0.98 (0.35x, unchanged) and 564 to 0.995 in 10/10 (652 in
  9/10). Not a win on both, so LINAS keeps 50. What stalls citeseer between 0.95 and 0.98 (``--budget
  200``, seeds 0-5): as on pubmed, the most accurate end of the true front (0.708-0.716 accuracy) is
  missing in every seed, plus some of the middle (0.693-0.707) in four of six. Tried against that, the
  same day: one pick per objective per iteration drawn at random from the unmeasured one-gene neighbours
  of the three measured configs best in it (not ranked by the predictors), 10 seeds: citeseer 250 to
  0.98 (220 without), 0.995 in 8/10; pubmed 0.95 in 5/10 (8/10 without), final HV 0.956: worse, dropped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from nas_core.linas.bench import compare, time_inner_search, time_iteration

SPACES = ("nasbench-graph:cora", "nasbench-graph:citeseer", "nasbench-graph:pubmed", "mbv3:0", "mbv3:1", "mbv3:2")
TARGETS = (0.9, 0.95, 0.98, 0.995)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table; returns 0."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 seeds, 5,000 inner evaluations")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per engine (default 10; quick 3)")
    ap.add_argument("--spaces", default=",".join(SPACES), help="comma-separated space specs")
    ap.add_argument("--budget", type=int, default=None, help="LINAS budget (default 1000 NAS-Bench-Graph, 2000 mbv3)")
    ap.add_argument("--baseline-budget", type=int, default=None, help="NSGA-II/random budget (default 5000)")
    ap.add_argument("--inner-evaluations", type=int, default=None, help="default 20,000; quick 5,000")
    ap.add_argument("--population", type=int, default=None,
                    help="LINAS evaluations per iteration, the first random batch included (default 50)")
    ap.add_argument("--baseline-population", type=int, default=None,
                    help="NSGA-II's population and random search's batch (default 50)")
    ap.add_argument("--skip-timing", action="store_true", help="leave out the inner-search/iteration timing")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("--objectives", default="accuracy,latency", help="two objectives of the spaces")
    ap.add_argument(
        "--linas-settings", default="{}", help='extra LinasSettings fields as JSON, e.g. \'{"extreme_picks": 3}\''
    )
    args = ap.parse_args(argv)
    settings = json.loads(args.linas_settings)
    if not isinstance(settings, dict):
        ap.error("--linas-settings must be a JSON object")
    objectives = tuple(args.objectives.split(","))
    seeds = args.seeds or (3 if args.quick else 10)
    base_budget = args.baseline_budget or 5000
    population = args.population or 50
    base_population = args.baseline_population or 50
    inner = args.inner_evaluations or (5000 if args.quick else 20_000)
    out: dict = {
        "seeds": seeds,
        "baseline_budget": base_budget,
        "inner_evaluations": inner,
        "population": population,
        "baseline_population": base_population,
        "linas_settings": settings,
        "spaces": {},
    }

    if not args.skip_timing:
        wall, cpu = time_inner_search("mbv3:0", 20_000)
        print(f"inner search, 20,000 predictor evaluations on mbv3 (46 genes): {wall:.2f} s wall, {cpu:.2f} s CPU "
              "(target <= 2 s CPU)")
        out["inner_20k_seconds"] = {"wall": wall, "cpu": cpu}
        out["iteration_1000_seconds"] = {}
        for sp in ("mbv3:0", "nasbench-graph:cora"):
            iw, ic = time_iteration(sp, 1000, settings=settings)
            print(f"one LINAS iteration at 1,000 measured on {sp}: {iw:.2f} s wall, {ic:.2f} s CPU (target <= 5 s CPU)")
            out["iteration_1000_seconds"][sp] = {"wall": iw, "cpu": ic}
        sys.stdout.flush()
    for space in args.spaces.split(","):
        budget = args.budget or (2000 if space.startswith("mbv3") else 1000)
        t0, c0 = time.perf_counter(), time.process_time()
        lin = compare(
            space, ("linas",), budget=budget, seeds=seeds, targets=TARGETS, inner_evaluations=inner, settings=settings,
            objectives=objectives, population=population,
        )
        base = compare(
            space, ("nsga2", "random"), budget=base_budget, seeds=seeds, targets=TARGETS, objectives=objectives,
            population=base_population,
        )
        print(lin.to_text())
        print("\n".join(base.to_text().splitlines()[1:]))
        print(f"  (NSGA-II and random: budget {base_budget}, population {base_population})")
        entry = {"linas": lin.to_dict(), "baselines": base.to_dict(), "ratios": {}}
        ls = lin.get("linas")
        for name in ("nsga2", "random"):
            bs = base.get(name)
            parts = []
            for i, target in enumerate(TARGETS):
                lm, _, _, _ = ls.median_iqr(i, budget)
                bm, _, _, _ = bs.median_iqr(i, base_budget)
                # unreached seeds count as budget + 1: a median past the budget is a bound
                if lm > budget and bm > base_budget:
                    entry["ratios"][f"linas/{name}@{target}"] = {"ratio": None, "bound": "neither reached"}
                    parts.append(f"{target}: n/a")
                    continue
                prefix = ">=" if lm > budget else ("<=" if bm > base_budget else "")
                r = lm / bm
                entry["ratios"][f"linas/{name}@{target}"] = {"ratio": r, "bound": prefix}
                parts.append(f"{target}: {prefix}{r:.2f}x")
            print(f"  ratio linas/{name} (evaluations to HV fraction): " + ", ".join(parts))
        print(f"  ({time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU)")
        sys.stdout.flush()
        out["spaces"][space] = entry
    print(
        "targets: mbv3 linas/nsga2 <= 0.35x at 0.90 and 0.95 reached in >= 9/10 seeds within 2,000; "
        "NAS-Bench-Graph linas/nsga2 <= 0.3x at 0.98 and 0.995 reached in >= 8/10 within 1,000"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
