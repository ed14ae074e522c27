"""Training the super-network once on a run's split: the sandwich rule, resumable checkpoints.

Owns :class:`SupernetTrainSettings` (every training knob, with its default's reason),
:func:`train_supernet` and :class:`TrainOutcome`.

Each step trains the largest sub-network on the labels, then the smallest and
``n_random`` random ones (the sandwich rule of BigNAS/OFA), accumulating their
gradients into one optimizer step; with ``distill`` the smaller ones learn from the
largest's soft predictions of the same batch (in-place distillation) instead of the
labels. After every epoch the largest network's batch-norm statistics are
recalibrated and its validation loss decides early stopping (patience); the best
weights are kept.

The default recipe is sized for 2 CPU cores (issue 13, measured by
``benchmarks/bench_supernet.py``): a cosine learning-rate schedule with one warm-up
epoch (converges in the 12 epochs it is given), two random sub-networks per step, and
training at half the run's resolution (never below 32 px), where its sub-networks are
also validated and measured (hardware costs at the run's). Progressive shrinking
(Once-for-All: the largest first, then elastic kernel, depth, expand, width) is
available as ``progressive`` and off by default until the benchmark shows it ranks
better. Progress reports carry ``fraction``, ``message`` and ``eta_seconds``, after
every epoch and every :data:`PROGRESS_EVERY_S` seconds inside one (``partial``).

A checkpoint is written atomically after every epoch with the current and best
weights, the optimizer state and every random-number state (torch's global RNG, the
batch-order generator, the sub-network sampler), so a stopped training resumes at
the next epoch and ends exactly where an uninterrupted one would have.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nas_core.errors import UserError
from nas_core.evaluator import InputTransform  # the evaluator's exact input pipeline
from nas_core.supernet.checkpoint import (
    CheckpointError,
    CheckpointMeta,
    load_checkpoint,
    save_checkpoint,
    train_size,
)
from nas_core.supernet.network import SuperNet, recalibrate_bn, sort_channels
from nas_core.supernet.space import (
    SCHEMA_VERSION,
    SubnetConfig,
    SupernetSpaceConfig,
    largest,
    sample_config,
    smallest,
)

log = logging.getLogger(__name__)


class SupernetTrainError(UserError):
    """Training cannot start with what was given (settings, data, an incompatible checkpoint)."""


class Stopped(UserError):
    """Training was stopped on request; the last finished epoch is in the checkpoint."""


SCHEDULES = ("cosine", "constant")

#: Elastic dimensions in the order progressive shrinking opens them.
PHASES = ("largest", "kernel", "depth", "expand", "width")


@dataclass(frozen=True)
class SupernetTrainSettings:
    """Hyperparameters of super-network training."""

    max_epochs: int = 12  # hard cap on epochs (the cosine schedule reaches 0 here)
    patience: int = 5  # stop when the largest's validation loss has not improved for this many epochs
    batch_size: int = 64  # images per step (each seen by 2 + n_random sub-networks)
    lr: float = 3e-3  # AdamW peak learning rate
    weight_decay: float = 1e-4  # decoupled weight decay
    # random sub-networks per step besides the largest and the smallest: 2 (BigNAS's sandwich) ranked the
    # mid form's 24 sub-networks at accuracy tau 0.47 / 0.42 / 0.23 (three super-network seeds) where 1
    # reached 0.15 / 0.27 / 0.01, against a from-scratch ceiling of 0.33, for 15-20% more training CPU
    # (bench_supernet)
    n_random: int = 2
    distill: bool = True  # smaller sub-networks learn the largest's soft predictions (in-place KD)
    distill_temperature: float = 1.0  # softmax temperature of the distillation targets
    augment: bool = True  # random horizontal and vertical flips (lesions have no orientation)
    calib_batches: int = 4  # training batches that recalibrate BN of the largest before validation
    sort_channels_every: int = 0  # OFA channel importance sorting every N epochs; 0 = never
    seed: int = 0  # initialization, batch order, sub-network sampling
    # "cosine": one warm-up epoch then cosine decay to 0 at max_epochs (converges in few epochs);
    # "constant": lr throughout (the first recipe, kept for comparison)
    schedule: str = "cosine"
    # Train at this share of the run's resolution (images downscaled per batch; 0.5: 64 -> 32 px, a
    # quarter of the compute), never below 32 px. Validation and every sub-network measurement run at
    # the same resolution (CheckpointMeta.measure_size), hardware costs at the run's: measured at 64 px
    # after training at 32 the largest read 45-50% on the default data (train low, test high did not
    # transfer here even with batch-norm recalibration: without random crops the objects change size).
    train_scale: float = 0.5
    # Progressive shrinking (Once-for-All): the first share of epochs trains the largest only, then
    # elastic kernel, then depth, then expand and width, each phase an equal share of the rest.
    # 0 = every dimension elastic from the start (the sandwich rule alone).
    progressive: float = 0.0

    def __post_init__(self) -> None:
        for name in ("max_epochs", "patience", "batch_size", "calib_batches"):
            if int(getattr(self, name)) < 1:
                raise SupernetTrainError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.n_random < 0 or self.sort_channels_every < 0:
            raise SupernetTrainError("n_random and sort_channels_every must be 0 or more")
        if not self.lr > 0 or self.distill_temperature <= 0:
            raise SupernetTrainError("lr and distill_temperature must be positive")
        if self.schedule not in SCHEDULES:
            raise SupernetTrainError(f"schedule {self.schedule!r} is not one of {list(SCHEDULES)}")
        if not 0.25 <= self.train_scale <= 1.0:
            raise SupernetTrainError(f"train_scale must be between 0.25 and 1, got {self.train_scale}")
        if not 0.0 <= self.progressive < 1.0:
            raise SupernetTrainError(f"progressive must be in [0, 1), got {self.progressive}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SupernetTrainSettings:
        """Inverse of :meth:`to_dict`.

        Raises:
            SupernetTrainError: unknown fields or bad values.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise SupernetTrainError(
                f"super-network settings: unknown field(s) {sorted(unknown)}; allowed: {sorted(names)}"
            )
        try:
            return cls(**dict(data))
        except TypeError as exc:
            raise SupernetTrainError(f"super-network settings: {exc}") from exc


