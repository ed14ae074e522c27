"""Super-network jobs for the worker, and the payloads the session and the CLI queue.

Owns :class:`TrainRequest` / :class:`MeasureRequest` (the frozen records behind the
``supernet_train`` and ``supernet_measure`` job payloads), the two handlers
:func:`train` and :func:`measure` (``(payload, progress, should_stop) -> dict``, see
:mod:`nas_core.jobs`), :func:`make_payload` (what the session calls when a run's
evaluation mode is "supernet") and where checkpoints live (:func:`supernet_dir`,
:func:`checkpoint_path`, :func:`find_checkpoint`).

Decisions:
- Checkpoints live in ``$EQUINAS_SUPERNET_DIR`` or ``data/checkpoints/supernets/`` (git-ignored,
  next to the decoded-image cache), named by data set hash, resolution, split seed and space, so a
  run finds the super-network of its own data set and split without being told. A
  store row (``supernets`` table) registers each one for the app.
- :func:`make_payload` refuses, before anything is queued, a spec that is not a
  sub-network, a missing or unfinished super-network, one trained on another data set,
  resolution or split, or one of an older schema; :func:`measure` checks it all again
  against the data on disk when it runs, so nothing is measured wrongly.
- Estimates are measured on the validation split while searching (``split="val"``),
  never on the test split that the final report uses.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas_core.errors import UserError
from nas_core.settings import Env, TrainSettings
from nas_core.space import ArchSpec
from nas_core.supernet.checkpoint import CheckpointError, check_usable, load_supernet, read_meta
from nas_core.supernet.space import (
    SubnetConfig,
    SubnetError,
    SupernetSpaceConfig,
    check_config,
    spec_to_config,
    validate_subnet_spec,
)
from nas_core.supernet.train import Stopped, SupernetTrainSettings, train_supernet

log = logging.getLogger(__name__)

#: Environment variable that moves the checkpoint folder.
DIR_ENV = "EQUINAS_SUPERNET_DIR"


class PayloadError(UserError):
    """A super-network job payload is malformed (a field missing or of the wrong type)."""


def supernet_dir() -> Path:
    """Folder of super-network checkpoints: ``$EQUINAS_SUPERNET_DIR`` or ``data/checkpoints/supernets``."""
    return Path(os.environ.get(DIR_ENV) or "data/checkpoints/supernets")


def checkpoint_path(
    dataset_hash: str,
    image_size: int,
    seed: int,
    space: SupernetSpaceConfig | None = None,
    root: Path | None = None,
) -> Path:
    """The default checkpoint file of a data set, resolution, split seed and space."""
    space = space or SupernetSpaceConfig()
    root = Path(root) if root is not None else supernet_dir()
    return root / f"supernet_{dataset_hash[:16]}_{int(image_size)}px_seed{int(seed)}_{space.key}.pt"


def find_checkpoint(
    dataset_hash: str, image_size: int, seed: int, *, root: Path | None = None, store: Any = None
) -> Path | None:
    """The newest checkpoint for this data set, resolution and seed (trained or not), or None.

    Looks in the store's registry first (when a store is given), then in the folder.
    """
    if store is not None:
        from nas_core.supernet.registry import find_supernet

        rec = find_supernet(store, dataset_hash, image_size, seed, trained_only=False)
        if rec is not None:
            return Path(rec.path)
    root = Path(root) if root is not None else supernet_dir()
    found = sorted(
        root.glob(f"supernet_{dataset_hash[:16]}_{int(image_size)}px_seed{int(seed)}_*.pt"),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    return found[0] if found else None


# ---------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True)
class MeasureRequest:
    """One sub-network measurement (the ``supernet_measure`` payload)."""

    checkpoint: str  # super-network checkpoint file
    dataset: str  # data set folder (the one the super-network was trained on)
    config: SubnetConfig  # the sub-network
    train: TrainSettings = field(default_factory=TrainSettings)  # image size, seed, subsample, n_bootstrap
    env: Env = field(default_factory=Env)  # where hardware costs are measured
    dataset_hash: str = ""  # the hash make_payload saw; checked again when measuring
    split: str = "val"  # val while searching; test for the final report
    calib_batches: int = 4  # training batches for BN recalibration
    cache_dir: str | None = None  # decoded-image cache folder (None = default)

    def __post_init__(self) -> None:
        if self.split not in ("val", "test"):
            raise PayloadError(f"split must be 'val' or 'test', got {self.split!r}")
        if self.calib_batches < 1:
            raise PayloadError(f"calib_batches must be at least 1, got {self.calib_batches}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able payload."""
        return {
            "checkpoint": self.checkpoint,
            "dataset": self.dataset,
            "config": self.config.to_dict(),
            "train": self.train.to_dict(),
            "env": self.env.to_dict(),
            "dataset_hash": self.dataset_hash,
            "split": self.split,
            "calib_batches": self.calib_batches,
            "cache_dir": self.cache_dir,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MeasureRequest:
        """Inverse of :meth:`to_dict`.

        Raises:
            PayloadError / SubnetError / SettingsError: naming the bad field.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names - {"spec"}  # "spec" travels along for people reading the job
        if unknown:
            raise PayloadError(f"supernet_measure payload: unknown field(s) {sorted(unknown)}")
        for required in ("checkpoint", "dataset", "config"):
            if required not in data:
                raise PayloadError(f"supernet_measure payload: field {required!r} is missing")
        return cls(
            checkpoint=str(data["checkpoint"]),
            dataset=str(data["dataset"]),
            config=SubnetConfig.from_dict(data["config"]),
            train=TrainSettings.from_dict(data.get("train") or {}),
            env=Env.from_dict(data.get("env") or {}),
            dataset_hash=str(data.get("dataset_hash") or ""),
            split=str(data.get("split", "val")),
            calib_batches=int(data.get("calib_batches", 4)),
            cache_dir=data.get("cache_dir"),
        )


@dataclass(frozen=True)
class TrainRequest:
    """One super-network training (the ``supernet_train`` payload)."""

    dataset: str
    train: TrainSettings = field(default_factory=TrainSettings)  # image size, split seed, subsample
    space: SupernetSpaceConfig = field(default_factory=SupernetSpaceConfig)
    settings: SupernetTrainSettings = field(default_factory=SupernetTrainSettings)
    checkpoint: str | None = None  # None = checkpoint_path(...) in supernet_dir()
    db: str | None = None  # register the checkpoint in this store after every epoch
    device: str = "cpu"
    cache_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able payload."""
        return {
            "dataset": self.dataset,
            "train": self.train.to_dict(),
            "space": self.space.to_dict(),
            "settings": self.settings.to_dict(),
            "checkpoint": self.checkpoint,
            "db": self.db,
            "device": self.device,
            "cache_dir": self.cache_dir,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainRequest:
        """Inverse of :meth:`to_dict`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise PayloadError(f"supernet_train payload: unknown field(s) {sorted(unknown)}")
        if "dataset" not in data:
            raise PayloadError("supernet_train payload: field 'dataset' is missing")
        return cls(
            dataset=str(data["dataset"]),
            train=TrainSettings.from_dict(data.get("train") or {}),
            space=SupernetSpaceConfig.from_dict(data.get("space") or {}),
            settings=SupernetTrainSettings.from_dict(data.get("settings") or {}),
            checkpoint=data.get("checkpoint"),
            db=data.get("db"),
            device=str(data.get("device", "cpu")),
            cache_dir=data.get("cache_dir"),
        )


def load_prepared(dataset: str, train: TrainSettings, cache_dir: str | None = None) -> Any:
    """The PreparedData of a data set under a run's settings (the evaluator's process cache)."""
    from nas_core.evaluator import EvalRequest
    from nas_core.evaluator import load_prepared as _load

    return _load(EvalRequest(dataset=dataset, arch="baseline:resnet18", train=train, cache_dir=cache_dir))


# ---------------------------------------------------------------------------------------------
# Payloads for the session


def _run_config(run_or_config: Any) -> Any:
    from nas_core.runconfig import RunConfig

    if isinstance(run_or_config, RunConfig):
        return run_or_config
    if hasattr(run_or_config, "config") and isinstance(run_or_config.config, Mapping):
        return RunConfig.from_dict(run_or_config.config)
    if isinstance(run_or_config, Mapping):
        return RunConfig.from_dict(run_or_config)
    raise PayloadError(
        f"make_payload needs a run, a RunConfig or its dict, got {type(run_or_config).__name__}"
    )


def make_payload(
    run_or_config: Any,
    spec: ArchSpec | Mapping[str, Any] | SubnetConfig,
    *,
    checkpoint: str | Path | None = None,
    store: Any = None,
    split: str = "val",
    calib_batches: int = 4,
) -> dict[str, Any]:
    """The ``supernet_measure`` payload of one candidate of a run in super-network mode.

    Args:
        run_or_config: the run record (its ``config`` is a RunConfig dict), a RunConfig, or its dict.
        spec: the candidate's ArchSpec (or a sub-network config).
        checkpoint: the super-network to use; default: the newest one for the run's data set,
            image size and seed (store registry, then :func:`supernet_dir`).
        store: an open store, to look the checkpoint up in its registry.
        split: "val" while searching, "test" for a final report.
        calib_batches: training batches for BN recalibration.

    Raises:
        SubnetError: the spec is not a sub-network of the super-network (every reason listed).
        CheckpointError: no super-network, not trained yet, another data set/resolution/seed, old schema.
    """
    cfg = _run_config(run_or_config)
    prepared = load_prepared(cfg.dataset, cfg.train)
    seed = int(getattr(prepared.split, "seed", cfg.train.seed))
    if checkpoint is None:
        checkpoint = find_checkpoint(prepared.dataset_hash, cfg.train.image_size, seed, store=store)
        if checkpoint is None:
            raise CheckpointError(
                f"no super-network is trained for data set {cfg.dataset} at {cfg.train.image_size} px "
                f"(split seed {seed}); train one first: python -m nas_core supernet train --db DB "
                f"--dataset {cfg.dataset} --image-size {cfg.train.image_size} --seed {seed}"
            )
    meta = read_meta(checkpoint)
    check_usable(
        meta,
        dataset_hash=prepared.dataset_hash,
        image_size=cfg.train.image_size,
        seed=seed,
        path=str(checkpoint),
    )
    space = meta.space_config
    if isinstance(spec, SubnetConfig):
        config = check_config(spec, space)
    else:
        arch = spec if isinstance(spec, ArchSpec) else ArchSpec.from_dict(spec)
        errors = validate_subnet_spec(arch, space)
        if errors:
            raise SubnetError(["this spec is not a sub-network of the trained super-network"] + errors)
        config = spec_to_config(arch, space)
    req = MeasureRequest(
        checkpoint=str(Path(checkpoint).resolve()),
        dataset=cfg.dataset,
        config=config,
        train=cfg.train,
        env=cfg.env,
        dataset_hash=str(prepared.dataset_hash),
        split=split,
        calib_batches=calib_batches,
    )
    return req.to_dict()


# ---------------------------------------------------------------------------------------------
# Handlers


def _stop_error(message: str) -> Exception:
    try:
        from nas_core.jobs import JobStopped
    except ImportError:  # pragma: no cover - the worker always has it
        return Stopped(message)
    return JobStopped(message)


def measure(
    payload: Mapping[str, Any],
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """The ``supernet_measure`` job: ``MeasureRequest.to_dict()`` in, ``Metrics.to_dict()`` out."""
    from nas_core.supernet.measure import measure_subnet

    req = MeasureRequest.from_dict(payload)
    loaded = load_supernet(req.checkpoint)  # cached per process: loaded once per worker
    seed = req.train.seed
    check_usable(loaded.meta, image_size=req.train.image_size, path=req.checkpoint)
    if req.dataset_hash:
        check_usable(loaded.meta, dataset_hash=req.dataset_hash, path=req.checkpoint)
    prepared = load_prepared(req.dataset, req.train, req.cache_dir)
    seed = int(getattr(prepared.split, "seed", seed))
    # The data on disk now, not only what the payload claims, must match the checkpoint.
    check_usable(loaded.meta, dataset_hash=prepared.dataset_hash, seed=seed, path=req.checkpoint)
    config = check_config(req.config, loaded.meta.space_config)
    if should_stop is not None and should_stop():
        raise _stop_error("measurement cancelled before it started")
    if progress is not None:
        progress({"stage": "measuring", "fraction": 0.1})
    metrics = measure_subnet(
        loaded.net,
        config,
        prepared,
        req.env,
        split=req.split,
        calib_batches=req.calib_batches,
        n_bootstrap=req.train.n_bootstrap,
        seed=req.train.seed,
    )
    if progress is not None:
        progress({"stage": "done", "fraction": 1.0})
    return metrics.to_dict()


def run_training(
    req: TrainRequest,
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    store: Any = None,
) -> Any:
    """Prepare the data, train (resuming when a checkpoint exists), register the checkpoint.

    Returns:
        The :class:`~nas_core.supernet.train.TrainOutcome`.

    Raises:
        Stopped: ``should_stop()`` turned True (the finished epochs are saved).
    """
    from nas_core.supernet.registry import register

    prepared = load_prepared(req.dataset, req.train, req.cache_dir)
    seed = int(getattr(prepared.split, "seed", req.train.seed))
    path = (
        Path(req.checkpoint)
        if req.checkpoint
        else checkpoint_path(prepared.dataset_hash, req.train.image_size, seed, req.space)
    )
    own_store = None
    if store is None and req.db:
        from nas_core.store import Store

        store = own_store = Store.open(req.db)

    def on_epoch(record: dict[str, Any]) -> None:
        if store is not None:
            register(store, path, read_meta(path))
        if progress is not None:
            progress(record)

    try:
        outcome = train_supernet(
            prepared,
            path,
            req.space,
            req.settings,
            dataset=req.dataset,
            subsample=req.train.subsample,
            device=req.device,
            progress=on_epoch,
            should_stop=should_stop,
        )
        if store is not None:
            register(store, path, outcome.meta)
        return outcome
    finally:
        if own_store is not None:
            own_store.close()


def train(
    payload: Mapping[str, Any],
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """The ``supernet_train`` job: ``TrainRequest.to_dict()`` in, a summary of the checkpoint out."""
    req = TrainRequest.from_dict(payload)
    try:
        outcome = run_training(req, progress, should_stop)
    except Stopped as exc:
        raise _stop_error(str(exc)) from exc
    return outcome_summary(outcome)


def outcome_summary(outcome: Any) -> dict[str, Any]:
    """JSON-able summary of a finished (or stopped) training: the job result and the CLI's --json."""
    meta = outcome.meta
    return {
        "checkpoint": outcome.checkpoint,
        "epoch": meta.epoch,
        "best_epoch": meta.best_epoch,
        "best_val_loss": meta.best_val_loss,
        "complete": meta.complete,
        "stopped_reason": meta.stopped_reason,
        "resumed_from_epoch": outcome.resumed_from_epoch,
        "dataset_hash": meta.dataset_hash,
        "train_seconds": meta.train_seconds,
    }


def finetune(
    payload: Mapping[str, Any],
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """A fine-tuning job (kind ``supernet_finetune`` where registered): ``Metrics.to_dict()`` out.

    Payload: a :class:`MeasureRequest` dict plus optional ``from_scratch`` (bool),
    ``weights_out`` (path) and ``device``. The result is a normal candidate's Metrics
    (test split, ``estimate=False``).
    """
    from nas_core.supernet.finetune import finetune as _finetune

    data = dict(payload)
    from_scratch = bool(data.pop("from_scratch", False))
    weights_out = data.pop("weights_out", None)
    device = data.pop("device", None)
    req = MeasureRequest.from_dict(data)
    prepared = load_prepared(req.dataset, req.train, req.cache_dir)
    forward = None if progress is None else (lambda rec: progress(rec.to_dict()))
    _, metrics = _finetune(
        req.checkpoint,
        req.config,
        prepared,
        req.train,
        env=req.env,
        from_scratch=from_scratch,
        device=device,
        progress=forward,
        should_stop=should_stop,
        weights_out=weights_out,
    )
    return metrics.to_dict()
