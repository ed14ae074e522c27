"""The ``datasets`` command group of the CLI, and its ``make-default`` command.

Owns the ``datasets`` sub-parser; other data commands (``inspect``, ``import``, ``list``) are
added by :mod:`nas_core.data.cli_import` through its ``register(datasets_subparsers)`` when that
module is present, so each area keeps its own commands.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from nas_core.cli import CliError, emit

DEFAULT_OUT = "data/default"
DEFAULT_N_IMAGES = 7500  # nas_core.data.synthetic.DEFAULT_N_IMAGES (not imported here: the parser stays light)


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``datasets`` and its sub-commands to the top-level parser."""
    datasets = subparsers.add_parser(
        "datasets",
        help="make the default data set; inspect, import and list data sets",
        description="Data set commands. The default data set is synthetic (generated, no download).",
    )
    sub = datasets.add_subparsers(dest="datasets_command", metavar="SUBCOMMAND")
    datasets.set_defaults(func=lambda args: _help(datasets))

    make = sub.add_parser(
        "make-default",
        help="generate the synthetic default data set (ISIC 2019 layout)",
        description="Generate the embedded default data set: synthetic dermoscopy-like images in the 8 ISIC "
                    "2019 classes with sex and age metadata, written in the ISIC 2019 layout (images, "
                    "ground-truth CSV, metadata CSV). Deterministic for a seed; no download.",
    )
    make.add_argument("--out", default=DEFAULT_OUT, help=f"folder to write (replaced if present; default {DEFAULT_OUT})")
    make.add_argument("--n", type=int, default=DEFAULT_N_IMAGES,
                      help=f"number of images (default {DEFAULT_N_IMAGES}, at least 100; the generated data set "
                           "asks for a 56/16/28 train/val/test split)")
    make.add_argument("--size", type=int, default=96, help="image height in pixels; width is 4/3 of it (default 96)")
    make.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    make.add_argument("--json", action="store_true", help="print the result as JSON")
    make.set_defaults(func=_make_default)

    try:
        extra = importlib.import_module("nas_core.data.cli_import")
    except ModuleNotFoundError as exc:
        if exc.name != "nas_core.data.cli_import":
            raise
    else:
        extra.register(sub)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _make_default(args: argparse.Namespace) -> int:
    from nas_core.data.synthetic import make_default

    if args.n < 100:
        raise CliError(f"--n must be at least 100 (8 classes need images), got {args.n}")
    if not 16 <= args.size <= 1024:
        raise CliError(f"--size must be from 16 to 1024 pixels, got {args.size}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} is a file; give a folder path")
    start = time.perf_counter()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        # Text mode only: a JSON consumer wants nothing but the JSON on stdout.
        now = time.perf_counter()
        if not args.json and (now - last[0] > 1 or done == total):
            last[0] = now
            sys.stderr.write(f"\r{done}/{total} images")
            if done == total:
                sys.stderr.write("\n")

    try:
        path = make_default(out, n_images=args.n, image_size=args.size, seed=args.seed, progress=progress)
    except OSError as exc:
        raise CliError(f"cannot write the default data set to {out}: {exc}") from exc
    seconds = time.perf_counter() - start
    payload = {"path": str(path), "n_images": args.n, "image_size": args.size, "seed": args.seed,
               "seconds": round(seconds, 2), "format": "isic2019", "synthetic": True}
    emit(args, payload, f"wrote {args.n} synthetic images to {path} in {seconds:.1f}s")
    return 0