#: What a checkpoint written before these fields existed was trained with (so it resumes the same way).
_LEGACY = {"schedule": "constant", "train_scale": 1.0, "progressive": 0.0}


def lr_at(settings: SupernetTrainSettings, epoch: int, step: int, steps: int) -> float:
    """The learning rate of ``step`` of ``steps`` in 0-based ``epoch`` (a pure function: resumes exactly)."""
    if settings.schedule == "constant":
        return settings.lr
    t = epoch + step / max(steps, 1)
    if t < 1.0 and settings.max_epochs > 1:  # one warm-up epoch from a tenth of the peak
        return settings.lr * (0.1 + 0.9 * t)
    span = max(settings.max_epochs - 1, 1)
    return settings.lr * 0.5 * (1.0 + math.cos(math.pi * min(max(t - 1.0, 0.0) / span, 1.0)))


def phase_at(settings: SupernetTrainSettings, epoch: int) -> int:
    """How many elastic dimensions (of :data:`PHASES` after "largest") are open in 0-based ``epoch``."""
    if settings.progressive <= 0:
        return len(PHASES) - 1
    first = settings.progressive * settings.max_epochs
    if epoch < first:
        return 0
    rest = max(settings.max_epochs - first, 1.0)
    return min(len(PHASES) - 1, 1 + int((epoch - first) / rest * (len(PHASES) - 1)))


