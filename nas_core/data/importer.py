"""Importing a user's data set: validate, decode once, register in the store, all or nothing.

Owns :func:`import_dataset` (the one call the CLI and the app make), :func:`inspect_source`
(the validation report of a folder or zip without importing it) and :func:`load_registered`
(the index of an imported data set, as the cache and split need it; runs read it through
:class:`nas_core.data.ref.DatasetRef`).

Decisions:

- **Sources.** A folder on the server is read in place (never copied: ISIC 2019 is ~9 GiB). A zip
  is checked and extracted by :mod:`nas_core.data.zipsafe` into ``<uploads>/<name>``, where
  ``<uploads>`` is ``$EQUINAS_UPLOADS_DIR``, else an ``uploads`` folder beside the database
  (``data/uploads`` for the default ``data/equinas.db``).
- **Refusals.** Fatal findings refuse the import; bad images and rows without images
  (``consent`` findings) refuse it unless ``allow_corrupt``, which leaves them out and lists
  them (in the record's config under ``excluded``). The same content (report content hash:
  rows, labels, attributes, groups and image bytes) imported twice is refused, naming the
  data set that already holds it.
- **All or nothing.** The cache is built by :func:`nas_core.data.cache.build_cache` (atomic
  rename); the store row is written last, in one transaction. If anything fails after the
  extraction or the cache build, the extracted folder and a cache this call built are removed
  again, so no half-imported data set can be picked up later.
- **Progress** is reported as ``progress(stage, done, total)`` with stage ``"check"`` (image
  checks) then ``"cache"`` (decoding).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas_core.data import cache, formats, zipsafe
from nas_core.data.generic import ColumnMapping, Loaded, show
from nas_core.data.index import DataError, DatasetIndex
from nas_core.data.ref import DatasetRef
from nas_core.data.report import ValidationReport, build_report

if TYPE_CHECKING:
    from nas_core.store import Store

log = logging.getLogger(__name__)

UPLOADS_ENV = "EQUINAS_UPLOADS_DIR"
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Inspection:
    """A source read and validated, not imported.

    Attributes:
        root: the folder holding the data (inside the extraction folder for a zip).
        loaded: the reader's result (index + findings).
        report: the validation report.
    """

    root: str
    loaded: Loaded
    report: ValidationReport


def uploads_dir(store: Store | None = None) -> Path:
    """Where zips are extracted: ``$EQUINAS_UPLOADS_DIR``, else ``uploads/`` beside the store's database."""
    env = os.environ.get(UPLOADS_ENV)
    if env:
        return Path(env)
    if store is not None and getattr(store, "path", None):
        return Path(store.path).expanduser().resolve().parent / "uploads"
    return Path("data/uploads")


