"""Super-network ranking and speed benchmark (issue 13; issue 7's search comparison in the full form).

What it measures (``--quick``: the fidelity benchmark's quick settings, i.e. 32 px, a 2,400-image
balanced subsample, 5 epochs with patience 2 from scratch, where the seed-to-seed ceiling is decent;
a 6-epoch super-network; full form: the run's default settings, 64 px, every image, 10 epochs from
scratch):

1. **Ranking** of >= 24 sub-networks (:func:`nas_core.supernet.calibrate.calibration_subnets`:
   the smallest, the largest and one per MACs quantile; every depth, width, kernel and expand
   appears), each trained from scratch with the run's settings and two initialization seeds on the
   run's fixed split (cached in ``benchmarks/supernet_results/``, kept in git, by sub-network, settings,
   seed and data hash, so reruns cost only the estimates; ``--cached-truth-only`` ranks only what is
   cached, and says how many). For
   every training recipe in ``--variants`` (``before``: the first recipe; ``after``: the defaults;
   ``ps``: the defaults with progressive shrinking; ``nodistill``: no distillation from the largest;
   ``fullres``; ``sandwich1`` / ``sandwich2``: one / two random sub-networks per step, the former and the
   current default) and every number of batch-norm recalibration batches in ``--calib``: Kendall tau and
   Spearman of the estimates against the seed-averaged truth, for accuracy and Unfairness, beside the
   seed-0-vs-seed-1 noise ceiling; the estimates' per-group accuracy error; tau of the estimates
   against MACs (does it only rank by size?); the training's CPU time and the CPU seconds per
   estimate. On the best recipe, a short fine-tune from the inherited weights
   (``--finetune-epochs``, ``--finetune-lr``) measured on the validation split is a further
   estimator, with its cost. A closing table lists every estimator next to the ceiling.
   Targets: accuracy tau >= 0.6 (or >= 0.8 x the ceiling where it is < 0.75); Unfairness >= 0.4
   (or >= 0.8 x its ceiling).
2. **Training time at the default settings** (64 px, the whole data set): one epoch of the default
   recipe timed, times its epochs. Target: <= 10 minutes on an idle 2-core machine.
3. **Measurement time** of one sub-network (slice, BN recalibration, every metric incl. latency
   and memory) at the default settings, in process and as a ``supernet measure`` CLI process, CPU
   and wall. Targets: <= 3 s and <= 5 s. The weights do not change the time, so the timing
   checkpoint is an untrained super-network marked trained.
4. Full form only (or ``--search``): LINAS, NSGA-II and random search on the super-network space
   (hypervolume, evaluations to reach random's final hypervolume).

CPU time (``resource``/``time.process_time``) is printed beside wall time: wall time is inflated
on a shared machine. Only ``--threads`` torch threads are used (default 1).

Measured 2026-12-02 on the shared 2-core dev machine (load 4-10, one thread; CPU time is inflated
by the load, wall time far more), the 6,000-image default data set of commit ab02de2:

- training at the default settings (4,200 training images, 64 px, trained at 32 px): one epoch
  47 s CPU, 12 epochs 9.4 CPU-min;
- one measurement (1,200 validation images, every metric): median 2.53 s CPU in process (max 2.78),
  6.6 s CPU as a ``supernet measure`` process;
- ranking, the earlier form (12 sub-networks, a 1,500-image subsample, ``--n-subnets 12 --subsample 1500
  --supernet-epochs 6``): -0.29..0.26 across four recipes; distillation is what made the estimates follow
  MACs (tau vs MACs 0.29-0.32 with it, 0.05 without).

Measured 2026-12-02 13:13-13:25 on the same machine (load 5-6), the quick form on a copy of the 6,000-image
default data set, 10 of the 24 sub-networks (those whose two from-scratch seeds finished in the time
there was: 0.6-5.6 M MACs, the smallest, the largest and 8 spread over the MACs quantiles), ``python
benchmarks/bench_supernet.py --quick --dataset COPY --workdir W --cached-truth-only --skip-timing
--variants nodistill --calib 4,16 --finetune-epochs 1`` (191 CPU-s, 606 s wall with the truth cached):
ceiling accuracy tau 0.40 (Spearman 0.57; the sub-networks span only 70.0-77.5% from scratch on 240 test
images), Unfairness 0.56 (Spearman 0.76); truth 36.7 CPU-s per training (median). ``nodistill`` (6 epochs,
5.0 CPU-min): with 4 BN batches accuracy tau 0.24 (0.58 of the ceiling) / Unfairness 0.07, 1.6 CPU-s per
estimate; 16 BN batches 0.30 (0.75) / 0.24 (0.44), 2.9 s; a 1-epoch fine-tune from the inherited weights
(run's lr) measured on validation 0.58 (1.44 of the ceiling: above a single seed's agreement, since the
truth is the seed mean) / 0.33 (0.60), 8.3 CPU-s per estimate. The distilled default (``after``) was not
finished in the time (killed at epoch 2 of 6), so no same-run comparison with it.

Measured 2026-12-03 on a quiet machine (load < 1 before the runs), the 7,500-image default data set:

- timing (``--skip-ranking --n-timed 4 --n-cli 3``): one epoch at the default settings 36 CPU-s with one
  thread (12 epochs 7.2 min), 28 s wall / 51 CPU-s with two (5.5 min wall); a measurement 1.54 s (1.20 s
  wall with two threads); a ``supernet measure`` process 3.51 s (3.38 s wall with two); both before measuring at the
  training resolution, 0.88 s and 2.90 s after it (README);
- ranking, "mid form" (``--quick --subsample 7500``: every image, 4,200 / 1,200 / 2,100, 32 px, truth
  5 epochs with two seeds, 21.6 CPU-s per training, filled by ``--shard 0/2`` and ``--shard 1/2`` side
  by side in 9.5 min; 6-epoch super-networks, 3.4 CPU-min each): from-scratch accuracy spans
  79.5-84.2%; ceiling 0.54 (Spearman 0.72) / Unfairness 0.41 (0.52). Distilled default: 0.25 / 0.11
  with 4 BN batches, 0.19 / 0.15 with 16 (1.1 / 1.5 CPU-s per estimate); undistilled: 0.06 / 0.09 and
  0.07 / 0.17; undistilled + a 1-epoch fine-tune: -0.25 / -0.20 (4.7 CPU-s). Why: from scratch at this
  budget accuracy follows the mean kernel size (tau 0.53) and falls with depth (-0.17), the distilled
  super-network's estimates follow MACs (0.48) and rise with depth (0.26). Ranking the same estimates by
  validation loss instead of accuracy: 0.28-0.30.
- ranking, full form (``--no-search --variants after,nodistill --calib 4,16 --finetune-epochs 0``: the run's
  defaults, every image at 64 px, truth 10 epochs with two seeds, 131 CPU-s per training; 12-epoch
  super-networks, 8.3-8.5 CPU-min, validated and measured at their 32 px training resolution): the 24
  span 84.7-88.9% from scratch; ceiling 0.21 (Spearman 0.28) / Unfairness 0.23 (0.29). Distilled default
  0.04 / 0.01 (4 BN batches), -0.04 / 0.02 (16); undistilled 0.19 / 0.25 (4), 0.12 / 0.29 (16). Before
  the fix that measures at the training resolution, the distilled super-network validated at 64 px read
  45-50% for its largest sub-network and kept epoch 1.

Measured 2026-12-07, mid form again (its truth retrained, ``--shard 0/1``: 48 trainings, 22.9 CPU-s median,
kept in ``benchmarks/supernet_results/truth.json``; ``--variants after,nodistill,sandwich2 --calib 4,16
--finetune-epochs 0 --skip-timing --no-search``, then ``--variants after,sandwich2 --calib 4
--supernet-seed 1``, then ``--variants sandwich1,after --calib 4 --supernet-seed 2``): ceiling 0.33 / 0.20
(79.3-84.0%). One random sub-network per step (``after``, the default until then, now ``sandwich1``):
0.15 / -0.05, 0.27 / 0.03, 0.01 / 0.21 (super-network seeds 0, 1, 2, 4 BN batches; mean 0.14 / 0.06);
0.21 / -0.07 with 16. ``nodistill``: 0.29 / -0.06, 0.25 / -0.09. Two random sub-networks per step
(``sandwich2``, the default since): 0.47 / 0.19, 0.42 / -0.05, 0.23 / 0.32 (mean 0.37 / 0.15 = 1.13 /
0.77 of the ceilings; 0.46 / 0.17 with 16), 4.5-5.6 training CPU-min against 3.8-4.8: accuracy ahead
on all three seeds, Unfairness on two.

Measured 2026-12-07, full form again (its truth retrained, ``--shard 0/2`` and ``--shard 1/2`` niced beside
other benchmarks, 118.8 CPU-s median per training, merged into ``truth.json``; then ``--variants
after,sandwich1 --calib 4 --finetune-epochs 0 --skip-timing --no-search`` and ``--variants after ...
--supernet-seed 1``): the 24 span 85.1-88.3% from scratch, ceiling 0.18 (Spearman 0.26) / Unfairness 0.27
(0.37). Two random sub-networks per step (the default): 0.26 / 0.22 (seed 0), -0.01 / 0.17 (seed 1), mean
0.13 / 0.20 = 0.69 / 0.72 of the ceilings; one random sub-network (seed 0): 0.04 / 0.11. Training 9.4-10.0
vs 7.7 CPU-min, 1.3-1.7 CPU-s per estimate (without latency/memory), group accuracy error 2.9-3.7 vs 2.1
points.

Measured 2026-12-07 later, the full form on more super-network seeds (truth cached; ``--variants after
--supernet-seed 2`` and ``--variants sandwich1 --supernet-seed 1`` side by side, niced): two random
sub-networks (the default), seed 2: 0.06 / 0.06 (10.1 CPU-min), so over seeds 0-2 0.26, -0.01, 0.06 /
0.22, 0.17, 0.06, mean **0.10 / 0.15 = 0.57 / 0.56 of the ceilings**; one random sub-network, seed 1:
0.14 / 0.33 (8.6 CPU-min), over seeds 0-1 mean 0.09 / 0.22 = 0.50 / 0.81. With a ceiling of 0.18 the
seeds of one recipe differ by more than the recipes do: at the run's defaults neither ranks measurably.

Measured 2026-12-08, a wider space (``--space wide``: stem 8 or 16, stage widths from 16/16/24/32, expand
from 2; same strides, activations and SE; 0.7-20.9 M MACs over the 24 against 2.3-20.9), mid form
(``--quick --subsample 7500 --space wide``, truth by ``--shard 0/2`` and ``1/2``, 15.1 CPU-s per training;
then ``--variants after --calib 4 --finetune-epochs 0 --skip-timing --no-search --supernet-seed 0`` and
``1``): from scratch the 24 span 72.0-83.2% (79.3-84.0% in the default space) and the ceiling is **0.55 /
0.50** (0.33 / 0.20). The default recipe: 0.25 / 0.38 and 0.49 / 0.32 (seeds 0, 1; 4.6 CPU-min each),
mean **0.37 / 0.35 = 0.67 / 0.70 of the ceilings**, as high as in the default space in absolute terms
(0.37 / 0.15 there) but not closer to the ceiling; the same estimates on the test split instead of the
validation split read 0.47 and 0.38: the 1,200-image validation split alone moves tau by ±0.1. Full form
(the run's defaults; truth by the two shards, 76.2 CPU-s per training, merged into ``truth.json``; 12-epoch
super-networks, 9.8 and 10.3 CPU-min): from scratch 79.3-87.9% (85.1-88.3% in the default space), ceiling
only **0.25 / 0.22**; the default recipe 0.13 / 0.33 and 0.22 / 0.19 (seeds 0, 1), mean 0.18 / 0.26 = 0.70 /
1.18 of the ceilings. At 64 px and 10 epochs training from scratch still hardly ranks the wider space.

Usage::

    python -m benchmarks supernet --quick
    python benchmarks/bench_supernet.py --quick --dataset data/default --variants before,after,ps
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
#: From-scratch results of the ranking's sub-networks, kept in the repository (``truth.json``, every form's keys in
#: it, and one file per ``--shard`` process): hours of training that a fresh checkout would otherwise redo.
TRUTH = ROOT / "benchmarks" / "supernet_results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import parse_shard as _shard  # noqa: E402
from nas_core.settings import Env, TrainSettings  # noqa: E402
from nas_core.supernet import calibrate as cal  # noqa: E402
from nas_core.supernet.checkpoint import CheckpointMeta, save_checkpoint, train_size, update_meta  # noqa: E402
from nas_core.supernet.measure import measure_subnet  # noqa: E402
from nas_core.supernet.space import (  # noqa: E402
    SCHEMA_VERSION,
    SupernetSpace,
    SupernetSpaceConfig,
)
from nas_core.supernet.train import SupernetTrainSettings, load_trained, train_supernet  # noqa: E402

#: Where hardware costs are measured; threads set from --threads in main().
ENV = Env()


def _wide_space() -> SupernetSpaceConfig:
    """The default space with smaller widths, a thinner stem and a smaller expand ratio at its low end (same
    strides, activations and SE, so a sub-network the two spaces share is the same network and keeps its
    cached truth): sub-networks that differ more, so that training from scratch can rank them at all."""
    from nas_core.supernet.space import StageConfig

    return SupernetSpaceConfig(
        stem_widths=(8, 16),
        stages=(
            StageConfig(widths=(16, 24), depths=(1, 2), stride=2, act="relu", se=False),
            StageConfig(widths=(16, 24, 32), depths=(1, 2, 3), stride=2, act="relu", se=True),
            StageConfig(widths=(24, 32, 48, 64), depths=(1, 2, 3), stride=2, act="hardswish", se=False),
            StageConfig(widths=(32, 48, 64, 96), depths=(1, 2, 3), stride=1, act="hardswish", se=True),
        ),
        expands=(2, 3, 4, 6),
    )


#: Super-network spaces the ranking can run on (``--space``): the product's default and a wider one.
SPACES = {"default": SupernetSpaceConfig, "wide": _wide_space}

#: Training recipes compared (overrides of SupernetTrainSettings; max_epochs comes from the command).
VARIANTS: dict[str, dict[str, Any]] = {
    # The first recipe: constant AdamW 2e-3, 2 random sub-networks per step, the run's resolution.
    "before": {"schedule": "constant", "lr": 2e-3, "n_random": 2, "train_scale": 1.0, "progressive": 0.0},
    "after": {},  # the defaults
    "ps": {"progressive": 0.25},  # + progressive shrinking (largest, kernel, depth, expand, width)
    "nodistill": {"distill": False},
    "fullres": {"train_scale": 1.0},
    "sandwich2": {"n_random": 2},  # BigNAS's sandwich: two random sub-networks per step (the default since 12-07)
    "sandwich1": {"n_random": 1},  # one random sub-network per step: "after" until 2026-12-07
}


def _log(msg: str) -> None:
    print(msg, flush=True)


def _fmt(v: Any, digits: int = 2) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


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


def _truth(args, configs, space, prepared, train: TrainSettings) -> tuple[list, list[list[dict[str, Any]]]]:
    """(the sub-networks ranked, their from-scratch results: two seeds each), trained or from the cache."""
    workdir = Path(getattr(args, "truth_dir", None) or args.workdir)
    shard = _shard(getattr(args, "shard", None))
    cache = cal.TruthCache(workdir / ("truth.json" if shard is None else f"truth.shard{shard[0]}of{shard[1]}.json"))
    if shard is None:  # what --shard processes trained beside each other joins the main cache
        for part in sorted(workdir.glob("truth.shard*.json")):
            for key, rec in cal.TruthCache(part).data.items():
                if cache.get(key) is None:
                    cache.put(key, rec)
    else:
        configs = [c for i, c in enumerate(configs) if i % shard[1] == shard[0]]
        _log(f"--shard {args.shard}: training the truth of {len(configs)} sub-networks, then stopping")
    split_seed = int(prepared.split.seed)
    if args.cached_truth_only:
        keep = [c for c in configs if all(
            cache.get(cal.truth_key(c, train, s, str(prepared.dataset_hash), split_seed)) for s in range(2))]
        _log(f"--cached-truth-only: {len(keep)} of {len(configs)} sub-networks have both seeds cached; "
             "only those are ranked")
        configs = keep
    out, trained, c0, t0 = [], 0, cal.cpu_seconds(), time.perf_counter()
    for i, cfg in enumerate(configs):
        ts = []
        for seed in range(2):
            key = cal.truth_key(cfg, train, seed, str(prepared.dataset_hash), split_seed)
            rec = cache.get(key)
            if rec is None:
                rec = cal.train_truth(cfg, space, prepared, train, seed)
                cache.put(key, rec)
                trained += 1
                _log(f"  from scratch {i + 1}/{len(configs)} seed {seed}: test acc {rec['accuracy']:.3f}, "
                     f"Unfairness {_fmt(rec['unfairness'], 3)}, {rec['epochs']} epochs, "
                     f"{rec['cpu_seconds']:.0f} s CPU ({rec['macs'] / 1e6:.1f} M MACs)")
            ts.append(rec)
        out.append(ts)
    per = [t["cpu_seconds"] for ts in out for t in ts]
    _log(f"ground truth: {len(configs)} sub-networks x 2 seeds, {trained} trained now "
         f"({cal.cpu_seconds() - c0:.0f} s CPU, {time.perf_counter() - t0:.0f} s wall), the rest cached; "
         f"median {statistics.median(per):.1f} s CPU per from-scratch training")
    accs = [float(np.mean([t["accuracy"] for t in ts])) for ts in out]
    _log(f"  from-scratch accuracy spans {min(accs):.3f}-{max(accs):.3f} (seed mean)")
    return configs, out


def _variant_settings(name: str, epochs: int, patience: int, seed: int = 0) -> SupernetTrainSettings:
    if name not in VARIANTS:
        raise SystemExit(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    return dataclasses.replace(SupernetTrainSettings(max_epochs=epochs, patience=patience, seed=seed),
                               **VARIANTS[name])


def _train_variant(args, name: str, settings: SupernetTrainSettings, prepared, space) -> tuple[Path, dict]:
    tag = hashlib.sha256(json.dumps([settings.to_dict(), space.to_dict(), str(prepared.dataset_hash),
                                     int(prepared.image_size)], sort_keys=True).encode()).hexdigest()[:12]
    path = Path(args.workdir) / "supernets" / f"{name}_{tag}.pt"
    side = path.with_suffix(".cost.json")
    cost = json.loads(side.read_text()) if side.is_file() else {"cpu_seconds": 0.0, "seconds": 0.0}
    c0, t0 = cal.cpu_seconds(), time.perf_counter()

    def progress(rec: dict[str, Any]) -> None:
        if not rec.get("partial"):
            _log(f"    [{name}] {rec['message']}: largest val acc {rec['val_acc']:.3f}, "
                 f"val loss {rec['val_loss']:.4f} ({rec['seconds']:.0f} s)")

    outcome = train_supernet(prepared, path, space, settings, progress=progress)
    cost = {"cpu_seconds": cost["cpu_seconds"] + cal.cpu_seconds() - c0,
            "seconds": cost["seconds"] + time.perf_counter() - t0, "epochs": outcome.meta.epoch,
            "stopped": outcome.meta.stopped_reason}
    side.parent.mkdir(parents=True, exist_ok=True)
    side.write_text(json.dumps(cost))
    return path, cost


def _estimates(net, configs, prepared, calib_batches: int | None = None) -> list[dict[str, Any]]:
    return [cal.estimate(net, cfg, prepared, calib_batches=calib_batches) for cfg in configs]


def _finetuned(path: Path, cfg, prepared, train: TrainSettings, lr_factor: float) -> dict[str, Any]:
    """A short fine-tune from the inherited weights, measured on the validation split (an estimate)."""
    from nas_core.supernet.finetune import finetune

    _, m = finetune(path, cfg, prepared, train, lr_factor=lr_factor, device="cpu", split="val",
                    measure_costs=False)
    return {**cal.summarize(m), "groups": {}}  # validation groups: not comparable with the test truth


def _summary_table(rows, ceiling: dict[str, Any], truths) -> None:
    ca, cu = ceiling["accuracy"]["ceiling_tau"], ceiling["unfairness"]["ceiling_tau"]
    truth_cpu = statistics.median([t["cpu_seconds"] for ts in truths for t in ts])
    _log(f"\n{'estimator':44s} {'tau acc':>8} {'/ceil':>6} {'rho acc':>8} {'tau unf':>8} {'/ceil':>6} "
         f"{'CPU-s/est':>10} {'train CPU-min':>14}")
    _log(f"{'ceiling (from scratch, seed 0 vs 1)':44s} {_fmt(ca):>8} {'1.00':>6} "
         f"{_fmt(ceiling['accuracy']['ceiling_spearman']):>8} {_fmt(cu):>8} {'1.00':>6} {truth_cpu:>10.1f} {'':>14}")
    for label, figs, est_cpu, train_cpu in rows:
        a, u = figs["accuracy"], figs["unfairness"]
        ra = None if a["tau"] is None or not ca or ca <= 0 else a["tau"] / ca
        ru = None if u["tau"] is None or not cu or cu <= 0 else u["tau"] / cu
        _log(f"{label:44s} {_fmt(a['tau']):>8} {_fmt(ra):>6} {_fmt(a['spearman']):>8} {_fmt(u['tau']):>8} "
             f"{_fmt(ru):>6} {est_cpu:>10.2f} {train_cpu / 60:>14.1f}")
    _log("targets: accuracy tau >= 0.6, or >= 0.8 x the ceiling where it is < 0.75; "
         "Unfairness tau >= 0.4, or >= 0.8 x its ceiling\n")


def _report(label: str, figs: dict[str, Any]) -> None:
    a, u = figs["accuracy"], figs["unfairness"]
    ok = cal.ranking_ok(figs)
    _log(f"  {label:28s} accuracy tau {_fmt(a['tau'])} (Spearman {_fmt(a['spearman'])}; ceiling {_fmt(a['ceiling_tau'])}) "
         f"| Unfairness tau {_fmt(u['tau'])} (Spearman {_fmt(u['spearman'])}; ceiling {_fmt(u['ceiling_tau'])}) "
         f"| group acc error {_fmt(None if figs['group_error'] is None else 100 * figs['group_error'], 1)} pt "
         f"| tau vs MACs {_fmt(figs.get('estimate_vs_macs_tau'))} | targets met: acc {ok['accuracy']}, "
         f"Unfairness {ok['unfairness']}")


def _timing_checkpoint(workdir: Path, prepared, space: SupernetSpaceConfig, dataset: Path) -> Path:
    """An untrained super-network for the default data marked trained (time does not depend on weights)."""
    from nas_core.evaluator import InputTransform
    from nas_core.supernet.network import SuperNet

    torch.manual_seed(0)
    net = SuperNet(space, len(prepared.class_names), int(prepared.image_size))
    transform = InputTransform.for_data(prepared, torch.device("cpu"))
    meta = CheckpointMeta(
        schema_version=SCHEMA_VERSION, dataset_hash=str(prepared.dataset_hash), image_size=int(prepared.image_size),
        seed=int(prepared.split.seed), n_classes=len(prepared.class_names), class_names=tuple(prepared.class_names),
        space=space.to_dict(), settings=SupernetTrainSettings().to_dict(), dataset=str(dataset), epoch=1,
        best_epoch=1, complete=True, stopped_reason="timing only (untrained)",
        input_stats={"mean": transform.mean.flatten().tolist(), "std": transform.std.flatten().tolist()},
    )
    path = workdir / "timing_supernet.pt"
    save_checkpoint(path, {"meta": meta.to_dict(), "model": net.state_dict(), "best_model": net.state_dict(),
                           "optimizer": {}, "rng": {}})
    return path


def _timings(args, dataset: Path, space: SupernetSpaceConfig, configs) -> dict[str, Any]:
    from nas_core.supernet.jobs import load_prepared
    from nas_core.supernet.network import SuperNet

    full = load_prepared(str(dataset), TrainSettings(seed=0))  # the run's defaults: 64 px, every image
    out: dict[str, Any] = {"n_val": len(full.split.val), "n_train": len(full.split.train)}
    # Training: one epoch of the default recipe on the default settings, times the default epochs.
    settings = dataclasses.replace(SupernetTrainSettings(), max_epochs=1)
    c0, t0 = cal.cpu_seconds(), time.perf_counter()
    train_supernet(full, Path(args.workdir) / "epoch_timing.pt", space, settings, resume=False)
    epoch_cpu, epoch_wall = cal.cpu_seconds() - c0, time.perf_counter() - t0
    n_epochs = SupernetTrainSettings().max_epochs
    out["train"] = {"epoch_cpu": epoch_cpu, "epoch_wall": epoch_wall, "epochs": n_epochs,
                    "total_cpu": epoch_cpu * n_epochs, "total_wall": epoch_wall * n_epochs}
    _log(f"training at the default settings ({len(full.split.train)} training images, 64 px, trained at "
         f"{max(32, round(64 * SupernetTrainSettings().train_scale))} px, {args.threads} thread(s)): one epoch "
         f"{epoch_cpu:.0f} s CPU / {epoch_wall:.0f} s wall -> {n_epochs} epochs {epoch_cpu * n_epochs / 60:.1f} "
         f"CPU-min ({epoch_wall * n_epochs / 60:.1f} min wall here) [target <= 10 min on an idle 2-core machine]")
    # In process: every metric incl. latency and memory.
    net = SuperNet(space, len(full.class_names), 64).eval()
    net.measure_size = train_size(64, SupernetTrainSettings().train_scale)  # as a trained one's checkpoint says
    picks = configs[:: max(1, len(configs) // args.n_timed)][: args.n_timed]
    measure_subnet(net, picks[0], full, ENV)  # warm the caches (input transform, calibration batches)
    walls, cpus = [], []
    for cfg in picks:
        c0, t0 = time.process_time(), time.perf_counter()
        measure_subnet(net, cfg, full, ENV)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    out["measure"] = {"wall_median": statistics.median(walls), "wall_max": max(walls),
                      "cpu_median": statistics.median(cpus), "cpu_max": max(cpus), "n": len(picks)}
    _log(f"measurement in process ({len(full.split.val)} validation images, every metric): median "
         f"{statistics.median(walls):.2f} s wall / {statistics.median(cpus):.2f} s CPU, max {max(walls):.2f} s wall "
         f"/ {max(cpus):.2f} s CPU over {len(picks)} sub-networks [target <= 3 s]")
    # As a CLI process.
    ckpt = _timing_checkpoint(Path(args.workdir), full, space, dataset)
    walls, cpus = [], []
    for cfg in picks[: args.n_cli]:
        before = os.times()
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "nas_core", "supernet", "measure", "--checkpoint", str(ckpt), "--dataset",
             str(dataset), "--config", json.dumps(cfg.to_dict()), "--threads", str(args.threads), "--json"],
            cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)},
        )
        walls.append(time.perf_counter() - t0)
        after = os.times()
        cpus.append(after.children_user - before.children_user + after.children_system - before.children_system)
        if proc.returncode != 0:
            _log(f"  supernet measure failed ({proc.returncode}): {proc.stderr[-400:]}")
            break
    if walls:
        out["cli"] = {"wall_median": statistics.median(walls), "wall_max": max(walls),
                      "cpu_median": statistics.median(cpus), "n": len(walls)}
        _log(f"measurement as a CLI process (python -m nas_core supernet measure): median "
             f"{statistics.median(walls):.2f} s wall / {statistics.median(cpus):.2f} s CPU, max {max(walls):.2f} s "
             f"wall over {len(walls)} runs [target <= 5 s]")
    return out


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
    p.add_argument("--quick", action="store_true", help="32 px, a 2,000-image subsample, fewer epochs")
    p.add_argument("--dataset", default=None, help="data set folder (default: data/default, generated if missing)")
    p.add_argument("--workdir", default=None,
                   help="caches: checkpoints, images (default data/cache/bench_supernet; reruns reuse it)")
    p.add_argument("--truth-dir", default=str(TRUTH),
                   help="the from-scratch ground truth (keyed by sub-network, settings, seed and data hash; "
                        "default benchmarks/supernet_results, kept in git so a fresh checkout has it)")
    p.add_argument("--image-size", type=int, default=None, help="run resolution (quick 32, full 64)")
    p.add_argument("--subsample", type=int, default=None, help="balanced subsample (quick 2000, full: all)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    p.add_argument("--space", default="default", choices=sorted(SPACES),
                   help="super-network space: the product's default, or wide (smaller widths, stem and expand)")
    p.add_argument("--n-subnets", type=int, default=24, help="sub-networks compared (>= 24 for the figures)")
    p.add_argument("--scratch-epochs", type=int, default=None, help="from-scratch epochs (quick 8, full 10)")
    p.add_argument("--supernet-epochs", type=int, default=None, help="super-network epochs (default: its own)")
    p.add_argument("--scratch-patience", type=int, default=None, help="from-scratch patience (quick 2, full 3)")
    p.add_argument("--patience", type=int, default=5, help="super-network patience")
    p.add_argument("--supernet-seed", type=int, default=0,
                   help="the super-networks' seed (initialization, batch order, sampling): rerun a comparison with "
                        "another to see how much of a difference between recipes is the training's own noise")
    p.add_argument("--finetune-epochs", type=int, default=1,
                   help="epochs of the short fine-tune estimate on the best recipe (0: skip)")
    p.add_argument("--finetune-lr", default="1", help="learning-rate factors of the short fine-tune (x the run's lr)")
    p.add_argument("--variants", default=None, help="recipes to compare (quick: before,after,ps; full: before,after)")
    p.add_argument("--calib", default="4,16", help="BN recalibration batches (x64 images) compared on every recipe")
    p.add_argument("--n-timed", type=int, default=6, help="sub-networks whose measurement is timed")
    p.add_argument("--n-cli", type=int, default=3, help="CLI measurement processes timed")
    p.add_argument("--cached-truth-only", action="store_true",
                   help="rank only the sub-networks whose two from-scratch results are cached (no training)")
    p.add_argument("--shard", default=None,
                   help="K/N: only train the from-scratch truth of every N-th sub-network from the K-th, in its "
                        "own cache file, and stop (run N such processes side by side, then once without --shard)")
    p.add_argument("--skip-timing", action="store_true", help="skip the training/measurement timings")
    p.add_argument("--skip-ranking", action="store_true", help="skip the ranking part")
    p.add_argument("--search", action="store_true", help="also run the search comparison (full form: on)")
    p.add_argument("--no-search", action="store_true", help="no search comparison, not even in the full form")
    p.add_argument("--seeds", type=int, default=None)
    p.add_argument("--budget", type=int, default=None)
    p.add_argument("--population", type=int, default=None)
    p.add_argument("--engines", default="linas,nsga2,random")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    q = args.quick
    args.image_size = args.image_size or (32 if q else 64)
    args.subsample = args.subsample or (2400 if q else None)
    args.scratch_epochs = args.scratch_epochs or (5 if q else TrainSettings().max_epochs)
    args.scratch_patience = args.scratch_patience or (2 if q else TrainSettings().patience)
    args.supernet_epochs = args.supernet_epochs or (6 if q else SupernetTrainSettings().max_epochs)
    variants = [v.strip() for v in (args.variants or ("after,nodistill" if q else "after,nodistill")).split(",")
                if v.strip()]
    args.seeds = args.seeds or (2 if q else 5)
    args.budget = args.budget or (30 if q else 60)
    args.population = args.population or (6 if q else 10)
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    args.workdir = str(Path(args.workdir or ROOT / "data" / "cache" / "bench_supernet").resolve())
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    global ENV
    ENV = Env(threads=args.threads)
    os.environ.setdefault("EQUINAS_CACHE_DIR", str(Path(args.workdir) / "images"))
    from nas_core.supernet.jobs import load_prepared

    dataset = _dataset(args)
    train = TrainSettings(image_size=args.image_size, seed=0, subsample=args.subsample,
                          max_epochs=args.scratch_epochs, patience=args.scratch_patience)
    prepared = load_prepared(str(dataset), train)
    space = SPACES[args.space]()
    configs = cal.calibration_subnets(space, args.n_subnets, n_classes=len(prepared.class_names))
    figures: dict[str, Any] = {"quick": q, "threads": args.threads, "image_size": args.image_size,
                               "subsample": args.subsample, "dataset": str(dataset),
                               "dataset_hash": str(prepared.dataset_hash), "n_subnets": len(configs), "space": args.space}
    _log(f"data set {dataset} ({str(prepared.dataset_hash)[:12]}): {prepared.images.shape[0]} images at "
         f"{args.image_size} px, split {prepared.split.sizes}; {len(configs)} sub-networks, "
         f"{args.scratch_epochs} from-scratch epochs, {args.threads} thread(s)")
    best_net = None
    if not args.skip_ranking:
        configs, truths = _truth(args, configs, space, prepared, train)
        if args.shard:
            return 0
        figures["n_subnets"] = len(configs)
        figures["truth"] = truths
        ceiling = cal.rank_figures([{"accuracy": ts[0]["accuracy"], "unfairness": ts[0]["unfairness"]}
                                    for ts in truths], truths)
        _log(f"noise ceiling (from-scratch seed 0 vs seed 1, {len(configs)} sub-networks): accuracy tau "
             f"{_fmt(ceiling['accuracy']['ceiling_tau'])} (Spearman {_fmt(ceiling['accuracy']['ceiling_spearman'])}), "
             f"Unfairness tau {_fmt(ceiling['unfairness']['ceiling_tau'])} "
             f"(Spearman {_fmt(ceiling['unfairness']['ceiling_spearman'])}); from-scratch truth "
             f"{statistics.median([t['cpu_seconds'] for ts in truths for t in ts]):.1f} CPU-s per training (median)")
        figures["ceiling"] = {m: {k: ceiling[m][k] for k in ("ceiling_tau", "ceiling_spearman")}
                              for m in ("accuracy", "unfairness")}
        figures["variants"] = {}
        rows: list[tuple[str, dict[str, Any], float, float]] = []  # (label, figures, CPU-s/estimate, train CPU-s)
        _log("ranking (estimate on the validation split vs the seed-mean from-scratch test figure, "
             f"{len(configs)} sub-networks):")
        best = None
        calibs = [int(v) for v in (args.calib or "").split(",") if v.strip()] or [None]
        for name in variants:
            settings = _variant_settings(name, args.supernet_epochs, args.patience, args.supernet_seed)
            path, cost = _train_variant(args, name, settings, prepared, space)
            net, meta = load_trained(path)
            figures["variants"][name] = {"settings": settings.to_dict(), "cost": cost, "estimators": {}}
            for n_cal in calibs:
                c0 = cal.cpu_seconds()
                est = _estimates(net, configs, prepared, calib_batches=n_cal)
                # estimate() measures val and test: half of it is the val estimate a search pays for
                est_cpu = (cal.cpu_seconds() - c0) / len(configs) / 2
                figs = cal.rank_figures(est, truths)
                test_figs = cal.rank_figures([{**e, "accuracy": e["test_accuracy"]} for e in est], truths)
                label = f"{name}, {n_cal or 'default'} BN batches"
                _report(f"{label} ({cost['epochs']} ep, {cost['cpu_seconds'] / 60:.1f} CPU-min)", figs)
                _log(f"  {'':28s} (estimate on the test split: accuracy tau {_fmt(test_figs['accuracy']['tau'])}; "
                     f"{est_cpu:.2f} s CPU per estimate without latency/memory)")
                figures["variants"][name]["estimators"][str(n_cal)] = {
                    "figures": figs, "test_split_accuracy_tau": test_figs["accuracy"]["tau"],
                    "cpu_per_estimate": est_cpu, "estimates": est}
                rows.append((label, figs, est_cpu, cost["cpu_seconds"]))
                tau = figs["accuracy"]["tau"]
                if best is None or (tau is not None and (best[1] is None or tau > best[1])):
                    best = (name, tau, net, path, figs)
        if best is not None and args.finetune_epochs > 0:
            name, _, net, path, _f = best
            ft_train = dataclasses.replace(train, max_epochs=args.finetune_epochs, patience=args.finetune_epochs)
            for factor in [float(v) for v in args.finetune_lr.split(",") if v.strip()]:
                c0 = cal.cpu_seconds()
                est = [_finetuned(path, cfg, prepared, ft_train, factor) for cfg in configs]
                est_cpu = (cal.cpu_seconds() - c0) / len(configs)
                figs = cal.rank_figures(est, truths)
                label = f"{name} + fine-tune {args.finetune_epochs} ep (lr x{factor:g})"
                _report(label, figs)
                _log(f"  {'':28s} ({est_cpu:.2f} s CPU per estimate, fine-tuning included)")
                figures["variants"][name][f"finetune_{args.finetune_epochs}_{factor:g}"] = {
                    "figures": figs, "cpu_per_estimate": est_cpu, "estimates": est}
                rows.append((label, figs, est_cpu, figures["variants"][name]["cost"]["cpu_seconds"]))
        _summary_table(rows, ceiling, truths)
        if best is not None:
            name, _, net, path, figs = best
            result = cal.CalibrationResult(figs, len(configs), 2, 0.0, 0.0, 0)
            update_meta(path, kendall_tau=figs["accuracy"]["tau"], kendall_n=len(configs),
                        calibration=result.to_dict())
            best_net = net
    if not args.skip_timing:
        figures["timing"] = _timings(args, dataset, space, configs)
    if best_net is not None and (args.search or not q) and not args.no_search:
        _log(f"search: {args.engines}, {args.seeds} seeds, budget {args.budget}, population {args.population}")
        s = _search(args, best_net, space, prepared, len(prepared.class_names))
        figures["search"] = s
        _log(f"hypervolume target (random's median final HV): {s['target_hv']:.4f}")
        for engine, r in s["engines"].items():
            iqr = r["evals_to_random_final_hv_iqr"]
            _log(f"  {engine:7s}: final HV {r['final_hv_median']:.4f}; evaluations to reach the target: "
                 f"median {r['evals_to_random_final_hv_median']} IQR {iqr[0]:.0f}-{iqr[1]:.0f} "
                 f"(reached in {r['reached']} seeds)")
        _log(f"  {s['distinct_measured']} distinct sub-networks measured in {s['measure_seconds']:.0f}s "
             f"(search {s['search_seconds']:.0f}s)")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    from nas_core.alloc import tune_for_training

    tune_for_training()  # trains like the worker does (nas_core.alloc)
    raise SystemExit(main())
