"""Benchmark: images per second of the decode cache build against a plain PIL loop.

Generates ~300 full-size (1024x768) dermoscopy-sized JPEGs in a temporary folder, then times

- **baseline**: one process, ``Image.open(path).convert("RGB").resize((S, S))`` per file, as a
  naive data loader would;
- **cache**: :func:`nas_core.data.cache.build_cache` on the same files (JPEG draft mode at reduced
  scale, centre crop, a process pool over chunks, streaming into a memory-mapped array),

and prints both rates and their ratio (issue 3's target: >= 4x on 2 cores). Each side runs
``--repeat`` times and the best run counts, so a neighbour's burst of CPU use on a shared
machine does not decide the figure. Run: ``python -m benchmarks.bench_cache [--n 300]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from nas_core.data.cache import build_cache
from nas_core.data.index import DatasetIndex


def _make_one(args: tuple[str, int, int, int]) -> None:
    path, seed, w, h = args
    rng = np.random.default_rng(seed)
    # Smooth skin-like background + a dark blob + mild noise: JPEG sizes (~100-200 KB) like real photos.
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    cx, cy, r = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h, rng.uniform(0.1, 0.3) * h
    blob = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)))
    base = rng.uniform([180, 120, 100], [240, 180, 160]).astype(np.float32)
    img = base[None, None, :] * (1 - 0.7 * blob[..., None])
    img += rng.integers(-12, 13, (h, w, 1), dtype=np.int16)  # grain, shared by the channels
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=90)


def make_jpegs(folder: Path, n: int, width: int = 1024, height: int = 768, workers: int | None = None) -> list[str]:
    """Write ``n`` full-size JPEGs into ``folder``; returns their file names."""
    names = [f"img_{i:05d}.jpg" for i in range(n)]
    jobs = [(str(folder / name), i, width, height) for i, name in enumerate(names)]
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        list(pool.map(_make_one, jobs, chunksize=8))
    return names


def _cpu() -> float:
    # This process and its reaped children (the pool's workers once it shut down).
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def baseline(paths: list[str], image_size: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the plain single-process open-convert-resize loop over ``paths``."""
    cpu = _cpu()
    start = time.perf_counter()
    out = np.empty((len(paths), 3, image_size, image_size), dtype=np.uint8)
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            out[i] = np.asarray(im.convert("RGB").resize((image_size, image_size)), dtype=np.uint8).transpose(2, 0, 1)
    return time.perf_counter() - start, _cpu() - cpu


def cached(index: DatasetIndex, image_size: int, workers: int | None) -> tuple[float, float]:
    """(wall seconds, CPU seconds incl. workers) of one cold :func:`build_cache` of ``index``."""
    cache_dir = Path(tempfile.mkdtemp(prefix="equinas-bench-cache-"))
    try:
        cpu = _cpu()
        start = time.perf_counter()
        info = build_cache(index, image_size, cache_dir=cache_dir, workers=workers)
        seconds = time.perf_counter() - start
        assert info.built and info.n_images == len(index)
        return seconds, _cpu() - cpu
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print the rates; returns them as a dict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="number of JPEGs (default 300)")
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--image-size", type=int, default=64, help="training resolution (default 64)")
    parser.add_argument("--workers", type=int, default=None, help="cache workers (default: every CPU)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per side; the best counts (default 2)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="equinas-bench-jpegs-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        names = make_jpegs(folder, args.n, args.width, args.height)
        mb = sum((folder / n).stat().st_size for n in names) / 1e6
        print(f"generated {args.n} JPEGs of {args.width}x{args.height} ({mb:.1f} MB) in "
              f"{time.perf_counter() - t0:.1f}s; {os.cpu_count()} CPUs")
        index = DatasetIndex(root=str(folder), format="generic", ids=tuple(names), paths=tuple(names),
                             labels=(0,) * len(names), class_names=("x",))
        paths = [str(folder / n) for n in names]
        base_s, base_cpu = min(baseline(paths, args.image_size) for _ in range(args.repeat))
        cache_s, cache_cpu = min(cached(index, args.image_size, args.workers) for _ in range(args.repeat))
    base_rate, cache_rate = args.n / base_s, args.n / cache_s
    workers = args.workers or os.cpu_count() or 1
    # On a machine shared with other work the wall-clock ratio understates the pool; the CPU-time
    # ratio scaled by the worker count is what idle cores would give.
    idle_ratio = base_cpu / max(cache_cpu, 1e-9) * workers
    result = {"n": args.n, "cpus": os.cpu_count(), "baseline_images_per_s": round(base_rate, 1),
              "cache_images_per_s": round(cache_rate, 1), "ratio": round(cache_rate / base_rate, 2),
              "baseline_cpu_ms_per_image": round(1000 * base_cpu / args.n, 2),
              "cache_cpu_ms_per_image": round(1000 * cache_cpu / args.n, 2),
              "idle_cores_ratio_estimate": round(idle_ratio, 2)}
    print(f"baseline PIL open-convert-resize, 1 process: {base_rate:8.1f} images/s "
          f"({result['baseline_cpu_ms_per_image']:.1f} ms CPU per image)")
    print(f"build_cache (draft mode + process pool):     {cache_rate:8.1f} images/s "
          f"({result['cache_cpu_ms_per_image']:.1f} ms CPU per image, {workers} workers)")
    print(f"ratio: {result['ratio']:.2f}x wall clock (target >= 4x); "
          f"{idle_ratio:.2f}x from CPU time on {workers} idle cores")
    return result


if __name__ == "__main__":
    main()
