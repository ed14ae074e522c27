"""Training CPU with the allocator set for training (:mod:`nas_core.alloc`) against glibc's defaults.

Each variant runs in its own fresh process (the settings are per process and cannot be undone),
the way the worker trains: the training runs in a thread beside an idle main thread, through the
evaluator's own :func:`~nas_core.evaluator.train_model` (one epoch, then the validation pass) on a
balanced subsample of a synthetic data set at the run's default 64 px, with one torch thread
(``--threads``). Every fidelity-benchmark spec (24, across the CNN space; ``--quick``: 6) is
trained in both variants; the variants alternate over ``--rounds`` and the least CPU per spec is
kept (the machine may be shared: the least disturbed run counts).

Printed: per spec the CPU seconds of both variants and their ratio, and the peak resident memory of
that one training (reset before it; the child hands free memory back after each spec, as the worker
does after each job) in both variants: what the tuning costs. In total: the CPU ratio, the minor
page faults, the range of the memory ratios.

Run: ``python -m benchmarks alloc [--quick]`` (``make bench``).

Measured 2026-12-07 on the 2-core machine, nothing else running (``python -m benchmarks alloc``, two
rounds): 146.0 -> 112.9 CPU-s over the 24 specs (0.77x; per spec 0.47-1.33x, median 0.84x): MBConv
and depthwise networks 0.47-0.60x, the default plain CNN 0.77x, deep plain and residual ones about
0.8x; networks that train in under half a second 1.1-1.3x (they fault the heap that the previous job
handed back in again). Minor page faults 24.3 M -> 6.0 M. One training's peak resident memory
median 1.09x (0.58-1.69x), the largest 3,230 -> 5,466 MB (spec 17, MBConv with 6x expansion at full
resolution). The same run without handing memory back between specs (the first version of this
benchmark, one round): 158.3 -> 108.2 CPU-s (0.68x), but the process's peak grew to 6.3 GB against 3.2.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, resource, sys, threading, time
from nas_core.alloc import release_memory, tune_for_training
tuned = tune_for_training()  # EQUINAS_MALLOC (default | training) in the environment decides
import torch
from benchmarks.bench_fidelity import benchmark_specs
from nas_core.data.prepare import prepare
from nas_core.evaluator import train_model
from nas_core.models.builder import build_model
from nas_core.settings import TrainSettings

data, cache, n, threads, which = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
torch.set_num_threads(threads)
prepared = prepare(data, image_size=64, cache_dir=cache, subsample=n, workers=1)
settings = TrainSettings(max_epochs=1, patience=1)
specs = benchmark_specs()
out, peak = {}, {}

def hwm_mb():  # the process's peak resident memory since the last reset (Linux)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

def train():
    for i in which:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak: each spec's own peak, like one job of the worker
        torch.manual_seed(0)
        model = build_model(specs[i], tuple(prepared.images.shape[1:]), len(prepared.class_names))
        t0 = time.process_time()
        train_model(model, prepared, settings, torch.device("cpu"))
        out[i] = time.process_time() - t0
        del model
        peak[i] = hwm_mb()
        release_memory()  # as the worker does after every job

t = threading.Thread(target=train)  # as in the worker: the training runs in a thread of its own
t.start()
t.join()
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"tuned": tuned, "cpu": out, "peak_mb": peak, "minflt": ru.ru_minflt, "maxrss_mb": ru.ru_maxrss / 1024}))
"""

QUICK_SPECS = (0, 8, 12, 17, 20, 21)  # plain, deep plain, residual, mbconv, dwsep x2


