"""The format-independent description of a data set, before any image is decoded.

Every format reader (ISIC 2019, HAM10000, generic CSV, class-per-folder tree)
returns a :class:`DatasetIndex`; everything downstream (validation report,
cache, split, evaluator) reads only this record, so a new format is one reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nas_core.errors import UserError

UNKNOWN = "unknown"  # the group of a sample whose attribute value is missing


class DataError(UserError):
    """A data set cannot be read as asked: the message names the file, column or ids."""


@dataclass(frozen=True)
class AttributeSpec:
    """How one demographic attribute is derived from a metadata column."""

    name: str  # attribute name shown to users, e.g. "sex", "age"
    column: str  # source column in the metadata CSV
    kind: str = "categorical"  # "categorical" or "age" (numeric, binned)
    bins: tuple[float, ...] = (30.0, 65.0)  # age edges: <30, 30-65, >65 by default
    labels: tuple[str, ...] = ("young", "middle", "old")  # one more label than bins


@dataclass(frozen=True)
class DatasetIndex:
    """Rows of a data set: one entry per image, all tuples of equal length.

    Attributes:
        root: folder the relative image paths are resolved against.
        format: "isic2019", "ham10000", "generic" or "folder".
        ids: image ids as written in the metadata.
        paths: image file paths relative to ``root``.
        labels: class index of every row.
        class_names: class names in index order.
        attributes: (attribute name, group label of every row); missing values are "unknown".
        group_ids: lesion or patient id of every row (rows sharing one stay on one side of a
            split), or None when the data set has none.
        problems: non-fatal findings of the reader (shown in the validation report).
    """

    root: str
    format: str
    ids: tuple[str, ...]
    paths: tuple[str, ...]
    labels: tuple[int, ...]
    class_names: tuple[str, ...]
    attributes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    group_ids: tuple[str, ...] | None = None
    problems: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.ids)

    def attribute(self, name: str) -> tuple[str, ...]:
        """Group labels of attribute ``name`` for every row."""
        for n, values in self.attributes:
            if n == name:
                return values
        raise KeyError(f"no attribute {name!r}; have: {[n for n, _ in self.attributes]}")

    @property
    def attribute_names(self) -> tuple[str, ...]:
        """Names of the demographic attributes, in order."""
        return tuple(n for n, _ in self.attributes)

    def keep_rows(self, keep: list[int], note: str = "") -> DatasetIndex:
        """The same index with only the rows at positions ``keep`` (in that order), ``note`` added to its problems."""
        return DatasetIndex(
            root=self.root, format=self.format, ids=tuple(self.ids[i] for i in keep),
            paths=tuple(self.paths[i] for i in keep), labels=tuple(self.labels[i] for i in keep),
            class_names=self.class_names,
            attributes=tuple((n, tuple(v[i] for i in keep)) for n, v in self.attributes),
            group_ids=None if self.group_ids is None else tuple(self.group_ids[i] for i in keep),
            problems=self.problems + ((note,) if note else ()),
        )
