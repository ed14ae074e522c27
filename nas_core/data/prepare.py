"""The one call that turns a data set into training-ready tensors: :func:`prepare`.

Owns the order of the data steps every evaluation shares: read the index (through the run's
:class:`~nas_core.data.ref.DatasetRef`, or a folder with its format detected),
optionally draw a balanced subsample, decode through the cache, then split. Same inputs give the
same :class:`PreparedData`, byte for byte, so every candidate of a run sees the same split.

``dataset_hash`` identifies what a model is trained and measured on: a SHA-256 over the cached
images' content hash (their bytes, not their paths), the ids of the rows used, the class names, the
labels, the demographic groups and the split fractions. The same data copied elsewhere has the same hash; a changed label,
a different subsample or a different attribute binning changes it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nas_core.data.cache import build_cache, load_cache
from nas_core.data.generic import ColumnMapping
from nas_core.data.index import AttributeSpec, DataError, DatasetIndex
from nas_core.data.isic2019 import detect_isic2019, load_isic2019
from nas_core.data.ref import DatasetRef
from nas_core.data.splits import Split, balanced_subsample, make_split, strata_of, subset_index

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

FRACTIONS = (0.7, 0.2, 0.1)  # train / validation / test, as DESIGN.md fixes them
#: A data set folder may ask for other fractions in this file (the generated default data set
#: does: a larger test split at the same training size); see :func:`split_fractions`.
SPLIT_FILE = "equinas_split.json"


def split_fractions(root: str | Path) -> tuple[float, float, float]:
    """The (train, val, test) fractions for the data set in ``root``: its :data:`SPLIT_FILE`'s, else :data:`FRACTIONS`.

    Raises:
        DataError: the file exists but does not hold valid fractions.
    """
    path = Path(root) / SPLIT_FILE
    if not path.is_file():
        return FRACTIONS
    try:
        fr = tuple(float(f) for f in json.loads(path.read_text())["fractions"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} must hold {{\"fractions\": [train, val, test]}}: {exc}") from exc
    if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1) > 1e-6 or fr[0] == 0:
        raise DataError(f"{path}: split fractions must be three non-negative numbers summing to 1 with "
                        f"train > 0, got {list(fr)}")
    return fr  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)  # tensors: == would be ambiguous; identity is the useful equality
class PreparedData:
    """A data set decoded, labelled, grouped and split: what the evaluator trains on.

    Attributes:
        images: uint8 tensor (N, 3, S, S), rows aligned with ``index``.
        labels: int64 tensor (N,) of class indices.
        class_names: class names in index order.
        attributes: (attribute name, numpy array of group label per row); ``"unknown"`` where missing.
        split: train/validation/test row indices.
        index: the data set's rows (after subsampling and after leaving out skipped images).
        dataset_hash: content identity of images, labels, groups and split fractions.
        image_size: side S of the square images.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    attributes: tuple[tuple[str, np.ndarray], ...]
    split: Split
    index: DatasetIndex
    dataset_hash: str
    image_size: int

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def attribute(self, name: str) -> np.ndarray:
        """Group labels of attribute ``name`` for every row."""
        for n, values in self.attributes:
            if n == name:
                return values
        raise KeyError(f"no attribute {name!r}; have: {[n for n, _ in self.attributes]}")


def load_index(path: str | Path | DatasetRef, attributes: Sequence[AttributeSpec] | None = None) -> DatasetIndex:
    """Read a data set: a :class:`DatasetRef` exactly as stored (its mapping, attributes and
    excluded rows; ``attributes`` is then ignored), or a folder through
    :mod:`nas_core.data.formats` (format detected).

    Raises:
        DataError: the folder is not a data set this tool can read.
    """
    if isinstance(path, DatasetRef):
        return path.load_index()
    path = Path(path)
    if not path.exists():
        raise DataError(f"data set path {path} does not exist")
    try:
        formats = importlib.import_module("nas_core.data.formats")
    except ModuleNotFoundError as exc:
        if exc.name != "nas_core.data.formats":
            raise
        formats = None
    if formats is not None and hasattr(formats, "load_index"):
        if attributes is None:
            return formats.load_index(path)
        # formats takes the attributes inside its column mapping (the rest left to detection).
        return formats.load_index(path, mapping=ColumnMapping(attributes=tuple(attributes)))
    if not detect_isic2019(path):
        raise DataError(f"{path} is not an ISIC 2019 folder (no ISIC_2019_Training_GroundTruth.csv); "
                        "give the folder that holds the CSV files")
    return load_isic2019(path, attributes=attributes)


def _dataset_hash(content_hash: str, index: DatasetIndex, fractions: Sequence[float]) -> str:
    h = hashlib.sha256()
    h.update(f"content={content_hash}\nclasses={','.join(index.class_names)}\nfractions={tuple(fractions)}\n".encode())
    h.update(("\x1f".join(index.ids) + "\n").encode())  # which of the cached images
    h.update(np.asarray(index.labels, dtype=np.int64).tobytes())
    for name, values in index.attributes:
        h.update(f"\nattr={name}:".encode())
        h.update("\x1f".join(values).encode())
    if index.group_ids is not None:
        h.update(b"\ngroups:" + "\x1f".join(index.group_ids).encode())
    return h.hexdigest()


