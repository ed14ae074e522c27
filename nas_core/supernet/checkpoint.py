"""Super-network checkpoints on disk: atomic writes, safe loads, metadata checks, a module cache.

Owns the checkpoint file format (one ``torch.save`` of a dict of plain data and
tensors, loadable with ``weights_only=True``), :class:`CheckpointMeta` (what a
checkpoint says about itself: data set hash, image size, space, schema version,
epochs, whether training finished, the Kendall tau of its estimates),
:func:`save_checkpoint` (tmp file + fsync + rename, so a crash never leaves a
half-written checkpoint under the real name), :func:`load_checkpoint`,
:func:`check_usable` (the refusals: another data set, an older schema, not yet
trained) and :func:`load_supernet` (a per-process cache so a worker loads a
checkpoint once, reloaded only when the file changes).

Layout of the file::

    {"meta": CheckpointMeta.to_dict(), "model": state_dict (current weights),
     "best_model": state_dict (best validation weights), "optimizer": state_dict,
     "rng": {"torch": ByteTensor, "generator": ByteTensor, "python": [...]}}
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nas_core.errors import UserError
from nas_core.supernet.network import SuperNet
from nas_core.supernet.space import SCHEMA_VERSION, SupernetSpaceConfig

log = logging.getLogger(__name__)


class CheckpointError(UserError):
    """A super-network checkpoint is missing, unreadable, or does not fit the run."""


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint records about itself (all JSON-able)."""

    schema_version: int
    dataset_hash: str  # PreparedData.dataset_hash of the data set it was trained on
    image_size: int  # square training resolution
    seed: int  # split seed (the run's seed): measurements must use the same split
    n_classes: int
    class_names: tuple[str, ...]
    space: Mapping[str, Any]  # SupernetSpaceConfig.to_dict()
    settings: Mapping[str, Any]  # SupernetTrainSettings.to_dict()
    subsample: int | None = None  # balanced subsample size used by prepare (None = all)
    dataset: str = ""  # path or name of the data set, for messages
    epoch: int = 0  # epochs completed
    best_epoch: int = 0  # epoch of the best largest-network validation loss
    best_val_loss: float | None = None
    complete: bool = False  # True once training ended (early stop or max epochs)
    stopped_reason: str = ""  # "early stopping", "max epochs", or "" while training
    history: tuple[Mapping[str, Any], ...] = ()  # one dict per epoch (losses, accuracies, seconds)
    kendall_tau: float | None = None  # rank agreement of estimates with from-scratch accuracy
    kendall_n: int = 0  # sub-networks behind kendall_tau
    train_seconds: float = 0.0
    # supernet calibrate's figures: {"figures": {accuracy: {tau, ceiling_tau, ...}, unfairness: ...},
    # "n", "seeds", "cpu_seconds", "seconds", "trained"}; None until measured
    calibration: Mapping[str, Any] | None = None
    # The input transform's training-split channel statistics ({"mean": [...], "std": [...]}), so a
    # measuring process need not recompute them over every training image; None in older checkpoints
    input_stats: Mapping[str, Any] | None = None

    @property
    def space_config(self) -> SupernetSpaceConfig:
        """The space as a record."""
        return SupernetSpaceConfig.from_dict(self.space)

    @property
    def measure_size(self) -> int:
        """The resolution sub-networks are validated and measured at: the one the super-network trained at
        (``train_scale`` of ``image_size``; checkpoints from before that setting trained at ``image_size``).
        Trained at 32 px and measured at 64, the default super-network's largest sub-network read 45-50%
        validation accuracy on the default data set (83-86% at 32 px): the networks do not transfer across
        a 2x change of apparent object size without crops in training. Hardware costs stay at ``image_size``.
        """
        return train_size(self.image_size, float(dict(self.settings).get("train_scale", 1.0)))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["class_names"] = list(self.class_names)
        d["history"] = [dict(h) for h in self.history]
        d["space"] = dict(self.space)
        d["settings"] = dict(self.settings)
        d["calibration"] = None if self.calibration is None else dict(self.calibration)
        d["input_stats"] = None if self.input_stats is None else dict(self.input_stats)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckpointMeta:
        """Inverse of :meth:`to_dict`; unknown keys are ignored (newer minor fields)."""
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in data.items() if k in names}
        d["class_names"] = tuple(d.get("class_names", ()))
        d["history"] = tuple(dict(h) for h in d.get("history", ()))
        return cls(**d)