def sample_phase(space: SupernetSpaceConfig, rng: random.Random, open_dims: int) -> SubnetConfig:
    """A random sub-network with only the first ``open_dims`` elastic dimensions free (the others at max).

    Draws the same random numbers whatever ``open_dims`` is, so a resumed training samples the same.
    """
    full = sample_config(space, rng)
    big = largest(space)
    opened = set(PHASES[1 : 1 + open_dims])
    depths = full.depths if "depth" in opened else big.depths

    def per_block(values: tuple[tuple[int, ...], ...], top: int, name: str) -> tuple[tuple[int, ...], ...]:
        out = []
        for s, d in enumerate(depths):
            drawn = values[s] if name in opened else ()
            out.append(tuple(drawn[i] if i < len(drawn) else (top if name not in opened else rng.choice(
                space.kernels if name == "kernel" else space.expands)) for i in range(d)))
        return tuple(out)

    return SubnetConfig(
        stem_width=full.stem_width if "width" in opened else big.stem_width,
        depths=depths,
        widths=full.widths if "width" in opened else big.widths,
        kernels=per_block(full.kernels, space.max_kernel, "kernel"),
        expands=per_block(full.expands, max(space.expands), "expand"),
    )


@dataclass(frozen=True)
class TrainOutcome:
    """Where training stands after :func:`train_supernet` returns."""

    checkpoint: str
    meta: CheckpointMeta
    resumed_from_epoch: int  # 0 for a fresh start


def _batches(
    images: torch.Tensor, labels: torch.Tensor, index: torch.Tensor, batch_size: int, transform: Callable
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(index), batch_size):
        idx = index[start : start + batch_size]
        x = transform(images[idx])
        yield x, labels[idx].to(x.device)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip_h = (torch.rand(x.shape[0], generator=gen) < 0.5).to(x.device)
    flip_v = (torch.rand(x.shape[0], generator=gen) < 0.5).to(x.device)
    x = torch.where(flip_h[:, None, None, None], x.flip(3), x)
    return torch.where(flip_v[:, None, None, None], x.flip(2), x)


class _Fixed(torch.nn.Module):
    """The super-network running one fixed sub-network (for BN recalibration)."""

    def __init__(self, net: SuperNet, config: SubnetConfig):
        super().__init__()
        self.net = net
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D401
        return self.net(x, self.config)


@torch.no_grad()
def _evaluate(
    net: SuperNet, config: SubnetConfig, images, labels, index, batch_size: int, transform: Callable
) -> tuple[float, float]:
    net.eval()
    total_loss, correct, n = 0.0, 0, 0
    for x, y in _batches(images, labels, index, max(batch_size, 128), transform):
        out = net(x, config)
        total_loss += float(F.cross_entropy(out, y, reduction="sum"))
        correct += int((out.argmax(1) == y).sum())
        n += len(y)
    return total_loss / max(n, 1), correct / max(n, 1)


def _rng_state(gen: torch.Generator, sampler: random.Random) -> dict[str, Any]:
    version, state, gauss = sampler.getstate()
    return {
        "torch": torch.get_rng_state(),
        "generator": gen.get_state(),
        "python": [version, list(state), gauss],
    }


def _set_rng_state(rng: Mapping[str, Any], gen: torch.Generator, sampler: random.Random) -> None:
    torch.set_rng_state(rng["torch"])
    gen.set_state(rng["generator"])
    version, state, gauss = rng["python"]
    sampler.setstate((version, tuple(state), gauss))