#: The intersectional groups a run can ask for (``TrainSettings.intersectional``).
INTERSECTIONS: tuple[tuple[str, ...], ...] = (("sex", "age"),)
#: Joins the parts of an intersectional attribute's name and of its group labels.
JOIN = "×"


def intersect(attributes: Sequence[tuple[str, np.ndarray]], names: Sequence[str]) -> tuple[str, np.ndarray]:
    """A derived attribute whose groups are the combinations of ``names``' groups, e.g. ``female×60+``.

    A row unknown in any part is ``"unknown"`` (kept out of the fairness figures like any unknown group).

    Raises:
        DataError: fewer than two names, or the data set lacks one of them (the message lists what it has).
    """
    names = tuple(str(n) for n in names)
    if len(names) < 2:
        raise DataError(f"an intersectional group needs at least two attributes, got {list(names)}")
    have = dict(attributes)
    missing = [n for n in names if n not in have]
    if missing:
        raise DataError(f"intersectional groups {JOIN.join(names)} need the attribute(s) {missing}, which this "
                        f"data set does not have (it has {sorted(have)}); turn the intersectional option off "
                        "or import the data set with those columns mapped")
    parts = [np.asarray(have[n], dtype=str) for n in names]
    joined = np.array([JOIN.join(row) for row in zip(*parts)], dtype=str) if len(parts[0]) else parts[0]
    unknown = np.zeros(len(parts[0]), dtype=bool)
    for p in parts:
        unknown |= p == "unknown"
    return JOIN.join(names), np.where(unknown, "unknown", joined)


def prepare(
    dataset: str | Path | DatasetRef | DatasetIndex,
    image_size: int = 64,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    subsample: int | None = None,
    attributes: Sequence[AttributeSpec] | None = None,
    progress: Callable[[int, int], None] | None = None,
    skip_corrupt: bool = False,
    workers: int | None = None,
    intersections: Sequence[Sequence[str]] = (),
) -> PreparedData:
    """Read, subsample, decode (cached) and split a data set.

    Args:
        dataset: a :class:`DatasetRef` (what runs and jobs pass), a data set folder (format
            detected) or an index already read.
        image_size: side of the square training images.
        seed: seeds the subsample and the split (not the cache, which has no randomness). The split
            fractions are :func:`split_fractions` of the data set's folder (70/20/10 unless it asks).
        cache_dir: where decoded images are kept; default ``data/cache`` (see
            :func:`nas_core.data.cache.default_cache_dir`).
        subsample: if given, draw this many rows balanced across demographic groups first.
        attributes: demographic attributes to derive when reading a path (ignored for a ref or an
            index, which carry their own).
        progress: called with (images decoded, total) while the cache is built.
        skip_corrupt: leave undecodable images out (listed in ``index.problems``) instead of failing.
        workers: decoding processes (see :func:`nas_core.data.cache.build_cache`).
        intersections: attribute name tuples, e.g. ``[("sex", "age")]``: each adds a derived attribute
            (:func:`intersect`) after the data set's own, so every fairness metric reports its groups.
            The split and the data set hash do not change.

    Returns:
        The prepared data.

    Raises:
        DataError: the data set cannot be read, decoded or split as asked.
    """
    import torch  # heavy: imported only when data are actually prepared

    index = dataset if isinstance(dataset, DatasetIndex) else load_index(dataset, attributes)
    if len(index) == 0:
        raise DataError(f"data set at {index.root} has no rows")
    # The cache holds the whole data set, so another subsample or seed never decodes again.
    info = build_cache(index, image_size, cache_dir=cache_dir, progress=progress, workers=workers,
                       skip_corrupt=skip_corrupt)
    images = load_cache(info)
    if info.skipped:
        names = ", ".join(i for i, _ in info.skipped[:5])
        index = subset_index(index, info.rows, note=f"left out {len(info.skipped)} corrupt images: {names}")
    if subsample is not None and subsample < len(index):
        rows = balanced_subsample(index, subsample, seed)
        index = subset_index(index, rows, note=f"balanced subsample of {len(rows)} of {len(index)} rows "
                                                f"(seed {seed})")
        images = images[torch.as_tensor(rows)]
    labels = torch.as_tensor(np.asarray(index.labels, dtype=np.int64))
    fractions = split_fractions(index.root)
    split = make_split(index.labels, strata_of(index), seed, fractions, group_ids=index.group_ids)
    attrs = tuple((name, np.asarray(values, dtype=str)) for name, values in index.attributes)
    attrs += tuple(intersect(attrs, names) for names in intersections)
    return PreparedData(
        images=images,
        labels=labels,
        class_names=index.class_names,
        attributes=attrs,
        split=split,
        index=index,
        dataset_hash=_dataset_hash(info.content_hash, index, fractions),
        image_size=image_size,
    )