def run_variant(variant: str, data: Path, cache: Path, n: int, threads: int, which: list[int]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads))
    # "training" whatever this machine's memory (below 16 GiB the product leaves the defaults alone)
    env["EQUINAS_MALLOC"] = "default" if variant == "default" else "training"
    out = subprocess.run([sys.executable, "-c", CHILD, str(data), str(cache), str(n), str(threads), json.dumps(which)],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the {variant} variant failed:\n{out.stderr[-3000:]}")
    got = json.loads(out.stdout.strip().splitlines()[-1])
    if got["tuned"] != (variant == "tuned"):
        raise SystemExit(f"the {variant} variant ran with tuned={got['tuned']}: not a comparison "
                         "(is this glibc? nas_core.alloc applies only there)")
    got["cpu"] = {int(k): v for k, v in got["cpu"].items()}
    got["peak_mb"] = {int(k): v for k, v in got["peak_mb"].items()}
    return got


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="6 specs, one round")
    p.add_argument("--rounds", type=int, default=2, help="alternations of the two variants")
    p.add_argument("--n", type=int, default=1000, help="images of the balanced subsample (about 56%% train)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dataset", default=None, help="data set folder (default: generate 1,500 images)")
    args = p.parse_args(argv)
    from nas_core.alloc import _libc

    if _libc() is None:
        sys.stdout.write("allocator: skipped, not glibc (nas_core.alloc changes nothing here)\n")
        return 0
    from benchmarks.bench_fidelity import benchmark_specs

    which = list(QUICK_SPECS) if args.quick else list(range(len(benchmark_specs())))
    rounds = 1 if args.quick else args.rounds
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.dataset:
            data = Path(args.dataset)
        else:
            from nas_core.data.synthetic import make_default

            data = make_default(work / "data", n_images=1500, image_size=64, seed=0, workers=1)
        cache = work / "cache"
        runs: dict[str, list[dict]] = {"default": [], "tuned": []}
        for r in range(rounds):
            for variant in ("default", "tuned"):
                got = run_variant(variant, data, cache, args.n, args.threads, which)
                runs[variant].append(got)
                sys.stdout.write(f"  round {r + 1}, {variant}: {sum(got['cpu'].values()):.1f} CPU-s, "
                                 f"{got['minflt']:,} minor faults, peak {got['maxrss_mb']:.0f} MB\n")
                sys.stdout.flush()
    specs = benchmark_specs()
    best = {v: {i: min(g["cpu"][i] for g in gs) for i in which} for v, gs in runs.items()}
    peaks = {v: {i: max(g["peak_mb"][i] for g in gs) for i in which} for v, gs in runs.items()}
    sys.stdout.write(f"training CPU, one epoch of {args.n} images' training split at 64 px + validation, "
                     f"{args.threads} thread(s), least of {rounds} round(s):\n")
    sys.stdout.write(f"  {'spec':>4} {'blocks / norms':36s} {'CPU-s: glibc':>12} {'tuned':>7} {'ratio':>6}   "
                     f"{'peak MB: glibc':>14} {'tuned':>6} {'ratio':>6}\n")
    for i in which:
        kinds = ",".join(sorted({b.type for b in specs[i].blocks}))
        norms = ",".join(sorted({b.norm for b in specs[i].blocks}))
        d, t = best["default"][i], best["tuned"][i]
        md, mt = peaks["default"][i], peaks["tuned"][i]
        sys.stdout.write(f"  {i:>4} {(kinds + ' / ' + norms)[:36]:36s} {d:12.2f} {t:7.2f} {t / d:6.2f}x   "
                         f"{md:14.0f} {mt:6.0f} {mt / md:6.2f}x\n")
    total_d, total_t = sum(best["default"].values()), sum(best["tuned"].values())
    ratios = sorted(best["tuned"][i] / best["default"][i] for i in which)
    peak = {v: max(peaks[v].values()) for v in runs}
    mem = sorted(peaks["tuned"][i] / peaks["default"][i] for i in which)
    faults = {v: min(g["minflt"] for g in gs) for v, gs in runs.items()}
    sys.stdout.write(f"  all {len(which)} specs: {total_d:.1f} -> {total_t:.1f} CPU-s = {total_t / total_d:.2f}x "
                     f"(per spec {ratios[0]:.2f}-{ratios[-1]:.2f}x, median {ratios[len(ratios) // 2]:.2f}x)\n")
    sys.stdout.write(f"  minor page faults {faults['default']:,} -> {faults['tuned']:,}; one training's peak resident "
                     f"memory {mem[0]:.2f}-{mem[-1]:.2f}x (median {mem[len(mem) // 2]:.2f}x), the largest "
                     f"{peak['default']:.0f} -> {peak['tuned']:.0f} MB\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
