"""Run setup: what a new run is stored with, and where its files go.

Owns :func:`prepare_config` (a run's :class:`~nas_core.data.ref.DatasetRef` from the registered
data set or folder it names, the data set's facts, the super-network's choices), the migration of
path-only runs to a ref (:func:`ref_of_stored_run`), :func:`weights_path` and :class:`SessionError`.
The step state machine that drives a run lives in :mod:`nas_core.session`, which re-exports these.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas_core.data import formats
from nas_core.data.prepare import load_index
from nas_core.data.ref import DatasetRef
from nas_core.data.ref import resolve as resolve_ref
from nas_core.errors import UserError
from nas_core.runconfig import RunConfig
from nas_core.space import Choices
from nas_core.supernet.space import choices_for_supernet

if TYPE_CHECKING:
    from nas_core.store import Store

log = logging.getLogger(__name__)


class SessionError(UserError):
    """A step that is not allowed now, or cannot be done; the message says why and what to do."""


def weights_path(store: Store, run_id: int, candidate_id: int) -> Path:
    """Where a candidate's trained weights (its best-validation state_dict) are written.

    Beside the database (``weights/run<R>/candidate<C>.pt``), so a run's files travel together.
    """
    return Path(store.path).expanduser().resolve().parent / "weights" / f"run{run_id}" / f"candidate{candidate_id}.pt"


def prepare_config(store: Store, config: RunConfig) -> RunConfig:
    """The settings a new run is stored with: its DatasetRef, the data set's facts, and for a
    super-network run the super-network's choices in place of the default ones.

    Raises:
        UserError: the data set cannot be read, or a setting is invalid.
    """
    config = fill_dataset_facts(resolve_dataset(store, config))
    if config.evaluation == "supernet":
        if config.choices == Choices.default():
            # Designers then mostly propose sub-networks; the rest are filtered by spec_problems.
            config = config.replace(choices=choices_for_supernet())
    return config


def resolve_dataset(store: Store, config: RunConfig) -> RunConfig:
    """``config`` with its :class:`~nas_core.data.ref.DatasetRef`: from the registered data set it names
    (its stored mapping, excluded rows and attributes) or from its folder (made absolute, so a worker
    started elsewhere finds it); a missing default says how to make it."""
    if config.dataset_ref is not None:
        if _names(config.dataset_ref, config.dataset):
            return config
        config = config.replace(dataset_ref=None)  # ``dataset`` was changed after the ref was made
    if Path(config.dataset).exists():
        config = config.replace(dataset=str(Path(config.dataset).expanduser().resolve()))
    elif store.find_dataset(config.dataset) is None:
        if config.n_classes is not None and config.dataset_summary:
            # The caller states the data set's facts for a folder this machine cannot see (a remote
            # worker's, a test's): the run keeps the path, and its jobs read that folder where they run.
            log.info("data set %s is not here; the run keeps its path only", config.dataset)
            return config
        if Path(config.dataset).name == "default":
            raise SessionError(
                f"the default data set {config.dataset} does not exist yet; create it with "
                "`python -m nas_core datasets make-default`, or give --dataset PATH"
            )
    return config.replace(dataset_ref=resolve_ref(store, config.dataset))


def _names(ref: DatasetRef, dataset: str) -> bool:
    """True when the text ``dataset`` names the data set ``ref`` reads (its name or its folder)."""
    if dataset in (ref.name, ref.root):
        return True
    try:
        return Path(dataset).exists() and formats.resolve_root(dataset).resolve() == Path(ref.root).resolve()
    except UserError:
        return False


def ref_of_stored_run(store: Store, run: Any, config: RunConfig) -> DatasetRef:
    """The ref of a run stored with a folder path only.

    A run with candidates keeps reading its folder exactly as it did (format detected, the
    format's default attributes), so every candidate stays measured on the same data and groups;
    a run without candidates takes its registered data set's stored settings.
    """
    if run.dataset_id is not None and not store.list_candidates(run.id):
        record = store.find_dataset(int(run.dataset_id))
        if record is not None:
            return DatasetRef.from_registered(record)
    if Path(config.dataset).exists():
        return DatasetRef.from_path(config.dataset)
    return resolve_ref(store, config.dataset)


def fill_dataset_facts(config: RunConfig) -> RunConfig:
    """``config`` with ``n_classes`` and ``dataset_summary`` read from the data set (if not given).

    Raises:
        UserError: the data set cannot be read (the reader's message).
    """
    if config.n_classes is not None and config.dataset_summary:
        return config
    index = config.dataset_ref.load_index() if config.dataset_ref is not None else load_index(config.dataset)
    n = len(index)
    counts: dict[str, int] = {}
    for lab in index.labels:
        name = index.class_names[lab]
        counts[name] = counts.get(name, 0) + 1
    parts = [f"{n} images in {len(index.class_names)} classes ("
             + ", ".join(f"{k}: {v}" for k, v in counts.items()) + ")"]
    for attr, values in index.attributes:
        groups: dict[str, int] = {}
        for v in values:
            groups[v] = groups.get(v, 0) + 1
        parts.append(f"{attr} groups: " + ", ".join(f"{k}: {v}" for k, v in sorted(groups.items())))
    summary = config.dataset_summary or f"{index.format} data set; " + "; ".join(parts) + "."
    return config.replace(n_classes=config.n_classes or len(index.class_names), dataset_summary=summary)
