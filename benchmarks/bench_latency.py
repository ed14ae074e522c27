"""Latency under load: the old measurement (median of consecutive repeats) vs the new one.

Issue 17: two specs that differ only in dropout (the same compute) measured 0.91 ms vs 40.6 ms per
image on a busy machine, and the search ranked them by it. The landed method
(:func:`nas_core.metrics.hardware.measure_latencies`) splits the repeats into rounds, lets the
batch and the single-image measurements take turns round by round, and reports the minimum of
the round medians with their spread. This benchmark measures, in one run:

- ``old``: for each batch size in turn, the median of ``Env.repeats`` consecutive timed runs after
  ``Env.warmup`` untimed ones (the code before the change, kept here verbatim in :func:`old_latency`);
- ``new``: ``measure_latencies`` with the same warm-up and repeats;
- ``cpu``: the new schedule, timed with the process's CPU clock instead of the wall clock (what a
  CPU-time measure would give; not what the app reports);

on the default plain CNN at 64 px, ``trials`` times each (old and new alternate inside a trial), on
an idle machine, with one CPU-burning process per core (``loaded``), and with burners that run in
bursts of 50-300 ms on and off (``bursty``: another process's training epochs and pauses). Per
method and condition it prints the median estimate, the trial-to-trial spread
``(p90 - p10) / median`` and the largest / smallest estimate; then the ratio of spreads new / old
and the shift of each method's estimate under load (loaded median / idle median), and how often
the new method's warning (spread > 50 %) fired.

``python -m benchmarks latency [--quick] [--trials N] [--threads N] [--batch N]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import statistics
import sys
import time

import torch

from nas_core.metrics.hardware import NOISY_SPREAD, interleaved_latencies, measure_latencies, num_threads
from nas_core.models import build_model
from nas_core.settings import Env
from nas_core.space import default_spec


def old_latency(model: torch.nn.Module, x: torch.Tensor, warmup: int, repeats: int) -> float:
    """The measurement before issue 17: the median of ``repeats`` consecutive timed forward passes."""
    with torch.inference_mode():
        for _ in range(max(0, warmup)):
            model(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return float(statistics.median(times))


def _burn(stop_at: float, bursty: bool, seed: int) -> None:
    rng = random.Random(seed)
    x = 0
    while time.time() < stop_at:
        until = time.time() + (rng.uniform(0.05, 0.3) if bursty else 1.0)
        while time.time() < until:
            x = (x * 31 + 7) % 1000003
        if bursty:
            time.sleep(rng.uniform(0.05, 0.3))


def _spread(values: list[float]) -> float:
    qs = statistics.quantiles(values, n=10, method="inclusive")
    return (qs[-1] - qs[0]) / statistics.median(values)


def run_condition(model: torch.nn.Module, shape: tuple[int, int, int], env: Env, batches: list[int],
                  trials: int) -> dict[str, list[float]]:
    """Per method, the per-image latency (seconds) of the Env's batch size in each trial, and the warnings."""
    out: dict[str, list[float]] = {"old": [], "new": [], "cpu": [], "new_noisy": []}
    xs = {b: torch.rand((b, *shape), generator=torch.Generator().manual_seed(0)) for b in batches}
    b0 = batches[0]
    for t in range(trials):
        order = ("old", "new") if t % 2 == 0 else ("new", "old")
        for method in order:
            if method == "old":
                lat = {b: old_latency(model, xs[b], env.warmup, env.repeats) for b in batches}
                out["old"].append(lat[b0] / b0)
            else:
                est = measure_latencies(model, shape, batches, env.warmup, env.repeats, torch.device("cpu"))
                out["new"].append(est[b0].seconds / b0)
                out["new_noisy"].append(float(any(e.noisy for e in est.values())))
        with torch.inference_mode():
            fns = {str(b): (lambda b=b: model(xs[b])) for b in batches}
            cpu = interleaved_latencies(fns, env.repeats, clock=time.process_time)
        out["cpu"].append(cpu[str(b0)].seconds / b0)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer trials (6)")
    ap.add_argument("--trials", type=int, default=None, help="trials per method and condition (default 12)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads while timing (the Env's default is 2)")
    ap.add_argument("--batch", type=int, default=Env().batch_size, help="the Env's inference batch size")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--conditions", default="idle,loaded,bursty")
    args = ap.parse_args(argv)
    trials = args.trials or (6 if args.quick else 12)
    env = Env(threads=args.threads, batch_size=args.batch)
    shape = (3, args.image_size, args.image_size)
    torch.manual_seed(0)
    model = build_model(default_spec(), shape, 8).eval()
    batches = list(dict.fromkeys([args.batch, 1]))
    ncpu = os.cpu_count() or 1
    print(f"default CNN at {args.image_size} px, batch {args.batch} (and 1), {env.warmup} warm-up + "
          f"{env.repeats} timed runs, {args.threads} torch thread(s), {trials} trials, {ncpu} cores")
    results: dict[str, dict[str, list[float]]] = {}
    w0, c0 = time.perf_counter(), time.process_time()
    for cond in args.conditions.split(","):
        burners = []
        if cond in ("loaded", "bursty"):
            stop_at = time.time() + 900
            burners = [mp.Process(target=_burn, args=(stop_at, cond == "bursty", i), daemon=True)
                       for i in range(ncpu)]
            for b in burners:
                b.start()
            time.sleep(0.5)
        try:
            with num_threads(args.threads):
                results[cond] = run_condition(model, shape, env, batches, trials)
        finally:
            for b in burners:
                b.terminate()
                b.join()
        r = results[cond]
        print(f"\n{cond} ({len(burners)} burner processes):")
        for m in ("old", "new", "cpu"):
            v = r[m]
            print(f"  {m:3s}: median {1e3 * statistics.median(v):7.3f} ms/image, trial spread (p90-p10)/median "
                  f"{100 * _spread(v):6.1f}%, max/min {max(v) / min(v):5.2f}")
        print(f"  new method's noisy-latency warning (round spread > {100 * NOISY_SPREAD:.0f}%) fired in "
              f"{sum(r['new_noisy']):.0f}/{trials} trials")
    print("\nsummary (new / old, same run):")
    idle = results.get("idle")
    for cond, r in results.items():
        ratio = _spread(r["new"]) / max(_spread(r["old"]), 1e-12)
        line = f"  {cond:7s}: spread ratio new/old {ratio:.2f}"
        if idle is not None and cond != "idle":
            for m in ("old", "new", "cpu"):
                line += f"; {m} shift x{statistics.median(r[m]) / statistics.median(idle[m]):.2f}"
        print(line)
    print(f"({time.perf_counter() - w0:.0f} s wall, {time.process_time() - c0:.0f} s CPU in this process)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