def train_supernet(
    prepared: Any,
    checkpoint: str | Path,
    space: SupernetSpaceConfig | None = None,
    settings: SupernetTrainSettings | None = None,
    *,
    dataset: str = "",
    subsample: int | None = None,
    resume: bool = True,
    device: str | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainOutcome:
    """Train (or resume training) the super-network on ``prepared``'s split.

    Args:
        prepared: a ``nas_core.data.prepare.PreparedData`` (images, labels, split,
            dataset_hash, image_size, class_names).
        checkpoint: file the checkpoint is written to after every epoch.
        space: the super-network's space (ignored when resuming: the checkpoint's counts).
        settings: training settings (ignored when resuming, except ``max_epochs`` and ``patience``,
            which may be raised to train longer).
        dataset: the data set's path or name, recorded for messages.
        subsample: the balanced subsample ``prepared`` was made with (recorded for measuring).
        resume: continue from ``checkpoint`` when it exists (else it is overwritten).
        device: "cpu" (default) or "cuda".
        progress: called after every epoch with a dict (epoch, max_epochs, losses, accuracies, fraction).
        should_stop: polled between steps; True stops after writing nothing new (the last
            finished epoch stays in the checkpoint) and raises :class:`Stopped`.

    Returns:
        The outcome, with the checkpoint's final metadata.

    Raises:
        SupernetTrainError: empty splits or a checkpoint of another data set/space/resolution.
        Stopped: when ``should_stop`` asked for it.
    """
    checkpoint = Path(checkpoint)
    settings = settings or SupernetTrainSettings()
    space = space or SupernetSpaceConfig()
    split = prepared.split
    if len(split.train) == 0 or len(split.val) == 0:
        raise SupernetTrainError(
            "the data set's split has no training or no validation images; use a larger data set"
        )
    images, labels = prepared.images, prepared.labels.long()
    n_classes = len(prepared.class_names)
    image_size = int(prepared.image_size)

    data: dict[str, Any] | None = None
    if resume and checkpoint.exists():
        data = load_checkpoint(checkpoint)
        old = CheckpointMeta.from_dict(data["meta"])
        problems = []
        if old.schema_version != SCHEMA_VERSION:
            problems.append(f"schema version {old.schema_version} (this code writes {SCHEMA_VERSION})")
        if old.dataset_hash != prepared.dataset_hash:
            problems.append("another data set")
        if old.image_size != image_size:
            problems.append(f"{old.image_size} px (this training uses {image_size} px)")
        if old.seed != int(getattr(split, "seed", old.seed)):
            problems.append(f"split seed {old.seed}")
        if problems:
            raise SupernetTrainError(
                f"cannot resume {checkpoint}: it was trained with {', '.join(problems)}; "
                "delete it or choose another checkpoint path (--out), or train with resume off"
            )
        space = old.space_config
        settings = dataclasses.replace(
            SupernetTrainSettings.from_dict({**_LEGACY, **dict(old.settings)}),
            max_epochs=settings.max_epochs,
            patience=settings.patience,
        )

    dev = torch.device(device) if device is not None else torch.device("cpu")
    transform = InputTransform.for_data(prepared, dev)
    torch.manual_seed(settings.seed)
    net = SuperNet(space, n_classes, image_size).to(dev)
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    gen = torch.Generator().manual_seed(settings.seed)
    sampler = random.Random(settings.seed)
    meta = CheckpointMeta(
        schema_version=SCHEMA_VERSION,
        dataset_hash=str(prepared.dataset_hash),
        image_size=image_size,
        seed=int(getattr(split, "seed", 0)),
        n_classes=n_classes,
        class_names=tuple(prepared.class_names),
        space=space.to_dict(),
        settings=settings.to_dict(),
        subsample=subsample,
        dataset=str(dataset),
        input_stats={"mean": transform.mean.flatten().tolist(), "std": transform.std.flatten().tolist()},
    )
    best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    start_epoch = 0
    if data is not None:
        net.load_state_dict(data["model"])
        net.to(dev)
        optimizer.load_state_dict(data["optimizer"])
        best_state = data["best_model"]
        _set_rng_state(data["rng"], gen, sampler)
        old = CheckpointMeta.from_dict(data["meta"])
        meta = dataclasses.replace(
            old, settings=settings.to_dict(), complete=False, stopped_reason="", kendall_tau=None, kendall_n=0,
            calibration=None,
        )
        start_epoch = old.epoch
        log.info("resuming super-network training at epoch %d from %s", start_epoch + 1, checkpoint)
        if old.complete and not _should_continue(old, settings):
            meta = old
            return TrainOutcome(str(checkpoint), meta, start_epoch)

    big = largest(space)
    train_idx = torch.tensor(np.asarray(split.train), dtype=torch.long)
    val_idx = torch.tensor(np.asarray(split.val), dtype=torch.long)
    T = settings.distill_temperature
    size = train_size(image_size, settings.train_scale)
    resize = size < image_size
    # validation and BN recalibration at the training resolution too (CheckpointMeta.measure_size)
    vtransform = dataclasses.replace(transform, size=size) if resize else transform
    steps = max(1, math.ceil(len(train_idx) / settings.batch_size))
    epoch = start_epoch
    run_t0 = time.perf_counter()
    last_report = run_t0
    while epoch < settings.max_epochs:
        t0 = time.perf_counter()
        net.train()
        open_dims = phase_at(settings, epoch)
        small = phase_smallest(space, open_dims)
        order = train_idx[torch.randperm(len(train_idx), generator=gen)]
        sums = {"loss_largest": 0.0, "loss_small": 0.0, "correct": 0, "n": 0}
        for step, (x, y) in enumerate(_batches(images, labels, order, settings.batch_size, transform)):
            if should_stop is not None and should_stop():
                raise Stopped(
                    f"super-network training stopped during epoch {epoch + 1}; "
                    f"{epoch} epoch(s) are saved in {checkpoint} and training resumes from there"
                )
            if len(y) < 2:
                continue  # batch norm cannot train on one image; it is seen again next epoch
            if settings.augment:
                x = _augment(x, gen)
                # (flip decisions come from the CPU generator so they resume identically on any device)
            if resize:
                x = F.interpolate(x, size=(int(size), int(size)), mode="bilinear", antialias=True,
                                  align_corners=False)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(settings, epoch, step, steps)
            optimizer.zero_grad(set_to_none=True)
            out = net(x, big)
            loss = F.cross_entropy(out, y)
            loss.backward()
            soft = F.softmax(out.detach() / T, dim=1)
            configs = []
            if open_dims > 0:
                configs = [small] + [sample_phase(space, sampler, open_dims) for _ in range(settings.n_random)]
            small_loss = 0.0
            for cfg in configs:
                o = net(x, cfg)
                if settings.distill:
                    sub_loss = F.kl_div(F.log_softmax(o / T, dim=1), soft, reduction="batchmean") * T * T
                else:
                    sub_loss = F.cross_entropy(o, y)
                sub_loss.backward()
                small_loss += float(sub_loss.detach())
            optimizer.step()
            sums["loss_largest"] += float(loss.detach()) * len(y)
            sums["loss_small"] += small_loss / max(len(configs), 1) * len(y)
            sums["correct"] += int((out.argmax(1) == y).sum())
            sums["n"] += len(y)
            now = time.perf_counter()
            if progress is not None and now - last_report >= PROGRESS_EVERY_S:
                last_report = now
                done = epoch + (step + 1) / steps
                rate = (now - run_t0) / max(done - start_epoch, 1e-9)
                progress(_progress_record(epoch + 1, settings, done, rate * (settings.max_epochs - done),
                                          str(checkpoint), partial=True))
        epoch += 1
        if settings.sort_channels_every and epoch % settings.sort_channels_every == 0:
            sort_channels(net)
            optimizer.state.clear()  # moments belong to the old channel order
        n_calib = min(len(train_idx), settings.calib_batches * settings.batch_size)
        calib = (
            vtransform(images[train_idx[i : i + settings.batch_size]])
            for i in range(0, n_calib, settings.batch_size)
        )
        recalibrate_bn(_Fixed(net, big), calib)
        val_loss, val_acc = _evaluate(net, big, images, labels, val_idx, settings.batch_size, vtransform)
        n = max(sums["n"], 1)
        record = {
            "epoch": epoch,
            "train_loss": sums["loss_largest"] / n,
            "train_acc": sums["correct"] / n,
            "sub_loss": sums["loss_small"] / n,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "seconds": time.perf_counter() - t0,
        }
        improved = meta.best_val_loss is None or val_loss < meta.best_val_loss - 1e-6
        if improved:
            best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        best_epoch = epoch if improved else meta.best_epoch
        # Early stopping counts only once every elastic dimension is being trained.
        opened_at = _all_open_epoch(settings)
        stalled = epoch - max(best_epoch, opened_at) >= settings.patience
        reason = "early stopping" if stalled else ("max epochs" if epoch >= settings.max_epochs else "")
        meta = dataclasses.replace(
            meta,
            epoch=epoch,
            best_epoch=best_epoch,
            best_val_loss=val_loss if improved else meta.best_val_loss,
            history=meta.history + (record,),
            complete=bool(reason),
            stopped_reason=reason,
            train_seconds=meta.train_seconds + record["seconds"],
        )
        save_checkpoint(
            checkpoint,
            {
                "meta": meta.to_dict(),
                "model": net.state_dict(),
                "best_model": best_state,
                "optimizer": optimizer.state_dict(),
                "rng": _rng_state(gen, sampler),
            },
        )
        log.info("super-network epoch %d: %s", epoch, record)
        if progress is not None:
            last_report = time.perf_counter()
            rate = (last_report - run_t0) / max(epoch - start_epoch, 1)
            left = 0.0 if reason else rate * (settings.max_epochs - epoch)
            progress({
                **record,
                **_progress_record(epoch, settings, float(epoch), left, str(checkpoint)),
                "best_epoch": best_epoch,
            })
        if reason:
            break
    return TrainOutcome(str(checkpoint), meta, start_epoch)


#: Seconds between progress reports inside an epoch.
PROGRESS_EVERY_S = 10.0


def _progress_record(
    epoch: int, settings: SupernetTrainSettings, done: float, left: float, checkpoint: str, partial: bool = False
) -> dict[str, Any]:
    """Progress for the job table / app: fraction, a message and the estimated seconds left."""
    phase = PHASES[phase_at(settings, max(epoch - 1, 0))]
    what = "largest network only" if phase == "largest" else f"elastic up to {phase}"
    mins = left / 60.0
    return {
        "epoch": epoch,
        "max_epochs": settings.max_epochs,
        "fraction": min(done / settings.max_epochs, 1.0),
        "eta_seconds": left,
        "message": f"super-network epoch {epoch}/{settings.max_epochs} ({what}), about {mins:.1f} min left",
        "partial": partial,
        "checkpoint": checkpoint,
    }


def _all_open_epoch(settings: SupernetTrainSettings) -> int:
    """The first (1-based count of finished) epoch at which every elastic dimension is trained."""
    for e in range(settings.max_epochs):
        if phase_at(settings, e) == len(PHASES) - 1:
            return e
    return settings.max_epochs


def phase_smallest(space: SupernetSpaceConfig, open_dims: int) -> SubnetConfig:
    """The smallest sub-network with only the first ``open_dims`` elastic dimensions allowed to shrink."""
    big, low = largest(space), smallest(space)
    opened = set(PHASES[1 : 1 + open_dims])
    depths = low.depths if "depth" in opened else big.depths
    k = min(space.kernels) if "kernel" in opened else space.max_kernel
    e = min(space.expands) if "expand" in opened else max(space.expands)
    return SubnetConfig(
        stem_width=low.stem_width if "width" in opened else big.stem_width,
        depths=depths,
        widths=low.widths if "width" in opened else big.widths,
        kernels=tuple((k,) * d for d in depths),
        expands=tuple((e,) * d for d in depths),
    )


def _should_continue(meta: CheckpointMeta, settings: SupernetTrainSettings) -> bool:
    """A finished checkpoint trains on only when the new limits allow more epochs."""
    if meta.epoch >= settings.max_epochs:
        return False
    return meta.epoch - meta.best_epoch < settings.patience


def load_trained(path: str | Path) -> tuple[SuperNet, CheckpointMeta]:
    """A fresh (uncached) super-network with the checkpoint's best weights, for fine-tuning or tests."""
    data = load_checkpoint(path)
    meta = CheckpointMeta.from_dict(data["meta"])
    if meta.schema_version != SCHEMA_VERSION:
        raise CheckpointError(
            f"{path} has schema version {meta.schema_version}; train the super-network again"
        )
    net = SuperNet(meta.space_config, meta.n_classes, meta.image_size)
    net.load_state_dict(data["best_model"])
    net.measure_size = meta.measure_size
    return net.eval(), meta