def safe_name(name: str) -> str:
    """A folder-safe version of a data set name (letters, digits, ``._-``)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")
    return slug or "dataset"


def is_zip(source: str | os.PathLike) -> bool:
    """True when ``source`` is a file ending in ``.zip``."""
    p = Path(source)
    return p.suffix.lower() == ".zip" and p.is_file()


def _noop(stage: str, done: int, total: int) -> None:
    return None


def inspect_source(source: str | os.PathLike, fmt: str | None = None, mapping: ColumnMapping | None = None,
                   min_group_test: int = 10, max_pixels: int | None = None, workers: int | None = None,
                   progress: Progress | None = None, scratch: str | os.PathLike | None = None,
                   max_files: int = zipsafe.DEFAULT_MAX_FILES,
                   max_total_bytes: int = zipsafe.DEFAULT_MAX_TOTAL_BYTES) -> Inspection:
    """Read and validate a folder or a zip without importing anything.

    Args:
        source: a data folder or a ``.zip``.
        fmt: format name, None = detect.
        mapping: column mapping for generic data / extra attributes.
        min_group_test: groups with fewer expected test samples are reported as too small.
        max_pixels: pixel cap per image (None = PIL's default).
        workers: processes for the image check.
        progress: ``(stage, done, total)``.
        scratch: for a zip, the folder to extract into (must not exist); None = a temporary folder
            that is removed again before returning.
        max_files: most zip entries.
        max_total_bytes: most uncompressed zip bytes.

    Raises:
        DataError: the source cannot be read at all (missing, unsafe zip, no CSV, missing column ...).
    """
    progress = progress or _noop
    if is_zip(source):
        with tempfile.TemporaryDirectory(prefix="equinas-inspect-") as tmp:
            dest = zipsafe.extract(source, Path(scratch) if scratch else Path(tmp) / "data", max_files,
                                   max_total_bytes)
            return _inspect_folder(zipsafe.data_root(dest), fmt, mapping, min_group_test, max_pixels, workers,
                                   progress)
    return _inspect_folder(formats.resolve_root(source), fmt, mapping, min_group_test, max_pixels, workers, progress)


def _inspect_folder(root: Path, fmt: str | None, mapping: ColumnMapping | None, min_group_test: int,
                    max_pixels: int | None, workers: int | None, progress: Progress) -> Inspection:
    loaded = formats.read(root, fmt, mapping)
    report = build_report(loaded, min_group_test=min_group_test, max_pixels=max_pixels, workers=workers,
                          progress=lambda d, t: progress("check", d, t))
    return Inspection(root=str(root), loaded=loaded, report=report)


def _refusal(name: str, report: ValidationReport, allow_corrupt: bool) -> str | None:
    """Why ``report`` refuses the import, or None."""
    if report.fatal:
        return (f"cannot import {name!r}: " + "; ".join(f.message for f in report.fatal)
                + ". Nothing was stored")
    if report.consent and not allow_corrupt:
        return (f"cannot import {name!r}: " + "; ".join(f.message for f in report.consent)
                + " (--allow-corrupt / the checkbox leaves them out). Nothing was stored")
    if report.n_usable == 0:
        return f"cannot import {name!r}: no usable image. Nothing was stored"
    return None


def _without(index: DatasetIndex, drop: set[int], note: str) -> DatasetIndex:
    return index.keep_rows([i for i in range(len(index)) if i not in drop], note)


def _counts(report: ValidationReport, n_images: int, n_left_out: int) -> dict:
    groups: dict[str, dict[str, int]] = {}
    for g in report.groups:
        groups.setdefault(g.attribute, {})[g.group] = g.n
    return {"images": n_images, "rows": report.n_rows, "left_out": n_left_out,
            "classes": dict(zip(report.class_names, report.class_counts)), "groups": groups,
            "lesion_groups_kept_together": report.n_multi_groups}


def import_dataset(
    source: str | os.PathLike,
    store: Store,
    name: str | None = None,
    fmt: str | None = None,
    mapping: ColumnMapping | None = None,
    image_size: int = 64,
    allow_corrupt: bool = False,
    progress: Progress | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    uploads: str | os.PathLike | None = None,
    min_group_test: int = 10,
    max_pixels: int | None = None,
    workers: int | None = None,
    max_files: int = zipsafe.DEFAULT_MAX_FILES,
    max_total_bytes: int = zipsafe.DEFAULT_MAX_TOTAL_BYTES,
):
    """Validate a folder or zip, build its cache once and register it in the store.

    Args:
        source: a data folder on this machine (read in place) or an uploaded ``.zip``.
        store: an open :class:`nas_core.store.Store`.
        name: the data set's name (unique in the store); default the folder or zip name.
        fmt: format name; None = detect.
        mapping: column mapping (generic / folder) or attributes (ISIC 2019, HAM10000).
        image_size: training resolution of the cache.
        allow_corrupt: leave bad images and rows without images out (listed) instead of refusing.
        progress: ``(stage, done, total)`` with stages ``"check"`` and ``"cache"``.
        cache_dir: cache folder (default: the cache module's default).
        uploads: where zips are extracted (default :func:`uploads_dir`).
        min_group_test: see :func:`build_report`.
        max_pixels: pixel cap per image.
        workers: processes for checks and decoding.
        max_files: most zip entries.
        max_total_bytes: most uncompressed zip bytes.

    Returns:
        The store's ``DatasetRecord``.

    Raises:
        DataError: the data set is refused (the message names every problem); nothing is stored.
        nas_core.store.store.DuplicateDataset: the name is taken.
    """
    progress = progress or _noop
    source = Path(source).expanduser()
    if not source.exists():
        raise DataError(f"{source} does not exist; give a data folder or a .zip")
    zipped = is_zip(source)
    name = (name or (source.stem if zipped else source.resolve().name)).strip()
    if not name:
        raise DataError("the data set needs a name (--name)")
    taken = store.find_dataset(name)
    if taken is not None:
        raise DataError(f"a data set named {name!r} is already registered (id {taken.id}); choose another name "
                        "(--name)")
    created: list[Path] = []  # everything this call wrote, removed again if it fails
    built_cache: Path | None = None
    try:
        if zipped:
            dest = Path(uploads) if uploads else uploads_dir(store)
            dest = dest / safe_name(name)
            root = zipsafe.data_root(zipsafe.extract(source, dest, max_files, max_total_bytes))
            created.append(dest)
        else:
            root = formats.resolve_root(source)
        inspection = _inspect_folder(root, fmt, mapping, min_group_test, max_pixels, workers, progress)
        report, loaded = inspection.report, inspection.loaded
        why = _refusal(name, report, allow_corrupt)
        if why:
            raise DataError(why)
        same = [d for d in store.list_datasets() if d.content_hash == report.content_hash]
        if same:
            raise DataError(f"this content is already imported as {same[0].name!r} (id {same[0].id}); use that "
                            "data set instead of importing it again. Nothing was stored")

        bad_paths = {b.path for b in report.bad_images}
        bad_rows = {i for i, p in enumerate(loaded.index.paths) if p in bad_paths}
        excluded_rows = [f.items for f in report.consent if f.code == "missing_images"]
        excluded = sorted({loaded.index.ids[i] for i in bad_rows} | {x for items in excluded_rows for x in items})
        note = f"left out with the user's consent: {show(excluded)}" if excluded else ""
        index = _without(loaded.index, bad_rows, note)

        existing = cache.find_cache(index, image_size, cache_dir)
        info = cache.build_cache(index, image_size, cache_dir=cache_dir,
                                 progress=lambda d, t: progress("cache", d, t), workers=workers)
        if existing is None and info.built:
            built_cache = Path(info.path)
        config = {
            "root": str(root), "format": index.format, "image_size": image_size,
            "mapping": mapping.to_dict() if mapping is not None else None,
            "used_mapping": loaded.mapping.to_dict() if loaded.mapping is not None else None,
            "attributes": list(index.attribute_names), "class_names": list(index.class_names),
            "excluded": excluded, "uploaded": zipped, "cache_key": info.key,
            "has_group_ids": index.group_ids is not None,
        }
        columns = list(loaded.columns) if loaded.columns else list(index.attribute_names)
        record = store.register_dataset(
            name=name, format=index.format, source=str(source.resolve()), content_hash=report.content_hash,
            columns=columns, counts=_counts(report, len(index), len(excluded)), config=config,
            cache_path=info.path,
        )
    except BaseException:
        if built_cache is not None:
            shutil.rmtree(built_cache, ignore_errors=True)
        for path in created:
            shutil.rmtree(path, ignore_errors=True)
        raise
    log.info("imported data set %r (%d images, format %s) from %s", name, len(index), index.format, source)
    return record


def load_registered(record: Any) -> DatasetIndex:
    """The index of an imported data set, exactly as it was cached (left-out rows dropped again).

    The same as ``DatasetRef.from_registered(record).load_index()``: a run reads its data set
    through that ref (:mod:`nas_core.data.ref`), so both always agree.

    Args:
        record: a ``DatasetRecord`` from the store.

    Raises:
        DataError: the data folder is gone or changed so that it no longer reads.
    """
    return DatasetRef.from_registered(record).load_index()
