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
- Both jobs carry the run's :class:`~nas_core.data.ref.DatasetRef` (a folder path from an old
  payload or the CLI still works), so a super-network trained on an imported data set reads it
  with its stored mapping, excluded rows and attributes.
- Beside every checkpoint it trains, :func:`run_training` writes ``<checkpoint>.ref.json``: the
  DatasetRef, subsample, resolution and split seed it was trained with. :func:`make_payload`
  finds a run's super-network by the ref's content hash, resolution and split seed without
  loading any image (it runs in the app's process), preferring one trained on the run's own
  subsample, else the newest trained on any subsample of the same data; the measurement then
  uses that super-network's subsample so its split is the one it was trained on.
  A checkpoint without that file (trained before, or by ``train_supernet`` directly) is
  matched the old way, by the prepared data's hash, which loads the data.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas_core import evaluator
from nas_core.data.ref import DatasetRef
from nas_core.data.ref import resolve as resolve_ref
from nas_core.errors import UserError
from nas_core.jobresult import JobResult, Progress
from nas_core.jobs import JobStopped
from nas_core.runconfig import RunConfig
from nas_core.settings import Env, TrainSettings
from nas_core.space import ArchSpec
from nas_core.store import Store
from nas_core.supernet.checkpoint import CheckpointError, check_usable, load_supernet, read_meta
from nas_core.supernet.finetune import finetune as _finetune
from nas_core.supernet.measure import measure_subnet
from nas_core.supernet.registry import find_supernet, list_supernets, register
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
#: Suffix of the file beside a checkpoint that records the data set it was trained on.
REF_SUFFIX = ".ref.json"


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


def checkpoints_at(image_size: int, seed: int, *, store: Any = None, root: Path | None = None) -> list[Path]:
    """Existing checkpoint files for this resolution and split seed: the store's registered ones (when a
    store is given), then those in the checkpoint folder; each once."""
    paths: list[Path] = []
    if store is not None:
        paths += [Path(r.path) for r in list_supernets(store) if r.image_size == int(image_size)
                  and r.seed == int(seed)]
    folder = Path(root) if root is not None else supernet_dir()
    if folder.is_dir():
        paths += sorted(folder.glob(f"supernet_*_{int(image_size)}px_seed{int(seed)}_*.pt"))
    out: list[Path] = []
    for path in paths:
        path = path.resolve()
        if path not in out and path.is_file():
            out.append(path)
    return out


def find_for_ref(
    ref: DatasetRef, image_size: int, seed: int, *, subsample: int | None = None, store: Any = None,
    root: Path | None = None,
) -> tuple[Path, TrainedOn] | None:
    """The super-network trained on ``ref``'s data at this resolution and split seed, without loading data.

    Candidates are the store's registered checkpoints (when a store is given) and the files in the
    checkpoint folder whose ``.ref.json`` names the same content hash, resolution and seed. Trained
    ones beat unfinished ones; one trained on ``subsample`` beats one trained on another subsample
    (or on all rows); then the newest wins.

    Returns:
        (checkpoint path, what it was trained on), or None.
    """
    best: tuple[tuple, Path, TrainedOn] | None = None
    for path in checkpoints_at(image_size, seed, store=store, root=root):
        info = read_trained_on(path)
        if info is None or info.dataset.content_hash != ref.content_hash:
            continue
        if info.image_size != int(image_size) or info.seed != int(seed):
            continue
        try:
            complete = read_meta(path).complete
        except CheckpointError:
            continue
        rank = (complete, info.subsample == subsample, path.stat().st_mtime)
        if best is None or rank > best[0]:
            best = (rank, path, info)
    return None if best is None else (best[1], best[2])


# ---------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True)
class MeasureRequest:
    """One sub-network measurement (the ``supernet_measure`` payload)."""

    checkpoint: str  # super-network checkpoint file
    dataset: DatasetRef | str  # the run's data set (a folder path in old payloads)
    config: SubnetConfig  # the sub-network
    train: TrainSettings = field(default_factory=TrainSettings)  # image size, seed, subsample, n_bootstrap
    env: Env = field(default_factory=Env)  # where hardware costs are measured
    dataset_hash: str = ""  # the hash make_payload saw; checked again when measuring
    split: str = "val"  # val while searching; test for the final report
    calib_batches: int = 4  # training batches for BN recalibration
    cache_dir: str | None = None  # decoded-image cache folder (None = default)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset", _dataset_of(self.dataset))
        if self.split not in ("val", "test"):
            raise PayloadError(f"split must be 'val' or 'test', got {self.split!r}")
        if self.calib_batches < 1:
            raise PayloadError(f"calib_batches must be at least 1, got {self.calib_batches}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able payload."""
        return {
            "checkpoint": self.checkpoint,
            "dataset": _dataset_json(self.dataset),
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
            dataset=data["dataset"],
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

    dataset: DatasetRef | str  # the data set (a folder path from the CLI or an old payload)
    train: TrainSettings = field(default_factory=TrainSettings)  # image size, split seed, subsample
    space: SupernetSpaceConfig = field(default_factory=SupernetSpaceConfig)
    settings: SupernetTrainSettings = field(default_factory=SupernetTrainSettings)
    checkpoint: str | None = None  # None = checkpoint_path(...) in supernet_dir()
    db: str | None = None  # register the checkpoint in this store after every epoch
    device: str = "cpu"
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset", _dataset_of(self.dataset))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able payload."""
        return {
            "dataset": _dataset_json(self.dataset),
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
            dataset=data["dataset"],
            train=TrainSettings.from_dict(data.get("train") or {}),
            space=SupernetSpaceConfig.from_dict(data.get("space") or {}),
            settings=SupernetTrainSettings.from_dict(data.get("settings") or {}),
            checkpoint=data.get("checkpoint"),
            db=data.get("db"),
            device=str(data.get("device", "cpu")),
            cache_dir=data.get("cache_dir"),
        )


def _dataset_of(value: Any) -> DatasetRef | str:
    """A payload's data set: a DatasetRef (from its dict, validated) or a folder path."""
    if isinstance(value, DatasetRef):
        return value
    if isinstance(value, Mapping):
        return DatasetRef.from_dict(value)
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise PayloadError(f"dataset must be a data set reference or a folder path, got {value!r}")
    return str(value)


def _dataset_json(value: DatasetRef | str) -> Any:
    return value.to_dict() if isinstance(value, DatasetRef) else value


def _label(value: DatasetRef | str) -> str:
    return value.label if isinstance(value, DatasetRef) else str(value)


def _split_seed(train: TrainSettings) -> int:
    """The seed of the split ``prepare`` draws for these settings."""
    return int(getattr(train, "split_seed", train.seed))


def ref_path(checkpoint: str | Path) -> Path:
    """The file beside ``checkpoint`` that records the data set it was trained on."""
    return Path(str(checkpoint) + REF_SUFFIX)


@dataclass(frozen=True)
class TrainedOn:
    """What ``<checkpoint>.ref.json`` records: the data a super-network was trained on."""

    dataset: DatasetRef
    image_size: int
    seed: int  # split seed
    subsample: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {"dataset": self.dataset.to_dict(), "image_size": self.image_size, "seed": self.seed,
                "subsample": self.subsample}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainedOn:
        """Inverse of :meth:`to_dict`.

        Raises:
            PayloadError: a field is missing or of the wrong type.
        """
        try:
            sub = data.get("subsample")
            return cls(dataset=DatasetRef.from_dict(data["dataset"]), image_size=int(data["image_size"]),
                       seed=int(data["seed"]), subsample=None if sub is None else int(sub))
        except (KeyError, TypeError, ValueError) as exc:
            raise PayloadError(f"the super-network's data set record is invalid ({exc}); train it again") from exc


def write_trained_on(checkpoint: str | Path, info: TrainedOn) -> Path:
    """Write ``<checkpoint>.ref.json`` atomically (temp file + rename)."""
    path = ref_path(checkpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(info.to_dict(), indent=1))
    os.replace(tmp, path)
    return path


def read_trained_on(checkpoint: str | Path) -> TrainedOn | None:
    """What ``<checkpoint>.ref.json`` records, or None when the checkpoint has no such file."""
    path = ref_path(checkpoint)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return None
    try:
        return TrainedOn.from_dict(data)
    except (PayloadError, UserError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None


def dataset_for_checkpoint(checkpoint: str | Path, given: str | None = None) -> DatasetRef | str:
    """The data set to measure or fine-tune ``checkpoint`` on: ``given``, else the DatasetRef it was
    trained on (``.ref.json``), else the folder its metadata names ("" when none).

    The CLI's ``supernet measure/finetune`` without ``--dataset`` should read the data through this,
    so an imported data set is read with its stored mapping, not detected again.
    """
    if given:
        return given
    info = read_trained_on(checkpoint)
    if info is not None:
        return info.dataset
    return read_meta(checkpoint).dataset


def load_prepared(dataset: DatasetRef | str, train: TrainSettings, cache_dir: str | None = None) -> Any:
    """The PreparedData of a data set under a run's settings (the evaluator's process cache)."""
    return evaluator.load_prepared(
        evaluator.EvalRequest(dataset=dataset, arch="baseline:resnet18", train=train, cache_dir=cache_dir)
    )


# ---------------------------------------------------------------------------------------------
# Payloads for the session


def _run_config(run_or_config: Any) -> Any:
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
    ref = cfg.dataset_ref or resolve_ref(store, cfg.dataset)
    seed = _split_seed(cfg.train)
    size = cfg.train.image_size
    train = cfg.train
    if checkpoint is None:
        found = find_for_ref(ref, size, seed, subsample=cfg.train.subsample, store=store)
        if found is not None:
            checkpoint, trained_on = found
            train = dataclasses.replace(cfg.train, subsample=trained_on.subsample)
    else:
        trained_on = read_trained_on(checkpoint)
        if trained_on is not None:
            if trained_on.dataset.content_hash != ref.content_hash:
                raise CheckpointError(
                    f"the super-network {checkpoint} was trained on another data set "
                    f"({trained_on.dataset.label}, hash {trained_on.dataset.content_hash[:12]}; this run's "
                    f"{ref.label} is {ref.content_hash[:12]}); train a super-network on this data set first"
                )
            train = dataclasses.replace(cfg.train, subsample=trained_on.subsample)
    legacy_hash = ""
    if checkpoint is None:
        legacy = any(read_trained_on(p) is None for p in checkpoints_at(size, seed, store=store))
    else:
        legacy = read_trained_on(checkpoint) is None
    if legacy:
        # A checkpoint with no record of its data beside it (trained by an older version or by
        # train_supernet directly): only the prepared data's hash can tell, and that loads the data.
        prepared = load_prepared(ref, cfg.train)
        seed = int(getattr(prepared.split, "seed", seed))
        legacy_hash = str(prepared.dataset_hash)
        if checkpoint is None:
            checkpoint = find_checkpoint(legacy_hash, size, seed, store=store)
    if checkpoint is None:
        raise CheckpointError(
            f"no super-network is trained for data set {ref.label} at {size} px "
            f"(split seed {seed}); train one first: on the Setup page, or python -m nas_core supernet "
            f"train --db DB --dataset {cfg.dataset} --image-size {size} --seed {seed}"
        )
    meta = read_meta(checkpoint)
    check_usable(meta, dataset_hash=legacy_hash or None, image_size=size, seed=seed, path=str(checkpoint))
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
        dataset=ref,
        config=config,
        train=train,
        env=cfg.env,
        dataset_hash=str(meta.dataset_hash),  # measure() checks it against the data on disk
        split=split,
        calib_batches=calib_batches,
    )
    return req.to_dict()


# ---------------------------------------------------------------------------------------------
# Handlers


def _stop_error(message: str) -> Exception:
    return JobStopped(message)


def measure(
    payload: Mapping[str, Any],
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> JobResult:
    """The ``supernet_measure`` job: ``MeasureRequest.to_dict()`` in, a metrics :class:`JobResult` out."""
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
        progress(Progress(0.1, "measuring the sub-network", {"stage": "measuring"}))
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
        progress(Progress(1.0, "measured", {"stage": "done"}))
    return JobResult.metrics(metrics)


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
    own_store = None
    if store is None and req.db:
        store = own_store = Store.open(req.db)
    try:
        return _run_training(req, progress, should_stop, store)
    finally:
        if own_store is not None:
            own_store.close()


def _run_training(req: TrainRequest, progress: Callable[[dict[str, Any]], None] | None,
                  should_stop: Callable[[], bool] | None, store: Any) -> Any:
    ref = resolve_ref(store, req.dataset)  # a folder given on the CLI gets its registered settings
    prepared = load_prepared(ref, req.train, req.cache_dir)
    seed = int(getattr(prepared.split, "seed", _split_seed(req.train)))
    path = (
        Path(req.checkpoint)
        if req.checkpoint
        else checkpoint_path(prepared.dataset_hash, req.train.image_size, seed, req.space)
    )
    trained_on = TrainedOn(dataset=ref, image_size=int(req.train.image_size), seed=seed,
                           subsample=req.train.subsample)
    if not path.exists() or read_meta(path).dataset_hash == prepared.dataset_hash:
        # Written first, so the app finds a super-network that is still training by its data set
        # (not over a checkpoint of other data: train_supernet refuses to resume that one).
        write_trained_on(path, trained_on)

    def on_epoch(record: dict[str, Any]) -> None:
        if store is not None and not record.get("partial"):  # a checkpoint is written once per epoch
            register(store, path, read_meta(path))
        if progress is not None:
            progress(record)

    outcome = train_supernet(
        prepared,
        path,
        req.space,
        req.settings,
        dataset=ref.root,  # a folder: the supernet CLI measures with it when no --dataset is given
        subsample=req.train.subsample,
        device=req.device,
        progress=on_epoch,
        should_stop=should_stop,
    )
    write_trained_on(path, trained_on)
    if store is not None:
        register(store, path, outcome.meta)
    return outcome


def train(
    payload: Mapping[str, Any],
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> JobResult:
    """The ``supernet_train`` job: ``TrainRequest.to_dict()`` in, a data :class:`JobResult` (the checkpoint's
    summary) out; each epoch's progress dict is read by the worker as a :class:`Progress`."""
    req = TrainRequest.from_dict(payload)
    try:
        outcome = run_training(req, progress, should_stop)
    except Stopped as exc:
        raise _stop_error(str(exc)) from exc
    return JobResult.data(outcome_summary(outcome))


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
) -> JobResult:
    """A fine-tuning job (kind ``supernet_finetune`` where registered): a metrics :class:`JobResult` out.

    Payload: a :class:`MeasureRequest` dict plus optional ``from_scratch`` (bool),
    ``weights_out`` (path), ``device`` and ``estimate`` (ignored here). The result is a normal candidate's Metrics
    (test split, ``estimate=False``).
    """
    data = dict(payload)
    from_scratch = bool(data.pop("from_scratch", False))
    weights_out = data.pop("weights_out", None)
    device = data.pop("device", None)
    data.pop("estimate", None)  # the estimate it replaces (the app's fine-tune ranking reads it from the job)
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
    return JobResult.metrics(metrics)
