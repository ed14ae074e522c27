"""Train one candidate with the run's fixed hyperparameters, then measure everything -> Metrics.

Owns :class:`EvalRequest` (what to evaluate: data set, architecture, settings, Env),
:func:`evaluate` (prepare -> build -> train -> measure), :func:`train_model` (the
training loop with early stopping), :func:`evaluate_model` (measure an already trained
model: accuracy, balanced accuracy, per-class recall, per-group confusion matrices,
fairness, hardware), :func:`run_request` (the worker's ``"evaluate"`` job handler) and
the per-process cache of prepared data sets.

Decisions (DESIGN.md is silent):

- Input pipeline: the prepared uint8 tensor stays in memory (on the GPU when training
  there); each batch is converted to float on the fly, scaled to [0, 1] and normalized
  per channel with the mean/std of the *training split* (:func:`channel_stats`). With
  ``augment`` each image is flipped horizontally and, independently, vertically with
  probability 1/2 (lesions have no orientation).
- Optimizers: adam / adamw as given; sgd with momentum 0.9 (plain SGD at these budgets
  barely moves). Loss: cross-entropy. Learning-rate schedule (``TrainSettings.schedule``),
  stepped every batch over ``max_epochs``: ``constant``; ``onecycle`` (torch's OneCycleLR,
  peak :data:`ONECYCLE_PEAK` x ``lr``, a quarter of the steps warming up, then annealed
  to near zero: converges in fewer epochs); ``cosine`` (cosine from ``lr`` to 0). Early
  stopping may end a schedule before its last step.
- Train loss/accuracy are the running means over the epoch's batches (training mode),
  as Keras and the FL-NAS reference report them; validation is measured in eval mode.
- Early stopping: stop when validation loss has not improved (strictly) for
  ``patience`` epochs; the weights of the best-validation epoch are restored. Reported
  train/validation numbers are those of that best epoch.
- Determinism: the model initialisation, dropout, batch order and flips are seeded from
  ``TrainSettings.seed`` (the init seed); the split (and subsample) from
  ``TrainSettings.split_seed``, fixed for a run, so two init seeds are measured on the same
  test set and their spread is training noise only. On the CPU the same request at the same
  torch thread count gives identical weights and identical non-timing metrics (timings are
  measurements and vary); another thread count changes the summation order and so the
  numbers, which is why ``Metrics.threads`` records it.
- channels_last: on for the CPU. Measured with :func:`train_epoch` on this 2-core machine
  at 64 px, interleaved A/B rounds: small default CNN 8.4 -> 6.9 s per epoch (faster in
  5 of 6 rounds), MobileNetV2 53 -> 31 s, ResNet-18 training step 0.43 -> 0.60 of the
  GEMM peak (benchmarks/bench_evaluator.py prints both variants). On CUDA it has not been
  measured here, so it stays off there until it is (flip :data:`CHANNELS_LAST`).
  Latency and memory are measured in the same format the model was trained in.
- Confusion matrices: one per group of every attribute (``unknown`` included), preceded
  by the whole test set as attribute ``"all"``, group ``"all"``.
- Cancellation: ``should_stop()`` is polled before every batch; when it returns True
  :class:`Cancelled` is raised and nothing is written.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nas_core.data.index import AttributeSpec
from nas_core.data.prepare import INTERSECTIONS, prepare
from nas_core.data.ref import DatasetRef
from nas_core.errors import UserError
from nas_core.jobresult import JobResult, Progress
from nas_core.jobs import JobStopped
from nas_core.metrics.fairness import (
    MIN_GROUP_SIZE,
    balanced_accuracy,
    confusion_matrix,
    fairness_report,
    per_class_recall,
)
from nas_core.metrics.hardware import measure_hardware, resolve_device, static_costs
from nas_core.models.baselines import build_any
from nas_core.models.export import save_state
from nas_core.records import Metrics
from nas_core.settings import Env, TrainSettings
from nas_core.space import ArchSpec

log = logging.getLogger(__name__)

BASELINE_PREFIX = "baseline:"
#: Batch size of the no-grad passes (validation, test); large is fine: no activations are kept.
EVAL_BATCH = 256
#: How many prepared data sets one process keeps (a worker usually serves one run's data set).
PREPARED_CACHE_SIZE = 2
#: One-cycle schedule: peak learning rate as a multiple of TrainSettings.lr.
ONECYCLE_PEAK = 2.0
#: Per device type: whether to train and run in the channels_last memory format (see the docstring).
CHANNELS_LAST = {"cpu": True, "cuda": False}


class EvalError(UserError):
    """An evaluation request that cannot run as given (the message says which field and why)."""


class Cancelled(JobStopped):
    """The evaluation was stopped through ``should_stop``; no result exists.

    A :class:`nas_core.jobs.JobStopped`, so the worker treats it as a requested stop.
    """


@dataclass(frozen=True)
class EpochProgress:
    """What the evaluator reports after every epoch."""

    epoch: int  # 1-based
    max_epochs: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for the worker's progress column)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainResult:
    """The outcome of :func:`train_model`: numbers of the best-validation epoch."""

    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    epochs: int  # epochs run
    best_epoch: int  # 1-based epoch whose weights were kept
    seconds: float
    history: tuple[EpochProgress, ...] = ()
    precision: str = ""  # arithmetic of the training forward passes: fp32 | bf16 ("" nothing trained)


def _attribute_to_dict(a: AttributeSpec) -> dict[str, Any]:
    return {"name": a.name, "column": a.column, "kind": a.kind, "bins": list(a.bins), "labels": list(a.labels)}


def _attribute_from_dict(d: Mapping[str, Any]) -> AttributeSpec:
    try:
        return AttributeSpec(
            name=str(d["name"]),
            column=str(d["column"]),
            kind=str(d.get("kind", "categorical")),
            bins=tuple(float(b) for b in d.get("bins", (30.0, 65.0))),
            labels=tuple(str(x) for x in d.get("labels", ("young", "middle", "old"))),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise EvalError(f"attribute {dict(d)!r} is invalid ({exc}); give name, column and optionally "
                        "kind, bins, labels") from exc


@dataclass(frozen=True)
class EvalRequest:
    """Everything one evaluation needs; travels to the worker as :meth:`to_dict`.

    Attributes:
        dataset: the run's :class:`~nas_core.data.ref.DatasetRef` (how every job reads its data), or a
            data set folder (format detected; the ``evaluate`` CLI and old payloads).
        arch: an :class:`ArchSpec` (a spec dict is parsed into one) or ``"baseline:NAME"``.
        train: the run's fixed training settings (image size, seed, epochs, ...).
        env: the deployment target on which hardware costs are measured.
        attributes: demographic attributes to derive; None = the data set's defaults.
        weights_out: where to save the best weights (a state_dict), or None.
        device: where to train: cpu, cuda or auto (CUDA when present).
        cache_dir: decoded-image cache folder, or None for the default.
    """

    dataset: DatasetRef | str
    arch: ArchSpec | str
    train: TrainSettings = field(default_factory=TrainSettings)
    env: Env = field(default_factory=Env)
    attributes: tuple[AttributeSpec, ...] | None = None
    weights_out: str | None = None
    device: str = "auto"
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.dataset, Mapping):
            object.__setattr__(self, "dataset", DatasetRef.from_dict(self.dataset))
        elif not isinstance(self.dataset, DatasetRef):
            object.__setattr__(self, "dataset", str(self.dataset))
        arch = self.arch
        if isinstance(arch, Mapping):
            object.__setattr__(self, "arch", ArchSpec.from_dict(arch))
        elif isinstance(arch, str):
            name = arch.strip()
            if not name.startswith(BASELINE_PREFIX):
                name = BASELINE_PREFIX + name
            object.__setattr__(self, "arch", name.lower())
        elif not isinstance(arch, ArchSpec):
            raise EvalError(f"arch must be a spec or 'baseline:NAME', got {type(arch).__name__}")
        if self.attributes is not None:
            object.__setattr__(self, "attributes", tuple(self.attributes))
        if self.device not in ("cpu", "cuda", "auto"):
            raise EvalError(f"device {self.device!r} is not supported; use cpu, cuda or auto")

    @property
    def baseline(self) -> str | None:
        """The baseline name when the request is for a baseline, else None."""
        return self.arch[len(BASELINE_PREFIX):] if isinstance(self.arch, str) else None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; ``arch`` is a spec dict or ``"baseline:NAME"``."""
        return {
            "dataset": self.dataset.to_dict() if isinstance(self.dataset, DatasetRef) else self.dataset,
            "arch": self.arch if isinstance(self.arch, str) else self.arch.to_dict(),
            "train": self.train.to_dict(),
            "env": self.env.to_dict(),
            "attributes": None if self.attributes is None else [_attribute_to_dict(a) for a in self.attributes],
            "weights_out": self.weights_out,
            "device": self.device,
            "cache_dir": self.cache_dir,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalRequest:
        """Inverse of :meth:`to_dict`.

        Raises:
            EvalError / SettingsError / SpecError: a missing or invalid field, named.
        """
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - allowed
        if unknown:
            raise EvalError(f"evaluation request: unknown field(s) {sorted(unknown)}; allowed: "
                            f"{', '.join(sorted(allowed))}")
        for required in ("dataset", "arch"):
            if required not in data:
                raise EvalError(f"evaluation request: field {required!r} is missing")
        attrs = data.get("attributes")
        return cls(
            dataset=data["dataset"],  # a DatasetRef dict (validated) or a folder path
            arch=data["arch"],
            train=TrainSettings.from_dict(data.get("train") or {}),
            env=Env.from_dict(data.get("env") or {}),
            attributes=None if attrs is None else tuple(_attribute_from_dict(a) for a in attrs),
            weights_out=data.get("weights_out"),
            device=str(data.get("device", "auto")),
            cache_dir=data.get("cache_dir"),
        )


# ---------------------------------------------------------------------------------------------
# Prepared data, cached per process


_prepared_cache: OrderedDict[tuple, Any] = OrderedDict()
_prepared_lock = threading.Lock()


def load_prepared(request: EvalRequest) -> Any:
    """The request's PreparedData, from this process's cache when the same data was asked for."""
    t = request.train
    dataset = request.dataset
    key = (
        dataset if isinstance(dataset, DatasetRef) else os.path.abspath(dataset),
        t.image_size,
        t.split_seed,
        t.subsample,
        request.attributes,
        request.cache_dir,
        t.intersectional,
    )
    with _prepared_lock:
        if key in _prepared_cache:
            _prepared_cache.move_to_end(key)
            return _prepared_cache[key]
    prepared = prepare(
        dataset,
        image_size=t.image_size,
        seed=t.split_seed,  # the split is the run's, whatever the init seed
        cache_dir=request.cache_dir,
        subsample=t.subsample,
        attributes=request.attributes,
        intersections=INTERSECTIONS if t.intersectional else (),
    )
    with _prepared_lock:
        _prepared_cache[key] = prepared
        while len(_prepared_cache) > PREPARED_CACHE_SIZE:
            _prepared_cache.popitem(last=False)
    return prepared


def thread_note(threads: Sequence[int]) -> str | None:
    """A warning when results were computed at different torch thread counts, else None.

    Args:
        threads: ``Metrics.threads`` of the results shown together (0 = not recorded, ignored).
    """
    counts = sorted({int(t) for t in threads if t})
    if len(counts) < 2:
        return None
    return (f"these results were computed with different torch thread counts ({', '.join(map(str, counts))}); "
            "a seed reproduces a result exactly only at the same count, so small differences may be "
            "summation order, not the network")


def precision_note(precisions: Sequence[str]) -> str | None:
    """A warning when results were trained in different arithmetic (``Metrics.precision``), else None.

    An empty value (recorded before the setting existed) counts as fp32; estimates and other results
    that trained nothing should be left out by the caller.
    """
    kinds = sorted({p or "fp32" for p in precisions})
    if len(kinds) < 2:
        return None
    return (f"these results were trained in different arithmetic ({', '.join(kinds)}); on the fidelity "
            "benchmark bf16 moved test accuracy by 0.9 points (SD) against 4.1 between two fp32 seeds, "
            "so the difference is mostly noise, but a seed reproduces a result only in the same arithmetic")


def clear_prepared_cache() -> None:
    """Forget every cached data set (tests; freeing memory)."""
    with _prepared_lock:
        _prepared_cache.clear()


# ---------------------------------------------------------------------------------------------
# Input pipeline


def _split(prepared: Any, name: str) -> np.ndarray:
    # A copy: the split's arrays are read-only and torch warns on wrapping those.
    return np.array(getattr(prepared.split, name), dtype=np.int64)


def channel_stats(prepared: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (on the [0, 1] scale) of the training split's images."""
    images = prepared.images
    idx = torch.as_tensor(_split(prepared, "train"))
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    count = 0
    for start in range(0, len(idx), 1024):  # chunks: a float copy of all images may not fit
        x = images[idx[start:start + 1024]].to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / max(count, 1)
    std = (total_sq / max(count, 1) - mean * mean).clamp_min(1e-12).sqrt().clamp_min(1e-3)
    return mean.float(), std.float()


@dataclass(frozen=True)
class InputTransform:
    """uint8 images -> normalized float batches on a device (shared with the super-network)."""

    mean: torch.Tensor
    std: torch.Tensor
    channels_last: bool = False
    # resize the normalized batch to size x size px (bilinear, antialiased) when it is another size:
    # a super-network trained at a lower resolution is validated and measured at that resolution
    size: int | None = None

    @classmethod
    def for_data(cls, prepared: Any, device: torch.device, channels_last: bool = False) -> InputTransform:
        """The transform of ``prepared``'s training split statistics, placed on ``device``."""
        mean, std = channel_stats(prepared)
        return cls(mean.view(1, -1, 1, 1).to(device), std.view(1, -1, 1, 1).to(device), channels_last)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.mean.device, non_blocking=True).float().div_(255.0)
        x = x.sub_(self.mean).div_(self.std)
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def _flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    b = x.shape[0]
    h = (torch.rand(b, generator=gen) < 0.5).to(x.device)
    v = (torch.rand(b, generator=gen) < 0.5).to(x.device)
    x = torch.where(h.view(-1, 1, 1, 1), x.flip(3), x)
    return torch.where(v.view(-1, 1, 1, 1), x.flip(2), x)


def bf16_is_native(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware (a CPU with AVX512-BF16 or AMX; CUDA: never
    assumed, it has not been measured here)."""
    if device.type != "cpu":
        return False
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(check()) for check in checks if check is not None)


def has_depthwise(model: nn.Module | None) -> bool:
    """Whether ``model`` has a grouped (e.g. depthwise) convolution."""
    return model is not None and any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in model.modules())


def resolve_precision(precision: str, device: torch.device, model: nn.Module | None = None) -> str:
    """``TrainSettings.precision`` for ``model`` on ``device``: "fp32" or "bf16".

    "auto" is bf16 where the CPU computes it natively and ``model`` has no grouped convolution:
    on the fidelity benchmark (``benchmarks/bench_precision.py``) bf16 trained plain and residual
    networks in 0.56-0.99x the CPU time of fp32 but depthwise (mbconv, dwsep) ones in 2.3-4.3x.
    """
    if precision == "auto":
        return "bf16" if bf16_is_native(device) and not has_depthwise(model) else "fp32"
    return precision


def make_optimizer(model: nn.Module, s: TrainSettings) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if s.optimizer == "adam":
        return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay)
    if s.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    return torch.optim.SGD(params, lr=s.lr, momentum=0.9, weight_decay=s.weight_decay)


def make_scheduler(
    opt: torch.optim.Optimizer, s: TrainSettings, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The per-batch learning-rate schedule of ``s`` over ``s.max_epochs`` (None = constant)."""
    total = max(1, steps_per_epoch * s.max_epochs)
    if s.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.lr * ONECYCLE_PEAK, total_steps=total,
                                                   pct_start=0.25, cycle_momentum=s.optimizer == "sgd")
    if s.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    return None


def predict(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    transform: InputTransform,
    batch_size: int = EVAL_BATCH,
) -> tuple[np.ndarray, float, float]:
    """Predicted classes, mean cross-entropy and accuracy of ``model`` (eval mode) on ``images``."""
    was_training = model.training
    model.eval()
    preds, loss_sum = [], 0.0
    device = transform.mean.device
    try:
        with torch.inference_mode():
            for start in range(0, images.shape[0], batch_size):
                x = transform(images[start:start + batch_size])
                y = labels[start:start + batch_size].to(device)
                logits = model(x)
                loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
                preds.append(logits.argmax(1).cpu())
    finally:
        model.train(was_training)
    n = images.shape[0]
    pred = torch.cat(preds).numpy() if preds else np.zeros(0, dtype=np.int64)
    acc = float((pred == labels.numpy()).mean()) if n else float("nan")
    return pred, loss_sum / max(n, 1), acc


def _check_stop(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise Cancelled("evaluation cancelled")


def train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    train_idx: torch.Tensor,
    transform: InputTransform,
    settings: TrainSettings,
    gen: torch.Generator,
    should_stop: Callable[[], bool] | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> tuple[float, float]:
    """One epoch over ``train_idx`` in a seeded order; returns the running (loss, accuracy).

    ``images``/``labels`` are the whole uint8 set and its labels, on the training device or the CPU;
    ``scheduler`` (if any) is stepped after every optimizer step.
    """
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    bf16 = resolve_precision(settings.precision, labels.device, model) == "bf16"
    order = train_idx[torch.randperm(len(train_idx), generator=gen)]
    # Sums stay on the device: a float() per batch would wait for the GPU every step.
    loss_sum = torch.zeros((), device=labels.device)
    correct = torch.zeros((), dtype=torch.int64, device=labels.device)
    seen = 0
    for start in range(0, len(order), settings.batch_size):
        _check_stop(should_stop)
        batch = order[start:start + settings.batch_size]
        if len(batch) < 2 and seen > 0:
            continue  # batch norm cannot train on one sample; the image is seen next epoch
        bi = batch.to(images.device)
        x = transform(images[bi])
        if settings.augment:
            x = _flip(x, gen)
        y = labels[bi]
        opt.zero_grad(set_to_none=True)
        with torch.autocast(labels.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
            loss = loss_fn(logits, y)
        loss.backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach() * len(batch)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(batch)
    return float(loss_sum) / max(seen, 1), int(correct) / max(seen, 1)


def train_model(
    model: nn.Module,
    prepared: Any,
    settings: TrainSettings,
    device: torch.device,
    progress: Callable[[EpochProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    channels_last: bool | None = None,
) -> TrainResult:
    """Train ``model`` in place with early stopping; it ends holding the best-validation weights.

    Raises:
        Cancelled: ``should_stop()`` returned True.
        EvalError: the split has no training or validation samples.
    """
    cl = CHANNELS_LAST.get(device.type, False) if channels_last is None else channels_last
    tr_idx = torch.as_tensor(_split(prepared, "train"))
    va_idx = torch.as_tensor(_split(prepared, "val"))
    if len(tr_idx) == 0 or len(va_idx) == 0:
        raise EvalError(f"the split has {len(tr_idx)} training and {len(va_idx)} validation images; "
                        "both must be non-empty: use a larger data set or subsample")
    images = prepared.images
    labels = prepared.labels.to(torch.int64)
    if device.type == "cuda":
        # The whole uint8 set is small next to GPU memory; keeping it there removes host copies.
        images = images.to(device)
        labels = labels.to(device)
    transform = InputTransform.for_data(prepared, device, cl)
    model.to(device)
    if cl:
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, settings)
    scheduler = make_scheduler(opt, settings, math.ceil(len(tr_idx) / settings.batch_size))
    gen = torch.Generator().manual_seed(settings.seed)
    va_images, va_labels = images[va_idx.to(images.device)], labels[va_idx.to(labels.device)].cpu()

    best_loss, best_state, best_epoch, bad = math.inf, None, 0, 0
    best: EpochProgress | None = None
    history: list[EpochProgress] = []
    t0 = time.perf_counter()
    epoch = 0
    for epoch in range(1, settings.max_epochs + 1):
        train_loss, train_acc = train_epoch(model, opt, images, labels, tr_idx, transform, settings, gen,
                                            should_stop, scheduler)
        _check_stop(should_stop)
        _, val_loss, val_acc = predict(model, va_images, va_labels, transform)
        rec = EpochProgress(epoch, settings.max_epochs, train_loss, train_acc, val_loss, val_acc)
        history.append(rec)
        log.info("epoch %d/%d train_loss %.4f val_loss %.4f val_acc %.4f", epoch, settings.max_epochs,
                 rec.train_loss, val_loss, val_acc)
        if progress is not None:
            progress(rec)
        if val_loss < best_loss:
            best_loss, best_epoch, best, bad = val_loss, epoch, rec, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if bad >= settings.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    assert best is not None  # at least one epoch ran: max_epochs >= 1
    return TrainResult(
        train_loss=best.train_loss,
        train_acc=best.train_acc,
        val_loss=best.val_loss,
        val_acc=best.val_acc,
        epochs=epoch,
        best_epoch=best_epoch,
        seconds=time.perf_counter() - t0,
        history=tuple(history),
        precision=resolve_precision(settings.precision, device, model),
    )


def _input_shape(prepared: Any) -> tuple[int, int, int]:
    return tuple(int(s) for s in prepared.images.shape[1:])  # type: ignore[return-value]


def evaluate_model(
    model: nn.Module,
    prepared: Any,
    env: Env | None = None,
    *,
    training: TrainResult | None = None,
    split: str = "test",
    device: torch.device | str | None = None,
    n_bootstrap: int = 200,
    seed: int = 0,
    estimate: bool = False,
    measure_costs: bool = True,
    transform: InputTransform | None = None,
    min_group_size: int = MIN_GROUP_SIZE,
) -> Metrics:
    """Measure a trained model on ``prepared``'s ``split`` -> one Metrics record.

    Args:
        model: the trained network.
        prepared: the PreparedData it was trained on.
        env: where hardware costs are measured (default Env()).
        training: the training outcome (train/val numbers, epochs); when None, validation loss
            and accuracy are measured here and training fields are None.
        split: "test" (default) or "val": the split whose predictions give test_acc, recall,
            confusion and fairness (the super-network estimates on validation while searching).
        device: where to run the predictions (default: the model's device).
        n_bootstrap: resamples for the fairness intervals.
        seed: seeds the bootstrap and the hardware inputs.
        estimate: mark the result as a super-network estimate.
        measure_costs: False skips latency and memory (params/MACs/size are always measured).
        transform: the input transform used in training (default: the training split's stats).
        min_group_size: test groups smaller than this are flagged and left out of Unfairness.
    """
    env = env or Env()
    if device is None:
        try:
            dev = next(model.parameters()).device
        except StopIteration:
            dev = torch.device("cpu")
    else:
        dev = torch.device(device) if isinstance(device, str) else device
    model.to(dev)
    if transform is None:
        transform = InputTransform.for_data(prepared, dev, CHANNELS_LAST.get(dev.type, False))
    class_names = tuple(str(c) for c in prepared.class_names)
    labels = prepared.labels.to(torch.int64).cpu()
    if split not in ("test", "val"):
        raise EvalError(f"split must be 'test' or 'val', got {split!r}")
    idx = _split(prepared, split)
    if len(idx) == 0:
        raise EvalError(f"the {split} split is empty; use a larger data set")
    t_idx = torch.as_tensor(idx)
    y_true = labels[t_idx]
    y_pred, _, acc = predict(model, prepared.images[t_idx], y_true, transform)
    y_true_np = y_true.numpy()
    if training is None:
        va = torch.as_tensor(_split(prepared, "val"))
        _, val_loss, val_acc = predict(model, prepared.images[va], labels[va], transform) if len(va) else (
            None, None, None)
    else:
        val_loss, val_acc = training.val_loss, training.val_acc

    k = len(class_names)
    cm_all = confusion_matrix(y_true_np, y_pred, k)
    attrs = [(name, np.asarray(values)[idx]) for name, values in prepared.attributes]
    fairness = fairness_report(y_true_np, y_pred, attrs, class_names, n_bootstrap=n_bootstrap, seed=seed,
                               min_group_size=min_group_size)
    confusion = [("all", "all", _rows(cm_all))]
    for name, values in attrs:
        for g in fairness.groups:
            if g.attribute == name:
                mask = values == g.group
                confusion.append((name, g.group, _rows(confusion_matrix(y_true_np[mask], y_pred[mask], k))))

    if measure_costs:
        cl = CHANNELS_LAST.get(resolve_device(env.device).type, False)
        hardware = measure_hardware(model, _input_shape(prepared), env, seed=seed, channels_last=cl)
    else:
        hardware = static_costs(model, _input_shape(prepared), env)
    return Metrics(
        train_loss=None if training is None else training.train_loss,
        train_acc=None if training is None else training.train_acc,
        val_loss=val_loss,
        val_acc=val_acc,
        test_acc=acc,
        balanced_acc=balanced_accuracy(cm_all),
        per_class_recall=tuple(zip(class_names, per_class_recall(cm_all), strict=True)),
        fairness=fairness,
        hardware=hardware,
        epochs=0 if training is None else training.epochs,
        best_epoch=0 if training is None else training.best_epoch,
        train_seconds=0.0 if training is None else training.seconds,
        estimate=estimate,
        class_names=class_names,
        confusion=tuple(confusion),
        threads=torch.get_num_threads(),
        precision="" if training is None else training.precision,
    )


def _rows(cm: np.ndarray) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(int(v) for v in row) for row in cm)


def build_for_request(request: EvalRequest, input_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    """The freshly initialised network of ``request`` (seeded by the request's seed)."""
    torch.manual_seed(request.train.seed)
    return build_any(request.arch, input_shape, n_classes)


def evaluate(
    request: EvalRequest,
    progress: Callable[[EpochProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    prepared: Any = None,
) -> Metrics:
    """Prepare the data, build, train with early stopping, measure everything.

    Args:
        request: what to evaluate.
        progress: called with an :class:`EpochProgress` after every epoch.
        should_stop: polled before every batch; True cancels.
        prepared: an already prepared data set to use instead of loading ``request.dataset``.

    Raises:
        Cancelled: should_stop() returned True.
        UserError: a bad data set, spec, baseline name or device (the message says which).
    """
    device = resolve_device(request.device)
    resolve_device(request.env.device)  # fail before training, not after
    if prepared is None:
        prepared = load_prepared(request)
    shape = _input_shape(prepared)
    n_classes = len(prepared.class_names)
    model = build_for_request(request, shape, n_classes)
    _check_stop(should_stop)
    training = train_model(model, prepared, request.train, device, progress, should_stop)
    _check_stop(should_stop)
    if request.weights_out:
        save_state(model, request.weights_out)
    return evaluate_model(
        model,
        prepared,
        request.env,
        training=training,
        device=device,
        n_bootstrap=request.train.n_bootstrap,
        seed=request.train.seed,
        min_group_size=request.train.min_group_size,
    )


#: What a training job reports before its first epoch ends, so that its bar says what it is doing.
STARTING = Progress(fraction=0.0, message="starting: loading the data, building the model, first epoch")


def run_request(
    payload: Mapping[str, Any],
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> JobResult:
    """The worker's ``"evaluate"`` job handler: ``EvalRequest.to_dict()`` in, a metrics :class:`JobResult` out.

    It first reports :data:`STARTING` (fraction 0); then each epoch a :class:`~nas_core.jobresult.Progress`:
    fraction = epochs done / max epochs (early stopping may end the job before 1), message "epoch E/N",
    detail :meth:`EpochProgress.to_dict`.
    """
    request = EvalRequest.from_dict(payload)
    if progress is not None:
        progress(STARTING)  # the data and the model take seconds before the first epoch reports

    def forward(rec: EpochProgress) -> None:
        if progress is not None:
            progress(epoch_progress(rec))

    return JobResult.metrics(evaluate(request, forward, should_stop))


def epoch_progress(rec: EpochProgress, **extra: Any) -> Progress:
    """The :class:`~nas_core.jobresult.Progress` of one training epoch (``extra`` joins its detail)."""
    return Progress(fraction=rec.epoch / rec.max_epochs, message=f"epoch {rec.epoch}/{rec.max_epochs}",
                    detail={**rec.to_dict(), **extra})
