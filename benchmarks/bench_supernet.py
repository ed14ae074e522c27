"""Super-network honesty and efficiency benchmark (issue 7, parts 3, 6 and 7).

What it measures, on the default data set (or ``--dataset``) at 64 px:

1. **Measurement time** of one sub-network in super-network mode (slice, BN recalibration,
   evaluation with every metric incl. latency and memory), median over sampled
   sub-networks. Target: <= 3 s on 2 cores.
2. **Kendall tau** between the super-network's (validation) accuracy estimates of N
   sampled sub-networks (20; ``--quick``: fewer) and their test accuracy when trained
   from scratch with the run's settings (``TrainSettings``; ``--quick``: fewer epochs).
   The figure is written into the checkpoint's metadata and, with ``--db``, into the
   store's ``supernets`` row, where the app shows it.
3. **Search efficiency on real measurements:** LINAS, NSGA-II and random search
   (``nas_core.linas.engines.run_search``) on the super-network space, objectives
   accuracy (max) and MACs (min), >= 5 seeds (``--quick``: fewer). Hypervolume after
   every evaluation with one normalization for all runs (ideal/nadir of every point any
   run measured), and the evaluations each engine needs to reach the hypervolume that
   random search ends with (median and IQR over seeds).
4. **Measurements per hour** in super-network mode against training from scratch.

Measurements of one sub-network are deterministic (fixed calibration images), so the
search runs share a cache of them: a sub-network two runs propose is measured once.
Only ``--threads`` CPU threads are used (default 1): on a machine shared with other jobs, two
OpenMP threads on two busy cores wait on each other at every operation and ran 5-8x *slower*
than one (measured while writing this benchmark); on a dedicated 2-core machine use
``--threads 2``.

Usage::

    python benchmarks/bench_supernet.py --quick
    python benchmarks/bench_supernet.py --dataset data/default --db data/equinas.db
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nas_core.settings import Env, TrainSettings  # noqa: E402
from nas_core.supernet.checkpoint import read_meta, update_meta  # noqa: E402
from nas_core.supernet.jobs import TrainRequest, checkpoint_path, run_training  # noqa: E402
from nas_core.supernet.measure import measure_subnet  # noqa: E402
from nas_core.supernet.space import SupernetSpace, SupernetSpaceConfig, sample_config, to_arch_spec  # noqa: E402
from nas_core.supernet.train import SupernetTrainSettings, load_trained  # noqa: E402

#: Where hardware costs are measured; threads set from --threads in main().
ENV = Env()


def _log(msg: str) -> None:
    print(msg, flush=True)


def _dataset(args: argparse.Namespace) -> Path:
    if args.dataset:
        return Path(args.dataset)
    default = ROOT / "data" / "default"
    if (default / "ISIC_2019_Training_GroundTruth.csv").exists():
        return default
    from nas_core.data.synthetic import make_default

    out = Path(args.workdir) / "default"
    if not (out / "ISIC_2019_Training_GroundTruth.csv").exists():
        _log(f"generating the default data set in {out} ...")
        make_default(out, seed=0)
    return out


def _iqr(values: list[float]) -> tuple[float, float]:
    if not values:
        return (float("nan"), float("nan"))
    q1, q3 = np.percentile(values, [25, 75])
    return float(q1), float(q3)


def _train_supernet(args, dataset: Path, train: TrainSettings, space: SupernetSpaceConfig, prepared) -> Path:
    path = (
        Path(args.checkpoint)
        if args.checkpoint
        else checkpoint_path(
            prepared.dataset_hash,
            train.image_size,
            prepared.split.seed,
            space,
            root=Path(args.workdir) / "supernets",
        )
    )
    settings = SupernetTrainSettings(
        max_epochs=args.supernet_epochs, patience=args.patience, seed=train.seed, n_random=args.n_random
    )
    req = TrainRequest(
        dataset=str(dataset), train=train, space=space, settings=settings, checkpoint=str(path), db=args.db
    )
    t0 = time.perf_counter()

    def progress(rec: dict[str, Any]) -> None:
        _log(
            f"  super-network epoch {rec['epoch']}/{rec['max_epochs']}: largest val acc {rec['val_acc']:.3f}, "
            f"val loss {rec['val_loss']:.4f} ({rec['seconds']:.0f}s)"
        )

    outcome = run_training(req, progress)
    _log(
        f"super-network: {outcome.meta.epoch} epochs ({outcome.meta.stopped_reason}), "
        f"{outcome.meta.train_seconds:.0f}s of training in all, this call {time.perf_counter() - t0:.0f}s"
    )
    return path


def _from_scratch(cfg, space, prepared, train: TrainSettings) -> dict[str, float]:
    from nas_core.evaluator import evaluate_model, train_model
    from nas_core.models import build_model

    torch.manual_seed(train.seed)
    model = build_model(
        to_arch_spec(cfg, space), (3, train.image_size, train.image_size), len(prepared.class_names)
    )
    t0 = time.perf_counter()
    result = train_model(model, prepared, train, torch.device("cpu"))
    m = evaluate_model(model, prepared, ENV, training=result, n_bootstrap=50, seed=train.seed)
    return {
        "test_acc": m.test_acc,
        "val_acc": float(m.val_acc or 0.0),
        "seconds": time.perf_counter() - t0,
        "epochs": result.epochs,
    }


class CachedSource:
    """Super-network measurements as a LINAS ObjectiveSource, cached by sub-network key."""

    def __init__(self, net, space: SupernetSpace, prepared):
        self.net, self.space, self.prepared = net, space, prepared
        self.cache: dict[str, dict[str, float]] = {}
        self.seconds = 0.0

    def evaluate(self, configs):
        out = []
        for cfg in configs:
            key = self.space.key(cfg)
            if key not in self.cache:
                t0 = time.perf_counter()
                m = measure_subnet(self.net, cfg, self.prepared, ENV, n_bootstrap=20, measure_costs=False)
                self.seconds += time.perf_counter() - t0
                self.cache[key] = {
                    "accuracy": m.test_acc,
                    "macs": float(m.hardware.macs),
                    "unfairness": m.fairness.unfairness if m.fairness.unfairness is not None else 1.0,
                }
            out.append(self.cache[key])
        return out


def _search(args, net, space: SupernetSpaceConfig, prepared, n_classes: int) -> dict[str, Any]:
    from nas_core.linas.engines import run_search
    from nas_core.linas.hypervolume import HypervolumeTracker
    from nas_core.linas.space import Objectives

    sp = SupernetSpace(space, n_classes=n_classes, image_size=args.image_size)
    source = CachedSource(net, sp, prepared)
    objectives = Objectives.create(("accuracy", "macs"))
    results: dict[str, list] = {e: [] for e in args.engines}
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        for engine in args.engines:
            res = run_search(
                sp,
                source,
                engine,
                budget=args.budget,
                population=args.population,
                seed=seed,
                objectives=objectives,
            )
            results[engine].append(res)
            _log(
                f"  {engine} seed {seed}: {res.n_evaluations} evaluations, "
                f"{len(source.cache)} distinct sub-networks measured so far"
            )
    # One normalization for every run: the ideal/nadir of all measured points.
    pts = []
    for runs in results.values():
        for res in runs:
            for obs in res.observations:
                pts.append([-obs.value("accuracy"), obs.value("macs")])
    pts = np.array(pts)
    ideal, nadir = pts.min(axis=0), pts.max(axis=0)
    nadir = np.where(nadir > ideal, nadir, ideal + 1e-9)
    traces: dict[str, list[list[float]]] = {}
    for engine, runs in results.items():
        traces[engine] = []
        for res in runs:
            tracker = HypervolumeTracker([1.1, 1.1], ideal, nadir)
            for obs in res.observations:
                tracker.update(np.array([-obs.value("accuracy"), obs.value("macs")]))
            traces[engine].append(list(tracker.trace))
    final = {e: [t[-1] for t in ts] for e, ts in traces.items()}
    target = (
        float(np.median(final["random"])) if "random" in final else float(np.median(sum(final.values(), [])))
    )

    def reach(trace: list[float]) -> int | None:
        return next((i + 1 for i, v in enumerate(trace) if v >= target), None)

    summary = {}
    for engine, ts in traces.items():
        needed = [reach(t) for t in ts]
        got = [n for n in needed if n is not None]
        summary[engine] = {
            "final_hv_median": float(np.median(final[engine])),
            "evals_to_random_final_hv_median": float(np.median(got)) if got else None,
            "evals_to_random_final_hv_iqr": _iqr([float(n) for n in got]),
            "reached": f"{len(got)}/{len(needed)}",
            "hv_median_trace": [float(v) for v in np.median(np.array(ts), axis=0)],
        }
    return {
        "target_hv": target,
        "engines": summary,
        "distinct_measured": len(source.cache),
        "measure_seconds": source.seconds,
        "search_seconds": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer sub-networks, epochs, seeds and evaluations")
    p.add_argument(
        "--dataset", default=None, help="data set folder (default: data/default, generated if missing)"
    )
    p.add_argument("--workdir", default=None, help="where to put generated data, caches and checkpoints")
    p.add_argument("--checkpoint", default=None, help="use/resume this super-network checkpoint")
    p.add_argument("--db", default=None, help="register the checkpoint and its Kendall tau in this store")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: see the note on shared machines)"
    )
    p.add_argument("--supernet-epochs", type=int, default=None)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument(
        "--n-random", type=int, default=None, help="random sub-networks per step (default 2; quick 1)"
    )
    p.add_argument("--subsample", type=int, default=None, help="balanced subsample (quick: 1500 images)")
    p.add_argument("--n-subnets", type=int, default=None, help="sub-networks for Kendall tau (default 20)")
    p.add_argument(
        "--scratch-epochs", type=int, default=None, help="from-scratch epochs (default: the run's 10)"
    )
    p.add_argument(
        "--n-timed", type=int, default=None, help="sub-networks whose measurement is timed (default 10)"
    )
    p.add_argument("--seeds", type=int, default=None)
    p.add_argument("--budget", type=int, default=None)
    p.add_argument("--population", type=int, default=None)
    p.add_argument("--engines", default="linas,nsga2,random")
    p.add_argument("--skip-search", action="store_true")
    p.add_argument(
        "--skip-kendall", action="store_true", help="skip the timing, Kendall tau and per-hour parts"
    )
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    q = args.quick
    args.supernet_epochs = args.supernet_epochs or (6 if q else 30)
    args.n_subnets = args.n_subnets or (8 if q else 20)
    args.n_timed = args.n_timed or (5 if q else 10)
    args.scratch_epochs = args.scratch_epochs or (6 if q else TrainSettings().max_epochs)
    args.seeds = args.seeds or (2 if q else 5)
    args.budget = args.budget or (30 if q else 60)
    args.population = args.population or (6 if q else 10)
    args.n_random = args.n_random if args.n_random is not None else (1 if q else 2)
    args.subsample = args.subsample or (2000 if q else None)
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="bench_supernet_")
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    global ENV
    ENV = Env(threads=args.threads)
    import os

    os.environ.setdefault("EQUINAS_CACHE_DIR", str(Path(args.workdir) / "cache"))

    from nas_core.supernet.jobs import load_prepared

    figures: dict[str, Any] = {
        "quick": q,
        "threads": args.threads,
        "image_size": args.image_size,
        "subsample": args.subsample,
    }
    dataset = _dataset(args)
    train = TrainSettings(image_size=args.image_size, seed=0, subsample=args.subsample)
    prepared = load_prepared(str(dataset), train)
    n_classes = len(prepared.class_names)
    _log(f"data set {dataset}: {prepared.images.shape[0]} images, split {prepared.split.sizes}")
    space = SupernetSpaceConfig()
    ckpt = _train_supernet(args, dataset, train, space, prepared)
    net, meta = load_trained(ckpt)
    figures["supernet"] = {
        "epochs": meta.epoch,
        "train_seconds": meta.train_seconds,
        "largest_val_acc": meta.history[-1]["val_acc"],
        "checkpoint": str(ckpt),
    }

    if not args.skip_kendall:
        # 1 + 2: estimates (timed, every metric) and from-scratch accuracy of the same sub-networks.
        rng = random.Random(12345)
        configs, seen = [], set()
        while len(configs) < args.n_subnets:
            cfg = sample_config(space, rng)
            if cfg.key not in seen:
                seen.add(cfg.key)
                configs.append(cfg)
        # Timing on the full data set (its 20% validation split), whatever the super-network was trained on:
        # the time of a measurement depends on the architecture and the image count, not on the weights.
        full = load_prepared(str(dataset), TrainSettings(image_size=args.image_size, seed=0))
        measure_subnet(net, configs[0], full, ENV)  # warm the caches (input transform, calibration batches)
        times = []
        for cfg in configs[: args.n_timed]:
            t0 = time.perf_counter()
            measure_subnet(net, cfg, full, ENV)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        _log(
            f"measurement on {len(full.split.val)} validation images: median {med:.2f}s per sub-network "
            f"(every metric incl. latency/memory), max {max(times):.2f}s [target <= 3 s]"
        )
        figures["measure_seconds"] = {
            "median": med,
            "max": max(times),
            "all": times,
            "n_val": len(full.split.val),
        }
        n_full_train = len(full.split.train)
        del full
        estimates = [measure_subnet(net, cfg, prepared, ENV, measure_costs=False).test_acc for cfg in configs]

        scratch_train = TrainSettings(
            image_size=args.image_size, seed=0, max_epochs=args.scratch_epochs, subsample=args.subsample
        )
        scratch = []
        for i, cfg in enumerate(configs):
            r = _from_scratch(cfg, space, prepared, scratch_train)
            scratch.append(r)
            _log(
                f"  from scratch {i + 1}/{len(configs)}: test acc {r['test_acc']:.3f} (estimate {estimates[i]:.3f}), "
                f"{r['seconds']:.0f}s"
            )
        from scipy.stats import kendalltau

        tau_test = float(kendalltau(estimates, [r["test_acc"] for r in scratch]).statistic)
        tau_val = float(kendalltau(estimates, [r["val_acc"] for r in scratch]).statistic)
        tau_store = None if np.isnan(tau_test) else tau_test
        update_meta(ckpt, kendall_tau=tau_store, kendall_n=len(configs))
        if args.db:
            from nas_core.store import Store
            from nas_core.supernet.registry import register

            store = Store.open(args.db)
            register(store, ckpt, read_meta(ckpt))
            store.close()
        _log(
            f"Kendall tau (estimate vs from-scratch test accuracy, {len(configs)} sub-networks, "
            f"{args.scratch_epochs} epochs): {tau_test:.3f}  (vs from-scratch val accuracy: {tau_val:.3f})"
        )
        figures["kendall"] = {
            "tau_test": tau_test,
            "tau_val": tau_val,
            "n": len(configs),
            "scratch_epochs": args.scratch_epochs,
            "estimates": estimates,
            "scratch_test": [r["test_acc"] for r in scratch],
        }

        per_epoch = statistics.median(r["seconds"] / max(r["epochs"], 1) for r in scratch)
        # The run's settings train every candidate up to TrainSettings().max_epochs on the full training split;
        # a quick run trains fewer epochs on a subsample, so its figure is scaled up to those settings.
        full_train = n_full_train
        scale = full_train / max(len(prepared.split.train), 1)
        scratch_full = per_epoch * scale * TrainSettings().max_epochs
        per_hour_sn, per_hour_scratch = 3600 / med, 3600 / scratch_full
        _log(
            f"measurements per hour: super-network {per_hour_sn:.0f}, from scratch {per_hour_scratch:.1f} "
            f"({scratch_full:.0f}s per candidate at {TrainSettings().max_epochs} epochs on {full_train} training "
            f"images, from {per_epoch:.1f}s per measured epoch on {len(prepared.split.train)}) "
            f"-> {per_hour_sn / per_hour_scratch:.0f}x"
        )
        figures["per_hour"] = {
            "supernet": per_hour_sn,
            "scratch": per_hour_scratch,
            "scratch_seconds_per_candidate": scratch_full,
            "scratch_seconds_per_epoch_measured": per_epoch,
        }

    if not args.skip_search:
        _log(
            f"search: {args.engines}, {args.seeds} seeds, budget {args.budget}, population {args.population}"
        )
        s = _search(args, net, space, prepared, n_classes)
        figures["search"] = s
        _log(f"hypervolume target (random's median final HV): {s['target_hv']:.4f}")
        for engine, r in s["engines"].items():
            iqr = r["evals_to_random_final_hv_iqr"]
            _log(
                f"  {engine:7s}: final HV {r['final_hv_median']:.4f}; evaluations to reach the target: "
                f"median {r['evals_to_random_final_hv_median']} IQR {iqr[0]:.0f}-{iqr[1]:.0f} "
                f"(reached in {r['reached']} seeds)"
            )
        trace_pts = [i for i in (args.population, args.budget // 2, args.budget) if i <= args.budget]
        for engine, r in s["engines"].items():
            tr = r["hv_median_trace"]
            _log(
                f"  {engine:7s} HV at "
                + ", ".join(f"{i} evals: {tr[i - 1]:.4f}" for i in trace_pts if i <= len(tr))
            )
        _log(
            f"  {s['distinct_measured']} distinct sub-networks measured in {s['measure_seconds']:.0f}s "
            f"(search {s['search_seconds']:.0f}s)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
