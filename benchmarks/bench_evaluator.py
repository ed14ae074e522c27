"""Evaluator speed: cached tensors against JPEG decoding, and FLOP/s against the best convolution.

Prints, all measured in the same run on this machine:

(a) seconds per training epoch with the evaluator's pipeline (uint8 images decoded once into
    the cache, converted and flipped on the fly: :func:`nas_core.evaluator.train_epoch`)
    against a torchvision ``DataLoader`` that decodes every JPEG every epoch (PIL loader,
    Resize + CenterCrop, flips, ToTensor, Normalize), same model, same images, same batch.
    Two sources: the default data set's JPEGs as generated (small, 96 px high) and the same
    images re-saved at an ISIC-like 1024x768, because the ratio depends mostly on decode cost.
    Target: >= 10x. The one-off cache build is printed separately, and so is the ratio of
    the input pipelines alone (no model): when the model's compute dominates an epoch, as
    it does on a CPU, the epoch ratio cannot exceed 1 + data time / compute time.
(b) achieved training FLOP/s (forward + backward convolutions and matmuls counted by
    torch.utils.flop_counter over one step, divided by the step's CPU time) as a fraction of
    the **best measured convolution throughput** on this machine (:func:`conv_peak`: a single
    3x3 convolution's forward + backward over a few channel widths and sizes, both memory
    formats, the best FLOP per CPU-second), for ResNet-18 and the small default CNN at 64 px,
    with and without channels_last, at the training batch (64, ``--flops-batch``). Target: >= 0.6. Both sides are measured in CPU time of
    the process (``time.process_time``: the sum over its threads), so the share does not move
    with the machine's load, which only stretches wall time; the GEMM figure (``torch.mm``)
    is printed for reference only (MKL's GEMM reaches less than a 3x3 convolution here, so it
    is no peak).

Times are the best of a few repeats (the machine may be shared: the best is the least
disturbed). Run: ``python benchmarks/bench_evaluator.py [--quick]`` (``make bench``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def gemm_peak(n: int = 2048, repeats: int = 5) -> float:
    """fp32 FLOP/s of ``torch.mm`` on n x n matrices (best of ``repeats``, after one warm-up)."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    torch.mm(a, b)
    t = _best(lambda: torch.mm(a, b), repeats)
    return 2 * n**3 / t


