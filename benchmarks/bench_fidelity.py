"""Fidelity benchmark: how well do fast estimates rank architectures, next to the noise ceiling?

A fixed, deterministic list of 24 specs (:func:`benchmark_specs`: small to large, every block
type, every norm, kernels 3-7, stem stride 1 and 2) is trained from scratch twice at the run's
settings, with init seeds 0 and 1 on one fixed split (split seed 0). That is the ground truth.
It prints:

- the **noise ceiling**: Kendall tau and Spearman rho of test accuracy and of Unfairness between
  seed 0 and seed 1 (how well full training ranks against itself);
- the data set's **spread**: test accuracy range over the 24 specs (seed-averaged) and the
  Unfairness range against the median width of its bootstrap interval, and the widest 95%
  interval of a main group's accuracy (groups with at least ``--main-group`` test images);
- for every **fast estimate** (:func:`builtin_estimates`, plus any a module registers, see
  below): its Kendall tau against the seed-averaged truth, the same as a share of the ceiling,
  and its CPU seconds per candidate next to full training's.

Ground truth is cached on disk (``benchmarks/fidelity_results/``, kept in git), one JSON file per (spec canonical key,
training settings, init seed, train fraction, data set hash): a rerun costs only the estimates;
``--no-cache`` retrains. CPU time is ``time.process_time`` of this process (all its threads).

Estimates are pluggable: an :class:`Estimate` is a name plus a function of the run's
:class:`TrainSettings` (and a share of the training split to keep). A module that defines
``fidelity_estimates() -> list[Estimate]`` and is listed in :data:`PLUGIN_MODULES` (the
successive-halving rungs, ``nas_core.rungs``) adds its own; a missing module is skipped.
:func:`train_at_fidelity` is the one function that trains a spec at a fidelity and returns its
numbers; other code (the rungs) may import it.

Forms:

- full: the default data set (``data/default``, generated if missing) at the default
  :class:`TrainSettings` (64 px, up to 10 epochs, patience 3);
- ``--quick``: a smaller generated copy (3,000 images, :data:`QUICK`: 56/16/28, so the same 1,680
  training images as the former 2,400-image 70/20/10 copy and an 840-image test split) at 32 px, up to 5
  epochs, patience 2; sized to fit 20 CPU-minutes on an idle 2-core machine.

Run: ``python -m benchmarks fidelity [--quick]`` or ``python benchmarks/bench_fidelity.py``.
On 2 cores, the full form is run as two one-thread processes side by side, ``--shard 0/2`` and
``--shard 1/2`` (each trains its share of the specs, balanced by MACs and cheapest first, truth and
estimates, into the cache and stops), then once
without ``--shard`` to print the tables from the cache. ``--cached-only`` prints them from what is cached
so far, training nothing (a spec counts once both truth seeds are cached).

Measured on the 7,500-image default set (2026-12-02, ``OMP_NUM_THREADS=1 python -m
benchmarks.bench_fidelity --quick``, a machine shared with one other job): 1,790 s CPU (1,919 s
wall) for the 48 trainings of the truth plus the estimates. Noise ceiling: accuracy tau 0.801
(Spearman 0.931, seed-to-seed SD 2.5 points), Unfairness tau 0.695 (Spearman 0.859). Spread:
accuracy 50.2-83.9% (33.7 points), Unfairness range 3.5x its median interval width (840 test
images), main groups' interval up to +-8.3 points in the quick form's test split. Estimates (tau acc
/ tau Unfairness, CPU s per candidate, against 21.9 s for the truth): 1 epoch 0.52 / 0.44, 5.2 s;
half resolution (16 px) 0.74 / 0.62, 6.1 s; 1/4 of the training split 0.50 / 0.45, 7.0 s; 1 epoch
at half resolution 0.44 / 0.45, 1.2 s; 30% of the epochs (2) at half resolution 0.53 / 0.55, 2.2 s;
half the epochs (3) at half resolution (the row "SH rung 1 (default, scaled)") 0.66 / 0.68, 3.5 s: 0.82 of the ceiling for accuracy and
0.98 for Unfairness, so it became the default first rung (5 epochs at 32 px for the default 10 at
64). On the former 6,000-image set the ceiling was 0.77 / 0.73 and the spread 35.6 points with 2.2x.
With ``--recipes``, one-cycle at 3 of the 5 epochs lost 8-19 points on 5 of the first 6 specs (the
former set), so it was not adopted.
Full form, all 24 specs (2026-12-04 and 12-07, ``--shard 0/2`` and ``--shard 1/2`` side by side with one
thread each, niced, then ``--cached-only``; the results are kept in ``benchmarks/fidelity_results/``, so a
rerun trains only what is missing). A full training costs 14-1,913 CPU-s (mean
414); depthwise networks cost about 5x more per MAC than dense ones (spec 17, 88 M MACs: 1,641 s; spec 7,
230 M: 725 s; spec 12, 431 M: 1,862-1,913 s), so the whole form is about 4 h of 2 cores, not the 2 h
targeted. Ceiling 0.815 / 0.739 (accuracy / Unfairness; seed SD 1.4 points); spread 60.7-92.5% (31.8
points); Unfairness range 4.8x its median interval width; main groups' interval median +-4.4, widest
+-5.3 points. Default first rung (5 epochs at 32 px) 0.715 / 0.652 = 0.88 / 0.88 of the ceilings at 43.2
CPU-s (9.6x cheaper, 3.8 points below); by validation accuracy, the pruner's score, 0.780 = 0.96 of the
ceiling (bench_iteration); 3 epochs at 32 px 0.650 / 0.635; 1 epoch at 32 px 0.421 / 0.376; 1 epoch at
64 px 0.399 / 0.394. On 21 specs (12-04) the ceiling was 0.861 / 0.781 and the rung 0.759 / 0.667.
The two dearer estimates (12-07, the same way, 1.9 CPU-h): half resolution (10 epochs at 32 px) 0.635 /
0.529 (0.78 / 0.72 of the ceilings) at 99.1 CPU-s, +2.1 points; 1/4 of the training split 0.730 / 0.599 (0.90
/ 0.81) at 181.9 CPU-s, -13.5 points: neither pays against the first rung at 2.3x and 4.2x its CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import json
import logging
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "data" / "cache" / "fidelity"
#: Trained results, one small JSON file each, kept in the repository: a fresh checkout (or CI) gets the
#: hours of full-form ground truth with it instead of losing them with ``data/cache``.
TRUTH = ROOT / "benchmarks" / "fidelity_results"
#: Modules asked for extra estimates (``fidelity_estimates()``); absent ones are skipped.
PLUGIN_MODULES = ("nas_core.rungs", "nas_core.halving")
#: The quick form: a smaller generated data set and a shorter schedule.
QUICK = {"n_images": 3000, "gen_size": 48, "image_size": 32, "max_epochs": 5, "patience": 2}
SPLIT_SEED = 0  # the split is fixed for the whole benchmark; only the init seed varies
INIT_SEEDS = (0, 1)
#: A shard trains an estimate with each spec's truth when it costs at most this share of a full training.
CHEAP = 0.15


@dataclass(frozen=True)
class Estimate:
    """A fast fidelity: the run's settings changed by ``settings``, trained on a share of the split.

    Attributes:
        name: short label for the table.
        settings: maps the run's TrainSettings to this fidelity's (e.g. fewer epochs).
        train_fraction: share of the training split kept (a seeded, class-stratified subset).
    """

    name: str
    settings: Callable[[Any], Any]
    train_fraction: float = 1.0


@dataclass(frozen=True)
class FidelityResult:
    """The numbers of one spec trained at one fidelity with one init seed."""

    test_acc: float
    unfairness: float | None
    unfairness_ci: tuple[float, float] | None
    balanced_acc: float
    main_group_halfwidth: float | None  # widest 95% half-interval of a main group's accuracy
    epochs: int
    cpu_s: float
    wall_s: float
    threads: int

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (the cache file)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FidelityResult:
        """Inverse of :meth:`to_dict`."""
        ci = d.get("unfairness_ci")
        return cls(**{**d, "unfairness_ci": None if ci is None else (float(ci[0]), float(ci[1]))})


def builtin_estimates(recipes: bool = False) -> list[Estimate]:
    """Short training, lower resolution, a subsample, and candidate first rungs (shares of the epochs at half resolution).

    With ``recipes``, also candidate faster training recipes (compare their mean accuracy column).
    """

    def one_epoch(s: Any) -> Any:
        return dataclasses.replace(s, max_epochs=1)

    def half_res(s: Any) -> Any:
        return dataclasses.replace(s, image_size=max(16, s.image_size // 2))

    def rung0(s: Any) -> Any:
        return dataclasses.replace(s, max_epochs=1, image_size=max(16, s.image_size // 2))

    def share_at_half_res(share: float) -> Callable[[Any], Any]:
        # candidate first rungs: a share of the epochs (rounded up) at half resolution, no early stop
        def fn(s: Any) -> Any:
            epochs = max(1, math.ceil(share * s.max_epochs))
            return dataclasses.replace(s, max_epochs=epochs, patience=max(epochs, 1),
                                       image_size=max(16, s.image_size // 2))
        return fn

    def onecycle(s: Any) -> Any:
        return dataclasses.replace(s, schedule="onecycle", max_epochs=max(1, round(0.6 * s.max_epochs)))

    return [
        Estimate("1 epoch", one_epoch),
        Estimate("half resolution", half_res),
        Estimate("1/4 of training split", lambda s: s, train_fraction=0.25),
        Estimate("1 epoch @ half res", rung0),
        Estimate("30% of epochs @ half res", share_at_half_res(0.3)),
        # half the epochs at half resolution is the default first rung: rungs.fidelity_estimates adds it
        # a faster recipe, not only an estimate: its mean accuracy column says whether it loses any
        *([Estimate("one-cycle, 60% of epochs", onecycle)] if recipes else []),
    ]


def all_estimates(recipes: bool = False) -> list[Estimate]:
    """The built-in estimates plus those of :data:`PLUGIN_MODULES` that exist."""
    out = builtin_estimates(recipes)
    for name in PLUGIN_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        fn = getattr(mod, "fidelity_estimates", None)
        if callable(fn):
            out.extend(fn())
    return out


def benchmark_specs() -> list[Any]:
    """The 24 benchmark specs, deterministic, all valid under the default Choices."""
    from nas_core.space import ArchSpec

    def spec(stem: tuple, blocks: Sequence[tuple], hidden: int = 0, dropout: float = 0.2) -> ArchSpec:
        ch, k, s = stem
        bl = []
        for b in blocks:
            t, out, kernel, stride, expand, norm, pool = b[:7]
            extra = b[7] if len(b) > 7 else {}
            bl.append({"type": t, "out_channels": out, "kernel": kernel, "stride": stride,
                       "expand": expand, "norm": norm, "pool": pool, **extra})
        return ArchSpec.from_dict({"stem": {"out_channels": ch, "kernel": k, "stride": s}, "blocks": bl,
                                   "head": {"hidden": hidden, "dropout": dropout}})

    def plain(norm: str, widths: Sequence[int] = (32, 64, 128), k: int = 3, stem: tuple = (16, 3, 1),
              pool: str = "max") -> ArchSpec:
        return spec(stem, [("conv", w, k, 1, 1, norm, pool) for w in widths])

    silu = {"act": "silu"}
    se = {"se": True}
    return [
        # plain CNNs: the default spec under every norm, then smaller, larger, deeper, wider kernels
        plain("batch"),
        plain("instance"),
        plain("group"),
        plain("layer"),
        plain("none"),
        spec((8, 3, 2), [("conv", 16, 3, 1, 1, "none", "max"), ("conv", 16, 3, 1, 1, "none", "max")]),
        plain("batch", (24, 48)),
        plain("batch", (64, 128, 256), stem=(32, 3, 1)),
        spec((16, 3, 1), [("conv", 32, 3, 1, 1, "batch", "none"), ("conv", 32, 3, 1, 1, "batch", "max"),
                          ("conv", 64, 3, 1, 1, "batch", "none"), ("conv", 64, 3, 1, 1, "batch", "max"),
                          ("conv", 128, 3, 1, 1, "batch", "max"), ("conv", 128, 3, 1, 1, "batch", "max")]),
        plain("batch", k=7, stem=(16, 7, 1)),
        plain("instance", (32, 64, 96), pool="avg", stem=(16, 5, 2)),
        # residual
        spec((16, 3, 1), [("residual", 32, 3, 2, 1, "batch", "none"), ("residual", 64, 3, 2, 1, "batch", "none"),
                          ("residual", 128, 3, 2, 1, "batch", "none")]),
        spec((32, 3, 1), [("residual", 64, 3, 1, 1, "batch", "max"), ("residual", 64, 3, 1, 1, "batch", "none"),
                          ("residual", 128, 3, 2, 1, "batch", "none"), ("residual", 256, 3, 2, 1, "batch", "none")]),
        spec((16, 3, 1), [("residual", 32, 3, 2, 1, "instance", "none"),
                          ("residual", 64, 3, 2, 1, "instance", "none"),
                          ("residual", 128, 3, 2, 1, "instance", "none")]),
        spec((24, 5, 1), [("residual", 48, 5, 2, 1, "group", "none"), ("residual", 96, 3, 2, 1, "group", "none"),
                          ("residual", 192, 3, 2, 1, "group", "none")]),
        spec((16, 3, 2), [("residual", 24, 3, 2, 1, "none", "none"), ("residual", 48, 3, 2, 1, "none", "none")]),
        # mbconv (inverted residual)
        spec((16, 3, 1), [("mbconv", 24, 3, 2, 4, "batch", "none"), ("mbconv", 48, 3, 2, 4, "batch", "none"),
                          ("mbconv", 96, 3, 2, 4, "batch", "none")]),
        spec((32, 3, 1), [("mbconv", 32, 3, 1, 6, "batch", "max", silu), ("mbconv", 64, 5, 2, 6, "batch", "none", silu),
                          ("mbconv", 96, 3, 2, 6, "batch", "none", silu), ("mbconv", 160, 5, 2, 4, "batch", "none", silu),
                          ("mbconv", 192, 3, 1, 4, "batch", "none", silu)]),
        spec((16, 3, 1), [("mbconv", 32, 5, 2, 3, "group", "none", se), ("mbconv", 64, 3, 2, 3, "group", "none", se),
                          ("mbconv", 128, 3, 2, 3, "group", "none", se)]),
        spec((16, 3, 1), [("mbconv", 24, 3, 2, 2, "layer", "none"), ("mbconv", 48, 3, 2, 2, "layer", "none")]),
        # depthwise separable
        spec((16, 3, 2), [("dwsep", 32, 3, 2, 1, "batch", "none"), ("dwsep", 64, 3, 2, 1, "batch", "none"),
                          ("dwsep", 128, 3, 2, 1, "batch", "none")]),
        spec((32, 3, 1), [("dwsep", 64, 3, 1, 1, "batch", "max"), ("dwsep", 128, 5, 2, 1, "batch", "none"),
                          ("dwsep", 128, 3, 1, 1, "batch", "none"), ("dwsep", 256, 3, 2, 1, "batch", "none"),
                          ("dwsep", 256, 3, 2, 1, "batch", "none")], hidden=128),
        spec((16, 3, 1), [("dwsep", 32, 7, 2, 1, "layer", "none"), ("dwsep", 64, 5, 2, 1, "layer", "none"),
                          ("dwsep", 128, 3, 2, 1, "layer", "none")]),
        # a mixed network
        spec((24, 5, 1), [("conv", 48, 3, 1, 1, "batch", "max"), ("residual", 96, 3, 2, 1, "instance", "none"),
                          ("mbconv", 160, 3, 2, 3, "batch", "none", se), ("dwsep", 256, 3, 2, 1, "group", "none")],
             hidden=64),
    ]


# ---------------------------------------------------------------------------------------------
# Training at a fidelity


def _train_subset(split: Any, labels: np.ndarray, fraction: float, seed: int) -> Any:
    """``split`` with its training part cut to ``fraction`` (every class keeps its share)."""
    if fraction >= 1.0:
        return split
    rng = np.random.default_rng([seed, 7])
    train = np.asarray(split.train)
    keep = []
    for c in np.unique(labels[train]):
        rows = train[labels[train] == c]
        k = max(1, round(fraction * len(rows)))
        keep.append(rng.choice(rows, size=k, replace=False))
    return dataclasses.replace(split, train=np.sort(np.concatenate(keep)))


def train_at_fidelity(
    spec: Any,
    prepared: Any,
    settings: Any,
    *,
    train_fraction: float = 1.0,
    n_bootstrap: int = 200,
    main_group: int = 100,
) -> FidelityResult:
    """Train ``spec`` from scratch on ``prepared`` with ``settings`` and measure it on the test split.

    ``settings.seed`` is the init seed (weights, batch order, flips); the split is ``prepared``'s.
    Latency and memory are not measured (they do not depend on the fidelity).

    Args:
        spec: an ArchSpec.
        prepared: the PreparedData at ``settings.image_size``.
        settings: TrainSettings of this fidelity.
        train_fraction: share of the training split to train on (validation and test unchanged).
        n_bootstrap: resamples for the Unfairness and group intervals.
        main_group: groups with at least this many test images count as main groups.
    """
    import torch

    from nas_core.evaluator import evaluate_model, train_model
    from nas_core.models import build_model

    if train_fraction < 1.0:
        labels = prepared.labels.numpy()
        prepared = dataclasses.replace(prepared, split=_train_subset(prepared.split, labels, train_fraction,
                                                                     settings.seed))
    c0, w0 = time.process_time(), time.perf_counter()
    torch.manual_seed(settings.seed)
    model = build_model(spec, tuple(int(s) for s in prepared.images.shape[1:]), len(prepared.class_names))
    result = train_model(model, prepared, settings, torch.device("cpu"))
    m = evaluate_model(model, prepared, training=result, n_bootstrap=n_bootstrap, seed=settings.seed,
                       measure_costs=False)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    widths = [(g.accuracy_ci[1] - g.accuracy_ci[0]) / 2 for g in m.fairness.groups
              if g.n >= main_group and g.accuracy_ci is not None and g.group != "unknown"]
    return FidelityResult(
        test_acc=float(m.test_acc),
        unfairness=m.fairness.unfairness,
        unfairness_ci=m.fairness.interval("unfairness"),
        balanced_acc=float(m.balanced_acc),
        main_group_halfwidth=max(widths) if widths else None,
        epochs=int(result.epochs),
        cpu_s=cpu,
        wall_s=wall,
        threads=torch.get_num_threads(),
    )


#: Settings added after caches were written, at the value that reproduces the old behaviour: left out
#: of the cache key at that value, so old ground truth stays valid.
_NEUTRAL = {"split_seed": 0, "min_group_size": 10, "schedule": "constant", "recipe": 0}
#: Bump when the evaluator's training loop changes what it computes (invalidates cached truth).
RECIPE_VERSION = 0


def _cache_path(spec: Any, settings: Any, dataset_hash: str, fraction: float) -> Path:
    full = {**settings.to_dict(), "recipe": RECIPE_VERSION}
    st = {k: v for k, v in full.items() if not (k in _NEUTRAL and _NEUTRAL[k] == v)}
    key = json.dumps({"spec": spec.key, "settings": st,
                      "data": dataset_hash, "fraction": fraction}, sort_keys=True)
    return TRUTH / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")


def cached_result(spec: Any, prepared: Any, settings: Any, train_fraction: float = 1.0) -> FidelityResult | None:
    """The cached result of ``spec`` at this fidelity, or None when it has not been trained."""
    path = _cache_path(spec, settings, prepared.dataset_hash, train_fraction)
    return FidelityResult.from_dict(json.loads(path.read_text())) if path.is_file() else None


def cached_train(spec: Any, prepared: Any, settings: Any, use_cache: bool = True,
                 train_fraction: float = 1.0) -> tuple[FidelityResult, bool]:
    """:func:`train_at_fidelity`, read from / written to the on-disk cache. Returns (result, was_cached)."""
    path = _cache_path(spec, settings, prepared.dataset_hash, train_fraction)
    if use_cache and path.is_file():
        return FidelityResult.from_dict(json.loads(path.read_text())), True
    res = train_at_fidelity(spec, prepared, settings, train_fraction=train_fraction)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")  # a shard killed mid-write leaves no half file for the next run to read
    tmp.write_text(json.dumps(res.to_dict()))
    tmp.replace(path)
    return res, False


# ---------------------------------------------------------------------------------------------
# Statistics


def rank_agreement(a: Sequence[float | None], b: Sequence[float | None]) -> tuple[float, float]:
    """(Kendall tau, Spearman rho) over the positions where both are defined (NaN if < 3)."""
    from scipy.stats import kendalltau, spearmanr

    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    if len(pairs) < 3:
        return float("nan"), float("nan")
    x, y = zip(*pairs, strict=True)
    return float(kendalltau(x, y).statistic), float(spearmanr(x, y).statistic)


def _mean(values: Sequence[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return sum(v) / len(v) if v else None


# ---------------------------------------------------------------------------------------------
# The benchmark


def _dataset(args: argparse.Namespace) -> Path:
    from nas_core.data.synthetic import make_default

    if args.dataset:
        return Path(args.dataset)
    if args.quick:
        path = CACHE / f"quick-data-{QUICK['n_images']}-{QUICK['gen_size']}"
        if not (path / "ISIC_2019_Training_GroundTruth.csv").is_file():
            make_default(path, n_images=QUICK["n_images"], image_size=QUICK["gen_size"], seed=0, workers=1)
        return path
    path = ROOT / "data" / "default"
    if not (path / "ISIC_2019_Training_GroundTruth.csv").is_file():
        make_default(path, seed=0)
    return path


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train the truth (cached), then every estimate; print the tables; return the figures."""
    import torch

    from benchmarks import parse_shard
    from nas_core.data.prepare import prepare
    from nas_core.settings import TrainSettings

    torch.set_num_threads(args.threads)
    base = TrainSettings()
    if args.quick:
        base = dataclasses.replace(base, image_size=QUICK["image_size"], max_epochs=QUICK["max_epochs"],
                                   patience=QUICK["patience"])
    if args.epochs:
        base = dataclasses.replace(base, max_epochs=args.epochs)
    data = _dataset(args)
    specs = benchmark_specs()[: args.specs] if args.specs else benchmark_specs()
    prepared_by_size: dict[tuple[int, int | None], Any] = {}

    def prepared_at(size: int, subsample: int | None = None) -> Any:
        # An estimate with its own subsample (a rung may set one) is prepared as the product would.
        if (size, subsample) not in prepared_by_size:
            prepared_by_size[size, subsample] = prepare(data, image_size=size, seed=SPLIT_SEED, subsample=subsample)
        return prepared_by_size[size, subsample]

    p0 = prepared_at(base.image_size)
    sys.stdout.write(f"data set {data} ({len(p0.labels)} images; test {len(p0.split.test)}), "
                     f"{len(specs)} specs, settings {base.image_size} px, <= {base.max_epochs} epochs, "
                     f"patience {base.patience}, batch {base.batch_size}, {args.threads} thread(s)\n")
    sys.stdout.flush()
    estimates = all_estimates(args.recipes) if not args.no_estimates else []
    shard = parse_shard(args.shard)
    if shard is not None:
        return _run_shard(args, shard, specs, base, p0, estimates, prepared_at)
    if args.cached_only:
        # only specs whose two truth results are cached; nothing is trained
        keep = [i for i, sp in enumerate(specs)
                if all(cached_result(sp, p0, dataclasses.replace(base, seed=s)) is not None for s in INIT_SEEDS)]
        sys.stdout.write(f"--cached-only: {len(keep)} of {len(specs)} specs have both truth results cached: "
                         f"{keep}\n")
        if len(keep) < 3:
            raise SystemExit("--cached-only needs at least 3 specs with both truth results cached; "
                             "run the --shard processes (or the benchmark without --cached-only) first")
        specs = [specs[i] for i in keep]
    truth: dict[int, list[FidelityResult]] = {s: [] for s in INIT_SEEDS}
    truth_cpu, n_cached = [], 0
    for seed in INIT_SEEDS:
        st = dataclasses.replace(base, seed=seed)
        for i, sp in enumerate(specs):
            res, cached = cached_train(sp, p0, st, use_cache=not args.no_cache)
            truth[seed].append(res)
            n_cached += cached
            if not cached:
                truth_cpu.append(res.cpu_s)
            sys.stdout.write(f"  truth seed {seed} spec {i:2d}: acc {res.test_acc:.3f} unf "
                             f"{_fmt(res.unfairness)} epochs {res.epochs} cpu {res.cpu_s:.1f}s"
                             f"{' (cached)' if cached else ''}\n")
            sys.stdout.flush()
    out: dict[str, Any] = {"n_specs": len(specs), "cached": n_cached}
    acc = {s: [r.test_acc for r in truth[s]] for s in INIT_SEEDS}
    unf = {s: [r.unfairness for r in truth[s]] for s in INIT_SEEDS}
    tau_acc, rho_acc = rank_agreement(acc[0], acc[1])
    tau_unf, rho_unf = rank_agreement(unf[0], unf[1])
    acc_avg = [(a + b) / 2 for a, b in zip(acc[0], acc[1], strict=True)]
    unf_avg = [_mean([a, b]) for a, b in zip(unf[0], unf[1], strict=True)]
    widths = [r.unfairness_ci[1] - r.unfairness_ci[0] for s in INIT_SEEDS for r in truth[s] if r.unfairness_ci]
    med_w = statistics.median(widths) if widths else float("nan")
    unf_vals = [u for u in unf_avg if u is not None]
    halfw = [r.main_group_halfwidth for s in INIT_SEEDS for r in truth[s] if r.main_group_halfwidth is not None]
    seed_sd = statistics.pstdev([a - b for a, b in zip(acc[0], acc[1], strict=True)]) / 2 ** 0.5
    full_cpu = statistics.mean(r.cpu_s for s in INIT_SEEDS for r in truth[s])
    sys.stdout.write(
        "\nNoise ceiling (seed 0 vs seed 1, same split):\n"
        f"  test accuracy: Kendall tau {tau_acc:.3f}, Spearman {rho_acc:.3f} (target tau >= 0.7); "
        f"seed-to-seed SD {100 * seed_sd:.1f} points\n"
        f"  Unfairness:    Kendall tau {tau_unf:.3f}, Spearman {rho_unf:.3f} (target tau >= 0.5)\n"
        f"Spread over the {len(specs)} specs (seed-averaged):\n"
        f"  test accuracy {100 * min(acc_avg):.1f}-{100 * max(acc_avg):.1f}% = "
        f"{100 * (max(acc_avg) - min(acc_avg)):.1f} points (target >= 15)\n"
        f"  Unfairness {min(unf_vals):.4f}-{max(unf_vals):.4f}: range {max(unf_vals) - min(unf_vals):.4f} = "
        f"{(max(unf_vals) - min(unf_vals)) / med_w:.1f}x the median 95% interval width {med_w:.4f} "
        f"(target >= 3x)\n"
        f"  main groups' accuracy interval: widest +-{100 * max(halfw):.1f} points, median "
        f"+-{100 * statistics.median(halfw):.1f} (target <= 5)\n"
        f"  full training: {full_cpu:.1f} CPU s per candidate (mean; {n_cached} of "
        f"{len(specs) * len(INIT_SEEDS)} results from the cache)\n"
    )
    out.update(tau_acc=tau_acc, rho_acc=rho_acc, tau_unf=tau_unf, rho_unf=rho_unf,
               acc_spread=max(acc_avg) - min(acc_avg), unf_range_over_ci=(max(unf_vals) - min(unf_vals)) / med_w,
               main_group_halfwidth=max(halfw) if halfw else None, full_cpu_s=full_cpu, estimates={})
    sys.stdout.write(f"\n{'estimate':<32} {'tau acc':>8} {'/ceiling':>9} {'tau unf':>8} {'/ceiling':>9} "
                     f"{'CPU s/cand':>11} {'x cheaper':>10} {'mean acc - truth':>17}\n")
    partial: list[tuple[str, int, float, float]] = []
    for est in estimates:
        st = est.settings(dataclasses.replace(base, seed=0))
        prepared = prepared_at(st.image_size, st.subsample)
        if args.cached_only:  # an estimate not yet trained for a spec is left out of its tau
            got = [cached_result(sp, prepared, st, est.train_fraction) for sp in specs]
        else:
            got = [cached_train(sp, prepared, st, use_cache=not args.no_cache,
                                train_fraction=est.train_fraction)[0] for sp in specs]
        if sum(r is not None for r in got) < 3:
            sys.stdout.write(f"{est.name:<32} (fewer than 3 specs cached)\n")
            continue
        ta, _ = rank_agreement([None if r is None else r.test_acc for r in got], acc_avg)
        tu, _ = rank_agreement([None if r is None else r.unfairness for r in got], unf_avg)
        res = [r for r in got if r is not None]
        cpu = statistics.mean(r.cpu_s for r in res)
        # against the same init seed 0, over the specs this estimate has
        delta = statistics.mean(r.test_acc - t.test_acc for r, t in zip(got, truth[0], strict=True) if r is not None)
        name, ceil_acc, ceil_unf, full = est.name, tau_acc, tau_unf, full_cpu
        if len(res) < len(specs):  # partly cached: ceiling and full cost over the same specs, and say so
            have = [i for i, r in enumerate(got) if r is not None]
            ceil_acc = rank_agreement([acc[0][i] for i in have], [acc[1][i] for i in have])[0]
            ceil_unf = rank_agreement([unf[0][i] for i in have], [unf[1][i] for i in have])[0]
            full = statistics.mean(truth[s][i].cpu_s for s in INIT_SEEDS for i in have)
            name = f"{est.name} ({len(res)}/{len(specs)})"
            partial.append((est.name, len(res), ceil_acc, ceil_unf))
        sys.stdout.write(f"{name:<32} {ta:>8.3f} {ta / ceil_acc if ceil_acc > 0 else float('nan'):>9.2f} "
                         f"{tu:>8.3f} {tu / ceil_unf if ceil_unf > 0 else float('nan'):>9.2f} {cpu:>11.1f} "
                         f"{full / cpu:>10.1f} {100 * delta:>+16.1f}p\n")
        sys.stdout.flush()
        out["estimates"][est.name] = {"tau_acc": ta, "tau_unf": tu, "cpu_s": cpu, "mean_acc_delta": delta,
                                      "n_specs": len(res), "ceiling_acc": ceil_acc, "ceiling_unf": ceil_unf}
    for name, n, ca, cu in partial:
        sys.stdout.write(f"  {name}: only {n} of {len(specs)} specs cached; its ceiling ({ca:.3f} / {cu:.3f}) and "
                         f"the full training's cost are over those {n}\n")
    return out


