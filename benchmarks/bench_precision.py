"""bf16 autocast vs fp32 training on the fidelity benchmark's specs (issue 11: "bf16 autocast where the
CPU is faster with it, kept only where the benchmark shows the same or better final accuracy").

Each spec of :func:`benchmarks.bench_fidelity.benchmark_specs` (every ``--every``-th) is trained from
scratch at the fidelity benchmark's settings (quick form by default: 3,000 images, 32 px, 5 epochs)
with two init seeds, once in fp32 (the fidelity benchmark's cached truth) and once with
``TrainSettings.precision="bf16"``, interleaved spec by spec. Printed: mean test accuracy and
Unfairness of each, the paired difference (bf16 - fp32) beside the seed-to-seed difference of fp32
itself (the noise it has to be read against), Kendall tau of the bf16 results against the fp32
seed-averaged truth beside the fp32 noise ceiling, and the CPU seconds per candidate of each with
their ratio (fp32 timings of cached results come from when they were trained).

Run: ``python -m benchmarks.bench_precision [--full] [--every 2] [--threads 1]``.

Measured 2026-12-03 (``--every 2``: 12 specs, quick form, one thread, AMD EPYC with AVX512-BF16, the
other core busy with a benchmark; 1,118 s wall): mean test accuracy fp32 66.68%, bf16 66.85%; bf16 -
fp32 on the same spec and seed +0.17 points, SD 0.90 (24 pairs), against fp32 seed 1 - seed 0 SD 4.12;
bf16's tau against the fp32 truth 0.94 (accuracy) / 0.91 (Unfairness), the fp32 ceiling 0.85 / 0.67.
CPU time per candidate, bf16 / fp32: plain and residual networks 0.56-0.99x (the default-like plain
CNN 0.56-0.78x, six-block plain 0.69x, residual 0.62-0.81x), depthwise ones 2.3-4.3x (mbconv 2.3-3.1x,
dwsep 2.5-4.3x); median over all 1.07x. Hence ``precision="auto"`` skips networks with grouped
convolutions, and the default stays fp32 (results then compare across machines).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time

from benchmarks.bench_fidelity import (
    INIT_SEEDS,
    QUICK,
    SPLIT_SEED,
    _dataset,
    benchmark_specs,
    cached_train,
    rank_agreement,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--full", action="store_true", help="the default data set and settings (64 px, 10 epochs)")
    p.add_argument("--quick", action="store_true", help="the quick form (the default; for make bench --quick)")
    p.add_argument("--every", type=int, default=1, help="every k-th of the 24 specs (2: 12 specs)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch

    from nas_core.data.prepare import prepare
    from nas_core.evaluator import bf16_is_native
    from nas_core.settings import TrainSettings

    torch.set_num_threads(args.threads)
    native = bf16_is_native(torch.device("cpu"))
    base = TrainSettings()
    if not args.full:
        base = dataclasses.replace(base, image_size=QUICK["image_size"], max_epochs=QUICK["max_epochs"],
                                   patience=QUICK["patience"])
    data = _dataset(argparse.Namespace(dataset=None, quick=not args.full))
    prepared = prepare(data, image_size=base.image_size, seed=SPLIT_SEED)
    specs = benchmark_specs()[:: max(1, args.every)]
    sys.stdout.write(f"data set {data}, {len(specs)} specs, {base.image_size} px, <= {base.max_epochs} epochs, "
                     f"{args.threads} thread(s); native bf16 on this CPU: {native}\n")
    res: dict[tuple[str, int], list] = {}
    cpu: dict[str, list[float]] = {"fp32": [], "bf16": []}
    t0 = time.perf_counter()
    for i, sp in enumerate(specs):
        for seed in INIT_SEEDS:
            for prec in ("fp32", "bf16"):
                st = dataclasses.replace(base, seed=seed, precision=prec)
                r, _cached = cached_train(sp, prepared, st)
                res.setdefault((prec, seed), []).append(r)
                cpu[prec].append(r.cpu_s)
                sys.stdout.write(f"  spec {i:2d} seed {seed} {prec}: acc {r.test_acc:.3f} unf "
                                 f"{r.unfairness if r.unfairness is not None else float('nan'):.4f} "
                                 f"epochs {r.epochs} cpu {r.cpu_s:.1f}s\n")
                sys.stdout.flush()

    def accs(prec: str, seed: int) -> list[float]:
        return [r.test_acc for r in res[prec, seed]]

    def unfs(prec: str, seed: int) -> list[float | None]:
        return [r.unfairness for r in res[prec, seed]]

    a32 = [statistics.mean(accs("fp32", s)) for s in INIT_SEEDS]
    a16 = [statistics.mean(accs("bf16", s)) for s in INIT_SEEDS]
    paired = [b - a for s in INIT_SEEDS for a, b in zip(accs("fp32", s), accs("bf16", s), strict=True)]
    seed_diff = [b - a for a, b in zip(accs("fp32", 0), accs("fp32", 1), strict=True)]
    truth = [(a + b) / 2 for a, b in zip(accs("fp32", 0), accs("fp32", 1), strict=True)]
    truth_u = [None if a is None or b is None else (a + b) / 2 for a, b in zip(unfs("fp32", 0), unfs("fp32", 1),
                                                                              strict=True)]
    ceil_a, _ = rank_agreement(accs("fp32", 0), accs("fp32", 1))
    ceil_u, _ = rank_agreement(unfs("fp32", 0), unfs("fp32", 1))
    bf_avg = [(a + b) / 2 for a, b in zip(accs("bf16", 0), accs("bf16", 1), strict=True)]
    bf_u = [None if a is None or b is None else (a + b) / 2 for a, b in zip(unfs("bf16", 0), unfs("bf16", 1),
                                                                           strict=True)]
    tau_a, _ = rank_agreement(bf_avg, truth)
    tau_u, _ = rank_agreement(bf_u, truth_u)
    tau_a1, _ = rank_agreement(accs("bf16", 0), accs("fp32", 0))
    c32, c16 = statistics.median(cpu["fp32"]), statistics.median(cpu["bf16"])
    sys.stdout.write(
        f"\nmean test accuracy over the specs: fp32 {100 * statistics.mean(a32):.2f}% (seed 0 {100 * a32[0]:.2f}, "
        f"seed 1 {100 * a32[1]:.2f}), bf16 {100 * statistics.mean(a16):.2f}% (seed 0 {100 * a16[0]:.2f}, "
        f"seed 1 {100 * a16[1]:.2f})\n"
        f"bf16 - fp32, same spec and seed: mean {100 * statistics.mean(paired):+.2f} points, SD "
        f"{100 * statistics.pstdev(paired):.2f} ({len(paired)} pairs); fp32 seed 1 - seed 0: mean "
        f"{100 * statistics.mean(seed_diff):+.2f}, SD {100 * statistics.pstdev(seed_diff):.2f}\n"
        f"Kendall tau against the fp32 seed-averaged truth: bf16 seed-averaged accuracy {tau_a:.3f}, Unfairness "
        f"{tau_u:.3f}; fp32 noise ceiling (seed 0 vs 1) accuracy {ceil_a:.3f}, Unfairness {ceil_u:.3f}; "
        f"bf16 seed 0 vs fp32 seed 0 accuracy {tau_a1:.3f}\n"
        f"CPU s per candidate (median): fp32 {c32:.1f}, bf16 {c16:.1f} = {c16 / c32:.2f}x "
        f"({time.perf_counter() - t0:.0f} s wall)\n"
    )
    return 0


if __name__ == "__main__":
    from nas_core.alloc import tune_for_training

    tune_for_training()  # trains like the worker does (nas_core.alloc)
    raise SystemExit(main())
