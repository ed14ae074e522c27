"""Run settings that several parts of the engine share: training hyperparameters and the target Env.

Owns :class:`TrainSettings` (the fixed hyperparameters every candidate of a run is
trained with) and :class:`Env` (the deployment target on which hardware costs are
measured). Both are frozen and convert to/from plain dicts for the store and the worker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nas_core.errors import UserError


class SettingsError(UserError):
    """A settings mapping has unknown fields or values of the wrong type."""


def _from_mapping(cls: type, data: Mapping[str, Any], what: str) -> Any:
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - fields
    if unknown:
        raise SettingsError(f"{what}: unknown field(s) {sorted(unknown)}; allowed: {', '.join(sorted(fields))}")
    try:
        return cls(**dict(data))
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{what}: {exc}") from exc


#: ``TrainSettings.precision`` values, and what they mean (the CLIs' help).
PRECISIONS = ("fp32", "bf16", "auto")
PRECISION_HELP = ("training arithmetic (default fp32; bf16: autocast of the forward pass, measurements stay fp32; "
                  "auto: bf16 on a CPU with native bf16, for networks without depthwise convolutions)")


@dataclass(frozen=True)
class TrainSettings:
    """Hyperparameters shared by every candidate of a run (FL-NAS: same settings for all)."""

    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3  # learning rate
    weight_decay: float = 0.0  # L2 / decoupled weight decay
    batch_size: int = 64  # training batch size
    max_epochs: int = 10  # hard cap on epochs
    patience: int = 3  # stop when validation loss has not improved for this many epochs
    image_size: int = 64  # square training resolution (the cache is built at this size)
    seed: int = 0  # init seed: seeds the initialization, dropout, batch order and flips
    split_seed: int = 0  # seeds the train/val/test split and the subsample; fixed for a whole run
    augment: bool = True  # random flips (lesions have no orientation)
    schedule: str = "constant"  # learning rate over max_epochs: constant | onecycle | cosine (per batch)
    subsample: int | None = None  # balanced subsample of this many images (None = all)
    n_bootstrap: int = 200  # bootstrap resamples for confidence intervals
    min_group_size: int = 10  # test groups smaller than this are flagged and left out of Unfairness
    intersectional: bool = False  # also report the sex x age groups (data.prepare.INTERSECTIONS), in every metric
    # training arithmetic: fp32 | bf16 (autocast of the forward pass and loss; weights, optimizer and
    # every measurement stay fp32) | auto (bf16 on a CPU with native bf16 instructions for networks
    # without depthwise convolutions, which bf16 slows there; else fp32). See evaluator.resolve_precision.
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise SettingsError(f"optimizer {self.optimizer!r} is not supported; use adam, adamw or sgd")
        for name in ("batch_size", "max_epochs", "patience", "image_size"):
            if int(getattr(self, name)) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.schedule not in ("constant", "onecycle", "cosine"):
            raise SettingsError(f"schedule {self.schedule!r} is not supported; use constant, onecycle or cosine")
        if int(self.min_group_size) < 0:
            raise SettingsError(f"min_group_size must be 0 or more, got {self.min_group_size}")
        if not self.lr > 0:
            raise SettingsError(f"lr must be positive, got {self.lr}")
        if self.precision not in PRECISIONS:
            raise SettingsError(f"precision {self.precision!r} is not supported; use fp32, bf16 or auto")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict; ``intersectional`` only when on and ``precision`` only when not fp32, so the
        payloads and cache keys of runs without them stay as they were."""
        d = dataclasses.asdict(self)
        if not d["intersectional"]:
            del d["intersectional"]
        if d["precision"] == "fp32":
            del d["precision"]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainSettings:
        """Inverse of :meth:`to_dict`; raises SettingsError on unknown fields."""
        return _from_mapping(cls, data, "training settings")


@dataclass(frozen=True)
class Env:
    """The deployment target: where latency, throughput and memory are measured."""

    device: str = "cpu"  # cpu | cuda | auto (cuda when available)
    threads: int = 2  # intra-op threads for timing on the CPU
    batch_size: int = 2  # inference batch size for latency (the FL-NAS paper used 2)
    warmup: int = 3  # untimed runs before timing
    repeats: int = 20  # timed runs; the median is reported
    latency_budget_s: float | None = None  # per-image latency budget, None = no budget
    memory_budget_mb: float | None = None  # peak inference memory budget, None = no budget

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda", "auto"):
            raise SettingsError(f"device {self.device!r} is not supported; use cpu, cuda or auto")
        for name in ("threads", "batch_size", "repeats"):
            if int(getattr(self, name)) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}")

    def describe(self) -> str:
        """One line for prompts and reports."""
        parts = [f"device={self.device}", f"threads={self.threads}", f"batch size={self.batch_size}"]
        if self.latency_budget_s is not None:
            parts.append(f"latency budget={self.latency_budget_s:g} s/image")
        if self.memory_budget_mb is not None:
            parts.append(f"memory budget={self.memory_budget_mb:g} MB")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Env:
        """Inverse of :meth:`to_dict`; raises SettingsError on unknown fields."""
        return _from_mapping(cls, data, "env")