def save_checkpoint(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically (tmp file in the same folder, fsync, rename).

    Raises:
        CheckpointError: the folder cannot be created or written.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise CheckpointError(
            f"cannot write a checkpoint in {path.parent}: {exc}; choose a writable folder"
        ) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(dict(payload), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (no code is unpickled).

    Raises:
        CheckpointError: missing, unreadable, or not a super-network checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"no super-network checkpoint at {path}; train one first "
            "(python -m nas_core supernet train --db DB --dataset PATH)"
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user problem
        raise CheckpointError(
            f"{path} is not a readable super-network checkpoint ({exc}); train it again"
        ) from exc
    if not isinstance(data, dict) or "meta" not in data or "best_model" not in data:
        raise CheckpointError(
            f"{path} is not a super-network checkpoint (no meta/best_model); train it again"
        )
    return data


def read_meta(path: str | os.PathLike[str]) -> CheckpointMeta:
    """The metadata of the checkpoint at ``path``."""
    return CheckpointMeta.from_dict(load_checkpoint(path)["meta"])


def check_usable(
    meta: CheckpointMeta,
    *,
    dataset_hash: str | None = None,
    image_size: int | None = None,
    seed: int | None = None,
    require_complete: bool = True,
    path: str = "",
) -> None:
    """Refuse a checkpoint that would measure wrongly for this run.

    Raises:
        CheckpointError: older schema, another data set, another resolution or split seed,
            or training not finished; the message says what to do.
    """
    where = f" ({path})" if path else ""
    if meta.schema_version != SCHEMA_VERSION:
        raise CheckpointError(
            f"the super-network checkpoint{where} has schema version {meta.schema_version}, this code "
            f"needs {SCHEMA_VERSION}; train the super-network again"
        )
    if dataset_hash is not None and meta.dataset_hash != dataset_hash:
        raise CheckpointError(
            f"the super-network{where} was trained on another data set (hash {meta.dataset_hash[:12]}, "
            f"this run's is {dataset_hash[:12]}); train a super-network on this data set first"
        )
    if image_size is not None and meta.image_size != image_size:
        raise CheckpointError(
            f"the super-network{where} was trained at {meta.image_size} px, this run uses {image_size} px; "
            "train one at this image size or change the run's image size"
        )
    if seed is not None and meta.seed != seed:
        raise CheckpointError(
            f"the super-network{where} was trained on the split of seed {meta.seed}, this run uses seed "
            f"{seed}; its validation images would overlap this run's training images; train one for this seed"
        )
    if require_complete and not meta.complete:
        raise CheckpointError(
            f"the super-network{where} is not trained yet ({meta.epoch} epoch(s) so far); let "
            "'supernet train' finish (it resumes where it stopped) before measuring sub-networks"
        )


@dataclass
class _CacheEntry:
    mtime_ns: int
    size: int
    net: Any
    meta: CheckpointMeta


_CACHE: dict[str, _CacheEntry] = {}
_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True)
class LoadedSupernet:
    """A super-network with its best weights, ready to slice (shared: do not train it)."""

    net: Any  # nas_core.supernet.network.SuperNet
    meta: CheckpointMeta
    path: str = field(default="")


#: Lower-resolution training never goes below this (4 stride-2 stages leave 2 x 2 maps at 32 px).
MIN_TRAIN_SIZE = 32


def train_size(image_size: int, train_scale: float) -> int:
    """The resolution a super-network for ``image_size`` px trains at: ``train_scale`` of it, a multiple of
    8 px, never below :data:`MIN_TRAIN_SIZE` (nor above ``image_size``)."""
    return min(int(image_size), max(MIN_TRAIN_SIZE, round(int(image_size) * float(train_scale) / 8) * 8))


def load_supernet(path: str | os.PathLike[str]) -> LoadedSupernet:
    """The super-network of a checkpoint with its best weights, cached per process.

    The cache entry is reused while the file's mtime and size are unchanged, so a
    worker loads a checkpoint once and picks up a retrained one automatically.
    """
    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError:
        load_checkpoint(p)  # raises the helpful CheckpointError
        raise
    with _CACHE_LOCK:
        entry = _CACHE.get(str(p))
        if entry is None or entry.mtime_ns != st.st_mtime_ns or entry.size != st.st_size:
            data = load_checkpoint(p)
            meta = CheckpointMeta.from_dict(data["meta"])
            if meta.schema_version != SCHEMA_VERSION:
                check_usable(meta, require_complete=False, path=str(p))
            net = SuperNet(meta.space_config, meta.n_classes, meta.image_size)
            net.load_state_dict(data["best_model"])
            net.measure_size = meta.measure_size
            net.eval()
            entry = _CacheEntry(st.st_mtime_ns, st.st_size, net, meta)
            _CACHE[str(p)] = entry
            log.info("loaded super-network %s (epoch %d)", p, meta.epoch)
        return LoadedSupernet(net=entry.net, meta=entry.meta, path=str(p))


def clear_cache() -> None:
    """Forget every cached super-network (tests; memory)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def update_meta(path: str | os.PathLike[str], **changes: Any) -> CheckpointMeta:
    """Rewrite a checkpoint's metadata fields (e.g. ``kendall_tau``) atomically."""
    data = load_checkpoint(path)
    meta = dataclasses.replace(CheckpointMeta.from_dict(data["meta"]), **changes)
    data["meta"] = meta.to_dict()
    save_checkpoint(path, data)
    return meta