def shard_specs(specs: Sequence[Any], image_size: int, n: int) -> list[list[int]]:
    """Spec indices per shard: balanced by MACs (longest first to the lightest shard), cheapest first.

    Training cost follows MACs (the 24 specs span 0.9-431 M at 64 px): the shards get equal shares of
    them whatever the list's order, and each trains its cheapest first, so a shard stopped early (the
    full form is hours) has finished as many whole specs as it could. Deterministic: every shard process
    computes the same.
    """
    from nas_core.models.builder import build_model, count_macs

    shape = (3, image_size, image_size)
    macs = [count_macs(build_model(sp, shape, 8), shape) for sp in specs]
    shards: list[list[int]] = [[] for _ in range(n)]
    load = [0] * n
    for i in sorted(range(len(specs)), key=lambda i: -macs[i]):
        j = min(range(n), key=lambda j: load[j])
        shards[j].append(i)
        load[j] += macs[i]
    return [sorted(s, key=lambda i: macs[i]) for s in shards]


def _run_shard(args: argparse.Namespace, shard: tuple[int, int], specs: Sequence[Any], base: Any, p0: Any,
               estimates: Sequence[Estimate], prepared_at: Callable[..., Any]) -> dict[str, Any]:
    """Train this shard's share into the cache (spec by spec, then the dearer estimates); no tables.

    Every result is its own cache file, so N shard processes can run side by side; the run without
    ``--shard`` (or with ``--cached-only`` while they are still going) then reads them.
    """
    k, n = shard
    mine = shard_specs(specs, base.image_size, n)[k]
    sys.stdout.write(f"--shard {k}/{n}: specs {mine}, truth then {len(estimates)} estimates, then stopping\n")
    trained = 0
    n_images = len(p0.labels)

    def cost(st: Any, fraction: float) -> float:  # a proxy: epochs x pixels x images
        share = min(1.0, st.subsample / n_images) if st.subsample else 1.0
        return st.max_epochs * st.image_size ** 2 * fraction * share

    def job(i: int, e: Estimate) -> tuple[int, str, Any, float]:
        return i, e.name, e.settings(dataclasses.replace(base, seed=0)), e.train_fraction

    # A shard stopped early should leave whole rows: each spec's truth with its cheap estimates (up to
    # CHEAP of a full training; the first rung among them), then the dearer estimates, cheapest first.
    ranked = sorted(estimates, key=lambda e: cost(e.settings(base), e.train_fraction))
    cheap = [e for e in ranked if cost(e.settings(base), e.train_fraction) <= CHEAP * cost(base, 1.0)]
    jobs = [j for i in mine for j in [(i, "truth", dataclasses.replace(base, seed=s), 1.0) for s in INIT_SEEDS]
            + [job(i, e) for e in cheap]]
    jobs += [job(i, e) for e in ranked if e not in cheap for i in mine]
    for i, name, st, fraction in jobs:
        res, cached = cached_train(specs[i], prepared_at(st.image_size, st.subsample), st,
                                   use_cache=not args.no_cache, train_fraction=fraction)
        trained += not cached
        sys.stdout.write(f"  {name} seed {st.seed} spec {i:2d}: acc {res.test_acc:.3f} epochs {res.epochs} "
                         f"cpu {res.cpu_s:.1f}s{' (cached)' if cached else ''}\n")
        sys.stdout.flush()
    return {"shard": f"{k}/{n}", "specs": mine, "trained": trained, "jobs": len(jobs)}


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (``python -m benchmarks fidelity``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small generated data set, 32 px, <= 5 epochs")
    p.add_argument("--dataset", default=None, help="data set folder (default: data/default, or the quick copy)")
    p.add_argument("--specs", type=int, default=0, help="only the first N specs (0 = all 24)")
    p.add_argument("--epochs", type=int, default=0, help="override max_epochs of the truth (0 = the form's)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    p.add_argument("--no-cache", action="store_true", help="retrain the ground truth instead of reading it")
    p.add_argument("--no-estimates", action="store_true", help="only the ground truth and noise ceiling")
    p.add_argument("--recipes", action="store_true",
                   help="also train the candidate faster recipes (one-cycle at 60%% of the epochs)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--shard", default=None,
                   help="K/N: only train the K-th of N shares of the specs (balanced by MACs; truth, then estimates) "
                        "into the cache, "
                        "and stop; run N such processes side by side, then once without --shard")
    p.add_argument("--cached-only", action="store_true",
                   help="train nothing: the tables over the specs whose truth is cached (while shards still run)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    c0, w0 = time.process_time(), time.perf_counter()
    out = run(args)
    sys.stdout.write(f"\nfidelity benchmark: {time.process_time() - c0:.0f} s CPU, "
                     f"{time.perf_counter() - w0:.0f} s wall\n")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    from nas_core.alloc import tune_for_training

    tune_for_training()  # trains like the worker does (nas_core.alloc)
    raise SystemExit(main())
