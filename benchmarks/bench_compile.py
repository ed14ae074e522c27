"""torch.compile vs eager training on the CPU (issue 11: "torch.compile on CPU where it pays back within
one evaluation").

A few of the fidelity benchmark's specs (the default plain CNN and every ``--every``-th of the 24) are
trained from scratch twice on the same split, init seed and thread count: once as they are (eager,
what the evaluator does) and once wrapped in ``torch.compile`` (inductor, its default mode). Both run
in this process; the compiled one goes second, so the eager run cannot profit from warm caches the
compiled one filled. Printed per spec: CPU seconds of the first epoch and of the later ones (median),
the whole training's CPU seconds of each and their ratio, the one-off compile cost (first compiled
epoch minus a steady one) and the epochs it takes to win it back, and both test accuracies (the
compiled run must reach the same accuracy, up to seed noise; it does not reproduce eager bit for bit).

Settings: the default first rung (5 epochs at 32 px) on the default data set's training split, or
``--full``: the run's defaults (10 epochs at 64 px). One evaluation of a candidate is a rung plus, for
the promising ones, full training, each its own process-free call into the worker's evaluator, so a
compile cost counts once per network (a new architecture compiles anew).

Run: ``python -m benchmarks.bench_compile [--full] [--every 8] [--threads 1]``.

Measured 2026-12-03 (torch 2.14.1, one thread; quick form on a machine whose other core ran a
benchmark, full form with two more processes on the 2 cores): a new architecture costs 7.8-10.1 CPU-s to
compile, a steady epoch then takes 0.91-0.94x eager. At the default first rung (5 epochs at 32 px) the
whole training is 1.13-1.36x eager (the default plain CNN 30.5 vs 22.5 CPU-s; a network compiled before in
the process, from inductor's caches, 0.90x); at the run's defaults (10 epochs at 64 px) the default plain CNN
trains in 210.1 vs 219.6 CPU-s = 0.96x, the compile won back after 5.1 epochs. Not adopted: it slows the
first rung, which every candidate pays and which the user waits for, by more than it saves on the
full-fidelity trainings that follow for a few; 4% of a full training is inside the seed noise.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _train(spec, prepared, settings, compiled: bool) -> dict:
    import torch

    from nas_core.evaluator import evaluate_model, train_model
    from nas_core.models.builder import build_model

    torch.manual_seed(settings.seed)
    model = build_model(spec, (3, settings.image_size, settings.image_size), len(prepared.class_names))
    net = torch.compile(model) if compiled else model
    marks: list[float] = []
    c0 = _cpu()
    t0 = time.perf_counter()
    result = train_model(net, prepared, settings, torch.device("cpu"), progress=lambda _p: marks.append(_cpu()))
    wall = time.perf_counter() - t0
    total = _cpu() - c0
    epochs = [b - a for a, b in zip([c0, *marks[:-1]], marks)]
    m = evaluate_model(model, prepared, training=result, device="cpu", n_bootstrap=0, measure_costs=False)
    return {"cpu": total, "wall": wall, "epochs": epochs, "acc": float(m.test_acc)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--full", action="store_true", help="the run's default settings (10 epochs at 64 px)")
    p.add_argument("--quick", action="store_true", help="the default first rung (the default; for make bench)")
    p.add_argument("--every", type=int, default=8, help="every k-th of the fidelity benchmark's 24 specs")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dataset", default=str(ROOT / "data" / "default"))
    args = p.parse_args(argv)
    import torch

    from benchmarks.bench_fidelity import benchmark_specs
    from nas_core.data.prepare import prepare
    from nas_core.settings import TrainSettings
    from nas_core.space import default_spec

    torch.set_num_threads(args.threads)
    base = TrainSettings(seed=0)
    if not args.full:
        base = dataclasses.replace(base, max_epochs=base.max_epochs // 2, image_size=base.image_size // 2,
                                   patience=base.max_epochs)
    else:
        base = dataclasses.replace(base, patience=base.max_epochs)  # every epoch runs: the ratio is per epoch
    data = Path(args.dataset)
    if not (data / "ISIC_2019_Training_GroundTruth.csv").exists():
        from nas_core.data.synthetic import make_default

        make_default(data, seed=0)
    prepared = prepare(data, image_size=base.image_size, seed=0)
    specs = [("default plain CNN", default_spec())]
    # a network already compiled in this process compiles from inductor's caches: only new ones count
    specs += [(f"fidelity spec {i}", s) for i, s in enumerate(benchmark_specs())
              if i % max(1, args.every) == 0 and s.key != default_spec().key]
    sys.stdout.write(f"torch {torch.__version__}, {len(specs)} specs, {base.max_epochs} epochs at {base.image_size} px, "
                     f"{len(prepared.split.train)} training images, {args.threads} thread(s)\n")
    ratios, paybacks = [], []
    for label, spec in specs:
        try:
            eager = _train(spec, prepared, base, compiled=False)
            comp = _train(spec, prepared, base, compiled=True)
        except Exception as exc:  # noqa: BLE001 - a compiler failure is a finding, printed
            sys.stdout.write(f"  {label}: torch.compile failed: {type(exc).__name__}: {str(exc)[:300]}\n")
            continue
        e_steady = statistics.median(eager["epochs"][1:] or eager["epochs"])
        c_steady = statistics.median(comp["epochs"][1:] or comp["epochs"])
        overhead = comp["epochs"][0] - c_steady - (eager["epochs"][0] - e_steady)
        gain = e_steady - c_steady
        payback = overhead / gain if gain > 0 else float("inf")
        ratio = comp["cpu"] / eager["cpu"]
        ratios.append(ratio)
        paybacks.append(payback)
        sys.stdout.write(
            f"  {label}: eager {eager['cpu']:.1f} CPU-s (first epoch {eager['epochs'][0]:.1f}, then {e_steady:.1f}), "
            f"acc {eager['acc']:.3f} | compiled {comp['cpu']:.1f} CPU-s (first epoch {comp['epochs'][0]:.1f}, then "
            f"{c_steady:.1f}), acc {comp['acc']:.3f} | compiled / eager {ratio:.2f}x the whole training, "
            f"{c_steady / e_steady:.2f}x a steady epoch; compile cost {overhead:.1f} CPU-s, won back after "
            f"{'never' if payback == float('inf') else f'{payback:.1f} epochs'}\n")
        sys.stdout.flush()
    if ratios:
        sys.stdout.write(f"median compiled / eager over the whole training: {statistics.median(ratios):.2f}x; "
                         f"compile cost won back after a median "
                         f"{statistics.median(paybacks):.1f} epochs (a training here has {base.max_epochs})\n")
    return 0


if __name__ == "__main__":
    from nas_core.alloc import tune_for_training

    tune_for_training()  # trains like the worker does (nas_core.alloc)
    raise SystemExit(main())