def _best_cpu(fn, repeats: int) -> float:
    """Least CPU time (process, all threads) of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return max(min(times), 1e-9)


#: (channels, spatial size, batch) of the convolutions that :func:`conv_peak` tries.
CONV_PEAK_SHAPES = ((64, 32, 32), (128, 16, 32), (128, 32, 16), (256, 16, 16), (256, 8, 64))


def conv_peak(repeats: int = 3) -> tuple[float, str]:
    """Best training FLOP per CPU-second of one 3x3 convolution (forward + backward) on this machine.

    Returns:
        (FLOP/s per CPU-second, description of the best configuration).
    """
    best, where = 0.0, ""
    for ch, size, batch in CONV_PEAK_SHAPES:
        for channels_last in (False, True):
            conv = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
            x = torch.rand(batch, ch, size, size, requires_grad=True)
            if channels_last:
                conv = conv.to(memory_format=torch.channels_last)
                x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)

            def step(conv: nn.Module = conv, x: torch.Tensor = x) -> None:
                conv(x).sum().backward()

            from torch.utils.flop_counter import FlopCounterMode

            counter = FlopCounterMode(display=False)
            with counter:
                step()
            flops = int(counter.get_total_flops())
            step()  # warm-up: oneDNN primitives
            rate = flops / _best_cpu(step, repeats)
            if rate > best:
                best, where = rate, f"{ch} ch, {size}x{size}, batch {batch}, channels_last={channels_last}"
    return best, where


def train_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """FLOPs of one forward + backward (convolutions and matmuls), counted by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        nn.functional.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def step_seconds(model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int) -> float:
    """Least CPU time (process, all threads) of one Adam training step."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()  # warm-up: allocator, oneDNN primitives, Adam state
    return _best_cpu(step, repeats)


def bench_flops(peak: float, batch: int, repeats: int, models: list[str]) -> None:
    from nas_core.models import build_model
    from nas_core.models.baselines import build_baseline
    from nas_core.space import default_spec

    builders = {
        "resnet18": lambda: build_baseline("resnet18", (3, 64, 64), 8),
        "small_cnn": lambda: build_model(default_spec(), (3, 64, 64), 8),
    }
    for name in models:
        for channels_last in (False, True):
            torch.manual_seed(0)
            model = builders[name]()
            x = torch.rand(batch, 3, 64, 64)
            y = torch.randint(0, 8, (batch,))
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            flops = train_flops(model, x, y)
            t = step_seconds(model, x, y, repeats)
            achieved = flops / t
            print(f"  {name:<10} channels_last={channels_last!s:<5} batch {batch}: {flops / 1e9:8.2f} GFLOP/step, "
                  f"{t:7.3f} CPU s/step, {achieved / 1e9:7.2f} GFLOP per CPU-s = {achieved / peak:5.2f} of the "
                  f"best convolution (target >= 0.6)", flush=True)


class JpegDataset(torch.utils.data.Dataset):
    """Decode every JPEG on every access, as a plain torchvision pipeline does."""

    def __init__(self, paths: list[str], labels: list[int], size: int, mean: torch.Tensor, std: torch.Tensor):
        from torchvision import transforms

        self.paths, self.labels = paths, labels
        self.tf = transforms.Compose([
            transforms.Resize(size),
            transforms.CenterCrop(size),
            transforms.RandomHorizontalFlip(),
            transforms.RandomVerticalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean.tolist(), std.tolist()),
        ])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from torchvision.datasets.folder import default_loader

        return self.tf(default_loader(self.paths[i])), self.labels[i]


def upscale_copy(src: Path, dst: Path, size: tuple[int, int] = (1024, 768)) -> Path:
    """Copy a data set with every JPEG re-saved at ``size`` (ISIC-like resolution)."""
    import shutil

    from PIL import Image

    shutil.copytree(src, dst)
    for p in dst.rglob("*.jpg"):
        with Image.open(p) as im:
            im.convert("RGB").resize(size, Image.BILINEAR).save(p, quality=90)
    return dst


def bench_pipelines(root: Path, label: str, cache_dir: Path, batch: int, workers: int, epochs: int) -> float:
    from nas_core.data.prepare import prepare
    from nas_core.evaluator import CHANNELS_LAST, InputTransform, make_optimizer, train_epoch
    from nas_core.models import build_model
    from nas_core.settings import TrainSettings
    from nas_core.space import default_spec

    t0 = time.perf_counter()
    prepared = prepare(root, image_size=64, seed=0, cache_dir=cache_dir, workers=workers)
    build = time.perf_counter() - t0
    settings = TrainSettings(batch_size=batch, image_size=64)
    device = torch.device("cpu")
    tr = torch.as_tensor(prepared.split.train.copy())
    cl = CHANNELS_LAST["cpu"]  # the evaluator's own setting, applied to both pipelines
    transform = InputTransform.for_data(prepared, device, cl)

    def fresh():
        torch.manual_seed(0)
        model = build_model(default_spec(), (3, 64, 64), len(prepared.class_names))
        if cl:
            model = model.to(memory_format=torch.channels_last)
        return model, make_optimizer(model, settings)

    model, opt = fresh()
    gen = torch.Generator().manual_seed(0)
    cached = []
    for _ in range(epochs):
        t = time.perf_counter()
        train_epoch(model, opt, prepared.images, prepared.labels, tr, transform, settings, gen)
        cached.append(time.perf_counter() - t)

    index = prepared.index
    paths = [str(Path(index.root) / index.paths[i]) for i in prepared.split.train]
    labels = [int(index.labels[i]) for i in prepared.split.train]
    ds = JpegDataset(paths, labels, 64, transform.mean.flatten(), transform.std.flatten())
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                         generator=torch.Generator().manual_seed(0),
                                         persistent_workers=False)
    model, opt = fresh()
    jpeg = []
    for _ in range(epochs):
        t = time.perf_counter()
        model.train()
        for x, y in loader:
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        jpeg.append(time.perf_counter() - t)
    # Data only: where the time goes.
    t = time.perf_counter()
    for _ in loader:
        pass
    jpeg_data = time.perf_counter() - t
    t = time.perf_counter()
    for start in range(0, len(tr), batch):
        transform(prepared.images[tr[start:start + batch]])
    cached_data = time.perf_counter() - t

    c, j = min(cached), min(jpeg)
    print(f"  {label}: {len(tr)} training images, batch {batch}, DataLoader workers {workers}, "
          f"channels_last {cl}")
    print(f"    cache build (once per data set and size): {build:.2f} s")
    print(f"    epoch, cached tensors : {c:7.3f} s  (data part alone {cached_data:.3f} s)")
    print(f"    epoch, JPEG DataLoader: {j:7.3f} s  (data part alone {jpeg_data:.3f} s)")
    print(f"    ratio JPEG / cached   : {j / c:7.2f}x   (target >= 10x)")
    print(f"    input pipeline alone  : {jpeg_data / cached_data:7.2f}x   (the part the cache replaces; the rest "
          "of an epoch is the model's own compute, the same in both)", flush=True)
    return j / c


def main(argv: list[str] | None = None) -> int:
    """Run both benchmarks and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default=None, help="data set folder (default: generate one)")
    parser.add_argument("--n", type=int, default=300, help="images to generate (default 300)")
    parser.add_argument("--batch", type=int, default=64, help="training batch (default 64)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader / decoding workers (default 2)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per pipeline (best is kept)")
    parser.add_argument("--flops-batch", type=int, default=64,
                        help="batch of the FLOP/s steps (default 64: the training batch of TrainSettings, so the "
                             "share is the one training gets; it was 32, which understated it)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, small CNN only for (b)")
    args = parser.parse_args(argv)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    with tempfile.TemporaryDirectory(prefix="bench_eval_") as tmp:
        tmp_path = Path(tmp)
        if args.dataset:
            root = Path(args.dataset)
        else:
            from nas_core.data.synthetic import make_default

            root = make_default(tmp_path / "data", n_images=max(100, args.n), image_size=96, seed=0)
        epochs = 1 if args.quick else args.epochs
        print("(a) epoch time: cached tensor pipeline vs decoding JPEGs every epoch (small default CNN, 64 px)")
        ratios = [bench_pipelines(root, "source JPEGs as generated", tmp_path / "cache1", args.batch,
                                  args.workers, epochs)]
        big = upscale_copy(root, tmp_path / "data_1024")
        ratios.append(bench_pipelines(big, "same images re-saved at 1024x768", tmp_path / "cache2", args.batch,
                                      args.workers, epochs))

    print("(b) training FLOP per CPU-second as a fraction of the best measured 3x3 convolution")
    peak, where = conv_peak(repeats=2 if args.quick else 3)
    print(f"  best convolution (forward + backward): {peak / 1e9:.1f} GFLOP per CPU-s ({where})")
    print(f"  for reference, GEMM (torch.mm 2048x2048 fp32, wall): {gemm_peak(repeats=3) / 1e9:.1f} GFLOP/s")
    bench_flops(peak, args.flops_batch, 2 if args.quick else 3, ["small_cnn"] if args.quick else
                ["small_cnn", "resnet18"])
    print(f"summary: pipeline ratios {', '.join(f'{r:.2f}x' for r in ratios)} "
          f"(median {statistics.median(ratios):.2f}x)")
    return 0


if __name__ == "__main__":
    from nas_core.alloc import tune_for_training

    tune_for_training()  # trains like the worker does (nas_core.alloc)
    raise SystemExit(main())
