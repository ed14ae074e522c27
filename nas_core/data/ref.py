"""The one record by which every part of EquiNAS reads a data set: :class:`DatasetRef`.

A run stores its DatasetRef in its config; the evaluator (through
:func:`nas_core.data.prepare.prepare`), the super-network jobs and the exports read the
data only through it, so a registered data set's stored import settings (column mapping,
rows left out, the attributes and their bins) reach every evaluation.

Owns :class:`DatasetRef`, :class:`DatasetRefError` and the ways a ref is made:

- :meth:`DatasetRef.from_registered`: from a store's ``DatasetRecord`` (what the import
  stored; no file is read);
- :meth:`DatasetRef.from_path`: from a plain folder, format detected (the CLI's
  ``--dataset data/default``);
- :func:`resolve`: a folder path or a registered data set's name, the way a user writes it;
  a folder that a registered data set reads from uses that data set's settings.

Decisions:

- **content_hash.** For a registered data set, the import report's content hash (rows, labels,
  attributes, groups and image bytes). For a folder that was never imported, a fingerprint over
  the format, class names, every row's id, relative path, file size, label, attribute values
  and lesion/patient group (file sizes, not bytes: making a ref must not read every image).
  Either way it identifies the data set without loading it: the super-network registry and the
  job payloads use it instead of decoding everything to hash. What a model was trained on
  exactly stays :attr:`PreparedData.dataset_hash`, checked when a job runs.
- **attributes** are stored resolved (columns, kinds, bins and group names), so reading
  the data set later never guesses again and a change of defaults cannot change an old run.
- **Reading** (:meth:`DatasetRef.load_index`) re-reads the folder with the stored mapping,
  refuses fatal findings, drops the excluded rows and checks that the attributes came out
  as stored.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas_core.data import formats, groups, ham10000
from nas_core.data.generic import ColumnMapping, Loaded, resolve_attributes, show
from nas_core.data.index import AttributeSpec, DataError, DatasetIndex

if TYPE_CHECKING:
    from nas_core.store import Store

KINDS = ("categorical", "sex", "age")
_FIELDS = ("root", "format", "mapping", "excluded", "attributes", "content_hash", "name")


class DatasetRefError(DataError):
    """A stored data set reference is malformed, or its data no longer read as stored."""


def _attr_to_dict(a: AttributeSpec) -> dict[str, Any]:
    return {"name": a.name, "column": a.column, "kind": a.kind, "bins": list(a.bins), "labels": list(a.labels)}


def _attr_from_dict(d: Any, where: str) -> AttributeSpec:
    if not isinstance(d, Mapping):
        raise DatasetRefError(f"{where} must be an object with name, column, kind, bins, labels; got {d!r}")
    unknown = set(d) - {"name", "column", "kind", "bins", "labels"}
    if unknown:
        raise DatasetRefError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: name, column, kind, bins, labels")
    for key in ("name", "column"):
        if not isinstance(d.get(key), str) or not d[key].strip():
            raise DatasetRefError(f"{where}: {key!r} must be a non-empty text, got {d.get(key)!r}")
    kind = d.get("kind", "categorical")
    if kind not in KINDS:
        raise DatasetRefError(f"{where}: kind {kind!r} is unknown; use one of {', '.join(KINDS)}")
    try:
        bins = tuple(float(b) for b in d.get("bins", (30.0, 65.0)))
        labels = tuple(str(x) for x in d.get("labels", ("young", "middle", "old")))
    except (TypeError, ValueError) as exc:
        raise DatasetRefError(f"{where}: bins must be numbers and labels texts ({exc})") from exc
    if kind == "age":
        try:
            groups.check_bins(bins, labels)
        except DataError as exc:
            raise DatasetRefError(f"{where}: {exc}") from exc
    return AttributeSpec(name=d["name"], column=d["column"], kind=kind, bins=bins, labels=labels)


@dataclass(frozen=True)
class DatasetRef:
    """A data set as a run keeps it: where it is, how to read it, and its identity.

    Attributes:
        root: absolute folder the data are read from (for an uploaded zip, its extraction folder).
        format: one of :data:`nas_core.data.formats.FORMATS`.
        mapping: the column mapping the import used (image, label, group, CSV, classes); None for
            fixed formats read with their own columns (ISIC 2019, HAM10000).
        excluded: ids of rows left out (corrupt images, rows without an image) with the user's consent.
        attributes: the demographic attributes, resolved (column, kind, bins, group names).
        content_hash: identity of the content (see the module docstring).
        name: the registered data set's name; empty for a folder that was never imported.
    """

    root: str
    format: str
    mapping: ColumnMapping | None = None
    excluded: tuple[str, ...] = ()
    attributes: tuple[AttributeSpec, ...] = ()
    content_hash: str = ""
    name: str = field(default="")

    def __post_init__(self) -> None:
        if not isinstance(self.root, str) or not self.root.strip():
            raise DatasetRefError(f"a data set reference needs its folder (root), got {self.root!r}")
        if self.format not in formats.FORMATS:
            raise DatasetRefError(f"data set format {self.format!r} is unknown; one of {list(formats.FORMATS)}")
        if not isinstance(self.content_hash, str) or not self.content_hash:
            raise DatasetRefError(f"the data set reference of {self.root} has no content hash; make it with "
                                  "DatasetRef.from_path or DatasetRef.from_registered")
        object.__setattr__(self, "excluded", tuple(str(x) for x in self.excluded))
        object.__setattr__(self, "attributes", tuple(self.attributes))
        names = [a.name for a in self.attributes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise DatasetRefError(f"attribute name(s) {dupes} appear twice in the data set reference of {self.root}")

    # ------------------------------------------------------------------ identity and display

    @property
    def label(self) -> str:
        """What a user calls the data set: its registered name, else its folder's name."""
        return self.name or Path(self.root).name or self.root

    @property
    def attribute_names(self) -> tuple[str, ...]:
        """Names of the demographic attributes, in order."""
        return tuple(a.name for a in self.attributes)

    def describe(self) -> str:
        """One line for messages and the model card: name, format, attributes with their groups."""
        attrs = "; ".join(
            f"{a.name} ({a.column}" + (f", bins {', '.join(f'{b:g}' for b in a.bins)}" if a.kind == "age" else "")
            + ")" for a in self.attributes)
        left = f"; {len(self.excluded)} rows left out" if self.excluded else ""
        return f"{self.label} ({self.format}; attributes: {attrs or 'none'}{left})"

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (what a run's config and a job payload carry)."""
        return {
            "root": self.root,
            "format": self.format,
            "mapping": None if self.mapping is None else self.mapping.to_dict(),
            "excluded": list(self.excluded),
            "attributes": [_attr_to_dict(a) for a in self.attributes],
            "content_hash": self.content_hash,
            "name": self.name,
        }

    @classmethod
    def from_dict(cls, data: Any) -> DatasetRef:
        """Inverse of :meth:`to_dict`, validated.

        Raises:
            DatasetRefError: not an object, an unknown or missing field, a wrong type; the message
                names the field.
        """
        if isinstance(data, DatasetRef):
            return data
        if not isinstance(data, Mapping):
            raise DatasetRefError(f"a data set reference must be an object, got {type(data).__name__}")
        unknown = set(data) - set(_FIELDS)
        if unknown:
            raise DatasetRefError(f"data set reference: unknown field(s) {sorted(unknown)}; allowed: "
                                  f"{', '.join(_FIELDS)}")
        for key in ("root", "format", "content_hash"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise DatasetRefError(f"data set reference: {key!r} is missing or not a text "
                                      f"(got {data.get(key)!r})")
        mapping = data.get("mapping")
        if mapping is not None:
            if not isinstance(mapping, Mapping):
                raise DatasetRefError(f"data set reference: mapping must be an object or null, got {mapping!r}")
            try:
                mapping = ColumnMapping.from_dict(mapping)
            except (KeyError, TypeError, ValueError) as exc:
                raise DatasetRefError(f"data set reference: mapping is invalid ({exc})") from exc
        excluded = data.get("excluded", ())
        if not isinstance(excluded, (list, tuple)) or not all(isinstance(x, str) for x in excluded):
            raise DatasetRefError(f"data set reference: excluded must be a list of row ids, got {excluded!r}")
        attrs = data.get("attributes", ())
        if not isinstance(attrs, (list, tuple)):
            raise DatasetRefError(f"data set reference: attributes must be a list, got {attrs!r}")
        name = data.get("name", "")
        if not isinstance(name, str):
            raise DatasetRefError(f"data set reference: name must be a text, got {name!r}")
        return cls(root=data["root"], format=data["format"], mapping=mapping, excluded=tuple(excluded),
                   attributes=tuple(_attr_from_dict(a, f"data set reference: attribute {i + 1}")
                                    for i, a in enumerate(attrs)),
                   content_hash=data["content_hash"], name=name)

    # ------------------------------------------------------------------ making one

    @classmethod
    def from_registered(cls, record: Any) -> DatasetRef:
        """The ref of an imported data set, from what the import stored (no file is read).

        Args:
            record: a store ``DatasetRecord`` (``name``, ``format``, ``content_hash``, ``config``).

        Raises:
            DatasetRefError: the record lacks its folder or format (imported by a much older version).
        """
        config = record.config if isinstance(record.config, Mapping) else {}
        root = config.get("root") or record.source
        fmt = config.get("format") or record.format
        if not root or not fmt:
            raise DatasetRefError(f"data set {record.name!r} has no stored folder or format; import it again")
        given = ColumnMapping.from_dict(config["mapping"]) if config.get("mapping") else None
        used = ColumnMapping.from_dict(config["used_mapping"]) if config.get("used_mapping") else None
        mapping, attributes = _resolved(fmt, given, used)
        if config.get("attributes") is not None and [a.name for a in attributes] != list(config["attributes"]):
            # Stored before used_mapping existed, or a reader changed: trust what the import found.
            attributes = tuple(a for a in attributes if a.name in set(config["attributes"]))
        content = record.content_hash or _fingerprint_of(str(root), fmt, mapping, attributes,
                                                         tuple(config.get("excluded", ())))
        return cls(root=str(Path(root).expanduser().resolve()), format=fmt, mapping=mapping,
                   excluded=tuple(config.get("excluded", ())), attributes=attributes, content_hash=content,
                   name=record.name)

    @classmethod
    def from_path(cls, path: str | os.PathLike, fmt: str | None = None,
                  mapping: ColumnMapping | None = None) -> DatasetRef:
        """The ref of a data set folder that was not imported (format detected unless given).

        Reads the metadata and lists the image files (their sizes); no image is decoded.

        Raises:
            DataError: the folder is missing or is not a data set this tool can read, or the data
                have fatal problems (named).
        """
        path = Path(path).expanduser()
        if not path.exists():
            raise DataError(f"data set path {path} does not exist; give a data set folder, or the name of an "
                            "imported data set (python -m nas_core datasets list)")
        loaded = formats.read(path, fmt, mapping)
        _refuse_fatal(loaded, str(path))
        index = loaded.index
        used, attributes = _resolved(index.format, mapping, loaded.mapping)
        return cls(root=str(Path(index.root).resolve()), format=index.format, mapping=used,
                   attributes=attributes, content_hash=fingerprint(index))

    # ------------------------------------------------------------------ reading

    def read_mapping(self) -> ColumnMapping:
        """The mapping that reads the data exactly as stored (the resolved attributes, no guessing)."""
        base = self.mapping or ColumnMapping()
        return replace(base, attributes=self.attributes, extend_defaults=False, age_bins=None, age_labels=None)

    def load_index(self) -> DatasetIndex:
        """Read the data set as stored: same mapping, same attributes, the excluded rows left out.

        Raises:
            DataError: the folder is gone, no longer reads, has fatal problems, or no longer yields the
                stored attributes (the message says what to do).
        """
        if not Path(self.root).exists():
            raise DataError(f"the folder of data set {self.label!r} ({self.root}) does not exist any more; "
                            "restore it, or import the data set again")
        loaded = formats.read(self.root, self.format, self.read_mapping())
        _refuse_fatal(loaded, self.label)
        index = loaded.index
        if index.attribute_names != self.attribute_names:
            raise DatasetRefError(f"data set {self.label!r} now has the attributes {list(index.attribute_names)}, "
                                  f"but was stored with {list(self.attribute_names)}; import it again")
        if not self.excluded:
            return index
        excluded = set(self.excluded)
        keep = [i for i, rid in enumerate(index.ids) if rid not in excluded]
        return index.keep_rows(keep, f"left out with the user's consent: {show(sorted(excluded))}")


def _refuse_fatal(loaded: Loaded, where: str) -> None:
    fatal = [f.message for f in loaded.findings if f.severity == "fatal"]
    if fatal:
        raise DataError(f"data set {where} cannot be used: " + "; ".join(fatal))


def _resolved(fmt: str, given: ColumnMapping | None,
              used: ColumnMapping | None) -> tuple[ColumnMapping | None, tuple[AttributeSpec, ...]]:
    """(mapping to keep, resolved attributes) of a format read with ``given``, whose reader reported ``used``."""
    if fmt == "isic2019":
        return None, resolve_attributes(groups.default_attributes(), given)
    if fmt == "ham10000":
        return None, resolve_attributes(ham10000.default_mapping().attributes, given)
    mapping = used or given
    if mapping is None:
        return None, ()
    return replace(mapping, extend_defaults=False, age_bins=None, age_labels=None), tuple(mapping.attributes)


def fingerprint(index: DatasetIndex) -> str:
    """Content identity of a folder data set without reading image bytes (see the module docstring).

    Raises:
        DataError: an image file of the index is missing.
    """
    h = hashlib.sha256()
    h.update(f"equinas-ref v1 format={index.format}\nclasses={chr(31).join(index.class_names)}\n".encode())
    root = Path(index.root)
    missing = []
    for rid, rel, label in zip(index.ids, index.paths, index.labels):
        try:
            size = (root / rel).stat().st_size
        except OSError:
            missing.append(rel)
            continue
        h.update(f"{rid}\x1f{rel}\x1f{size}\x1f{label}\n".encode())
    if missing:
        raise DataError(f"{len(missing)} image files of {index.root} are missing: {show(missing)}")
    for name, values in index.attributes:
        h.update(f"attr={name}:".encode() + "\x1f".join(values).encode() + b"\n")
    if index.group_ids is not None:
        h.update(b"groups:" + "\x1f".join(index.group_ids).encode())
    return h.hexdigest()


def _fingerprint_of(root: str, fmt: str, mapping: ColumnMapping | None, attributes: tuple[AttributeSpec, ...],
                    excluded: tuple[str, ...]) -> str:
    tmp = DatasetRef(root=root, format=fmt, mapping=mapping, attributes=attributes, excluded=excluded,
                     content_hash="pending")
    return fingerprint(tmp.load_index())


def find_registered_at(store: Store | None, folder: str | os.PathLike) -> Any:
    """The registered data set that reads from ``folder`` (newest first), or None."""
    if store is None or not hasattr(store, "list_datasets"):
        return None
    target = Path(folder).expanduser().resolve()
    for record in store.list_datasets():
        config = record.config if isinstance(record.config, Mapping) else {}
        root = config.get("root")
        if root and Path(root).expanduser().resolve() == target:
            return record
    return None


def resolve(store: Store | None, dataset: str | os.PathLike | DatasetRef) -> DatasetRef:
    """The ref of what a user named: a ref, a registered data set's name, or a folder.

    A folder that exists is read as a folder (before a registered name of the same text); a folder
    that a registered data set reads from (its extraction folder, or a server folder read
    in place) gets that data set's stored settings, so ``--dataset PATH`` and picking the data set by
    name read the same data.

    Raises:
        DataError: neither a registered name nor an existing folder (the message names both).
    """
    if isinstance(dataset, DatasetRef):
        return dataset
    text = str(dataset)
    path = Path(text).expanduser()
    if text and path.exists():  # a folder wins over a name, as the CLI always read it
        try:
            root = formats.resolve_root(path)
        except DataError:
            root = path
        record = find_registered_at(store, root)
        if record is not None:
            return DatasetRef.from_registered(record)
        return DatasetRef.from_path(path)
    record = store.find_dataset(text) if store is not None and hasattr(store, "find_dataset") and text else None
    if record is not None:
        return DatasetRef.from_registered(record)
    names = [d.name for d in store.list_datasets()] if store is not None and hasattr(store, "list_datasets") else []
    raise DataError(f"data set {text!r} does not exist: it is neither a folder nor an imported data set; give a "
                    f"data set folder or one of the imported names ({', '.join(names) or 'none imported yet'})")
