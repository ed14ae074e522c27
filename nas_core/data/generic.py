"""Readers for data sets a user brings in her own layout: any CSV + images, or one folder per class.

Owns :class:`ColumnMapping` (which CSV column is the image, the label, the
demographic attributes and the lesion/patient group), :class:`Finding` (one
thing the validation report must say, with how serious it is) and the CSV
machinery the HAM10000 reader shares:

- the image column may hold a file name (``a.jpg``), a path relative to the
  data folder (``imgs/a.jpg``) or an id without extension (``a``); it is
  matched in that order against every image file under the folder;
- attributes are derived by :mod:`nas_core.data.groups` (missing -> ``unknown``);
  a value that is present but not understood (an age written as text, a sex
  that is neither male nor female) is a *fatal* finding: the import is refused
  and the message names the rows, because guessing would bias the fairness metrics;
- duplicate ids, empty labels and labels outside a declared class set are fatal;
- rows whose image is missing need the user's consent to be left out
  (severity ``consent``); image files no row names are only a warning.

Structural problems (no CSV, a missing column, no id matching any image) raise
:class:`~nas_core.data.index.DataError` at once: nothing further can be checked.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from nas_core.data import groups
from nas_core.data.index import UNKNOWN, AttributeSpec, DataError, DatasetIndex

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
SEVERITIES = ("fatal", "consent", "warning", "info")  # most serious first
_SHOW = 5  # ids named in a message before "..."

# Column names tried, in order, when the user did not map a column (case-insensitive).
IMAGE_COLUMN_GUESSES = ("image", "image_id", "imageid", "image_name", "filename", "file_name", "file", "path",
                        "img", "isic_id", "id")
LABEL_COLUMN_GUESSES = ("label", "class", "dx", "diagnosis", "target", "category")
SEX_COLUMN_GUESSES = ("sex", "gender")
AGE_COLUMN_GUESSES = ("age", "age_approx", "age_years")
GROUP_COLUMN_GUESSES = ("lesion_id", "patient_id", "patient", "subject_id", "subject")


@dataclass(frozen=True)
class Finding:
    """One thing the validation report says about a data set.

    Attributes:
        code: stable identifier, e.g. ``"duplicate_ids"``, ``"missing_images"``, ``"corrupt_images"``.
        severity: ``fatal`` (import refused), ``consent`` (refused unless the user agrees to leave the
            rows out), ``warning`` or ``info``.
        message: one line for the user: what is wrong and what to do.
        items: the ids or file names concerned (all of them, for the report and the UI).
    """

    code: str
    severity: str
    message: str
    items: tuple[str, ...] = ()


@dataclass(frozen=True)
class ColumnMapping:
    """Which columns of a user's CSV mean what.

    Attributes:
        image: column holding the file name, relative path or id (no extension) of each image.
        label: column holding the class name; empty for a class-per-folder tree or a one-hot layout.
        attributes: demographic attributes (sex, age with bins, any categorical column).
        group: column of the lesion or patient id whose images must stay on one side of a split.
        csv: the metadata CSV, relative to the data folder (needed only when there are several).
        classes: the allowed class names in order; a label outside them is refused. Empty: the
            sorted distinct labels found.
        one_hot: label columns of a one-hot layout (each row exactly one 1), instead of ``label``.
        extend_defaults: keep the format's default attributes (sex, age: known columns for ISIC 2019 and
            HAM10000, guessed names otherwise) beside ``attributes``; an attribute given here replaces
            the default of the same name. False: ``attributes``, when not empty, are all there is.
        age_bins: age edges applied to every age attribute (None: each attribute's own, default 30, 65).
        age_labels: names of the age groups (one more than edges); None: young/middle/old for two edges,
            else ranges such as ``<30``, ``30-65``, ``>65``.
    """

    image: str = ""
    label: str = ""
    attributes: tuple[AttributeSpec, ...] = ()
    group: str | None = None
    csv: str | None = None
    classes: tuple[str, ...] = ()
    one_hot: tuple[str, ...] = ()
    extend_defaults: bool = False
    age_bins: tuple[float, ...] | None = None
    age_labels: tuple[str, ...] | None = None

    def to_dict(self) -> dict:
        """Plain JSON-able dict (stored with the data set so it can be read again)."""
        return {
            "image": self.image, "label": self.label, "group": self.group, "csv": self.csv,
            "classes": list(self.classes), "one_hot": list(self.one_hot),
            "extend_defaults": self.extend_defaults,
            "age_bins": None if self.age_bins is None else list(self.age_bins),
            "age_labels": None if self.age_labels is None else list(self.age_labels),
            "attributes": [{"name": a.name, "column": a.column, "kind": a.kind, "bins": list(a.bins),
                            "labels": list(a.labels)} for a in self.attributes],
        }

    @classmethod
    def from_dict(cls, data: dict) -> ColumnMapping:
        """Inverse of :meth:`to_dict`."""
        attrs = tuple(AttributeSpec(name=a["name"], column=a["column"], kind=a.get("kind", "categorical"),
                                    bins=tuple(a.get("bins", (30.0, 65.0))),
                                    labels=tuple(a.get("labels", ("young", "middle", "old"))))
                      for a in data.get("attributes", ()))
        return cls(image=data.get("image", ""), label=data.get("label", ""), attributes=attrs,
                   group=data.get("group"), csv=data.get("csv"), classes=tuple(data.get("classes", ())),
                   one_hot=tuple(data.get("one_hot", ())), extend_defaults=bool(data.get("extend_defaults")),
                   age_bins=None if data.get("age_bins") is None else tuple(data["age_bins"]),
                   age_labels=None if data.get("age_labels") is None else tuple(data["age_labels"]))


@dataclass(frozen=True)
class Loaded:
    """What a reader found: the index of usable rows and every finding about the rest.

    Attributes:
        index: rows whose image exists (rows with fatal problems still included, so counts show).
        findings: everything the validation report must say, most serious first.
        n_rows: rows in the metadata (before dropping rows without images).
        columns: column names of the metadata CSV (empty for a tree without CSV).
        mapping: the mapping used (guessed or given), or None for fixed formats.
    """

    index: DatasetIndex
    findings: tuple[Finding, ...] = ()
    n_rows: int = 0
    columns: tuple[str, ...] = ()
    mapping: ColumnMapping | None = field(default=None)


def show(items: Sequence[str], n: int = _SHOW) -> str:
    """The first ``n`` items for a message, with how many more."""
    head = ", ".join(str(i) for i in items[:n])
    return head + (f" (and {len(items) - n} more)" if len(items) > n else "")


def sort_findings(findings: Sequence[Finding]) -> tuple[Finding, ...]:
    """Most serious first, stable within a severity."""
    return tuple(sorted(findings, key=lambda f: SEVERITIES.index(f.severity)))


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a CSV as stripped strings (BOM and ``;`` separators tolerated).

    Raises:
        DataError: the file is missing, empty, not text or has no header.
    """
    if not path.is_file():
        raise DataError(f"metadata file {path} does not exist; check the path or pick the CSV")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            sample = fh.read(64 * 1024)
            fh.seek(0)
            try:
                dialect = csv.Sniffer().sniff(sample, delimiters=",;\t") if sample else csv.excel
            except csv.Error:
                dialect = csv.excel
            reader = csv.reader(fh, dialect)
            header = next(reader, None)
            if not header:
                raise DataError(f"{path.name} is empty; it needs a header row and one row per image")
            header = [h.strip() for h in header]
            rows = []
            for line_no, cells in enumerate(reader, start=2):
                if not any(c.strip() for c in cells):
                    continue  # blank line
                if len(cells) > len(header):
                    raise DataError(f"{path.name} line {line_no} has {len(cells)} cells but the header has "
                                    f"{len(header)} columns; fix the quoting or the separator")
                rows.append({h: (cells[i].strip() if i < len(cells) else "") for i, h in enumerate(header)})
    except UnicodeDecodeError as exc:
        raise DataError(f"{path.name} is not a UTF-8 text CSV ({exc.reason}); save it as CSV UTF-8") from exc
    except csv.Error as exc:
        raise DataError(f"{path.name} is not a readable CSV ({exc})") from exc
    return header, rows


def require_columns(header: Sequence[str], needed: Sequence[str], source: str, hint: str = "") -> None:
    """Raise :class:`DataError` naming every needed column the CSV lacks."""
    missing = [c for c in needed if c and c not in header]
    if missing:
        raise DataError(f"{source} has no column(s) {missing}; columns present: {list(header)}"
                        + (f". {hint}" if hint else ""))


def scan_images(root: Path) -> list[str]:
    """Relative POSIX paths of every file under ``root`` with an image extension, sorted.

    Hidden files and folders (``.x``) are skipped: they are OS litter, not data.
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                found.append(Path(dirpath, name).relative_to(root).as_posix())
    return sorted(found)


class ImageResolver:
    """Matches a CSV cell (relative path, file name or id without extension) to an image file."""

    def __init__(self, files: Sequence[str]):
        self.files = tuple(files)
        self._by_path = {f: f for f in files}
        self._by_name: dict[str, list[str]] = {}
        self._by_stem: dict[str, list[str]] = {}
        for f in files:
            p = Path(f)
            self._by_name.setdefault(p.name.lower(), []).append(f)
            self._by_stem.setdefault(p.stem.lower(), []).append(f)

    def resolve(self, cell: str) -> tuple[str | None, bool]:
        """``(path, ambiguous)``: the matching file, or None; ambiguous when several files match."""
        cell = cell.replace("\\", "/")
        if cell.startswith("./"):
            cell = cell[2:]
        if cell in self._by_path:
            return cell, False
        for table, key in ((self._by_name, Path(cell).name.lower()), (self._by_stem, Path(cell).name.lower()),
                           (self._by_stem, Path(cell).stem.lower())):
            hits = table.get(key)
            if hits:
                return (hits[0], False) if len(hits) == 1 else (None, True)
        return None, False


def guess_column(header: Sequence[str], guesses: Sequence[str]) -> str:
    """The first header name matching a guess (case-insensitive), or ``""``."""
    lowered = {h.lower(): h for h in header}
    for g in guesses:
        if g in lowered:
            return lowered[g]
    return ""


def guess_mapping(header: Sequence[str], csv_name: str | None = None) -> ColumnMapping:
    """A mapping guessed from common column names; image/label may come back empty."""
    attrs = []
    sex = guess_column(header, SEX_COLUMN_GUESSES)
    if sex:
        attrs.append(AttributeSpec(name="sex", column=sex, kind="sex"))
    age = guess_column(header, AGE_COLUMN_GUESSES)
    if age:
        attrs.append(AttributeSpec(name="age", column=age, kind="age"))
    return ColumnMapping(image=guess_column(header, IMAGE_COLUMN_GUESSES),
                         label=guess_column(header, LABEL_COLUMN_GUESSES), attributes=tuple(attrs),
                         group=guess_column(header, GROUP_COLUMN_GUESSES) or None, csv=csv_name)


def age_labels_for(bins: Sequence[float]) -> tuple[str, ...]:
    """Default group names for age edges: the paper's young/middle/old for two edges, else ranges."""
    if len(bins) == 2:
        return ("young", "middle", "old")
    if not bins:
        return ("all",)
    inner = [f"{a:g}-{b:g}" for a, b in zip(bins, bins[1:])]
    return (f"<{bins[0]:g}", *inner, f">{bins[-1]:g}")


def resolve_attributes(defaults: Sequence[AttributeSpec], mapping: ColumnMapping | None) -> tuple[AttributeSpec, ...]:
    """The attributes to derive: the format's ``defaults`` combined with the mapping's (see ColumnMapping)."""
    if mapping is None:
        return tuple(defaults)
    given = tuple(mapping.attributes)
    if not given:
        specs = tuple(defaults)
    elif mapping.extend_defaults:
        # A given attribute replaces the default of its name in place, so sex stays before age.
        by_name = {g.name: g for g in given}
        specs = tuple(by_name.get(d.name, d) for d in defaults)
        specs += tuple(g for g in given if g.name not in {d.name for d in defaults})
    else:
        specs = given
    if mapping.age_bins is not None:
        bins = tuple(float(b) for b in mapping.age_bins)
        labels = tuple(mapping.age_labels) if mapping.age_labels else age_labels_for(bins)
        groups.check_bins(bins, labels)
        specs = tuple(replace(s, bins=bins, labels=labels) if s.kind == "age" else s for s in specs)
    return specs


def complete_mapping(given: ColumnMapping | None, header: Sequence[str], csv_name: str | None) -> ColumnMapping:
    """Fill what the user left empty with guesses; the user's choices always win."""
    guess = guess_mapping(header, csv_name)
    if given is None:
        return guess
    return ColumnMapping(
        image=given.image or guess.image,
        label=given.label or ("" if given.one_hot else guess.label),
        attributes=resolve_attributes(guess.attributes, given),
        group=given.group if given.group is not None else guess.group,
        csv=given.csv or csv_name,
        classes=given.classes,
        one_hot=given.one_hot,
    )  # extend_defaults/age_bins are already applied to ``attributes`` above


def find_csv(root: Path, given: str | None, exclude: Sequence[str] = ()) -> Path | None:
    """The metadata CSV: the one given, else the only ``*.csv`` in ``root`` (None when there is none).

    Raises:
        DataError: the given CSV does not exist, or several CSVs make the choice ambiguous.
    """
    if given:
        path = Path(given) if Path(given).is_absolute() else root / given
        if not path.is_file():
            raise DataError(f"metadata CSV {given!r} not found in {root}; CSVs there: "
                            f"{sorted(p.name for p in root.glob('*.csv'))}")
        return path
    csvs = sorted(p for p in root.glob("*.csv") if p.name not in exclude and not p.name.startswith("."))
    if len(csvs) > 1:
        raise DataError(f"{root} holds several CSVs ({[p.name for p in csvs]}); name the metadata one "
                        "(--csv NAME)")
    return csvs[0] if csvs else None


def _class_order(name: str) -> tuple[int, float, str]:
    # Numeric labels sort as numbers ("2" before "10"); names sort alphabetically after them.
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def _labels(rows: Sequence[dict[str, str]], ids: Sequence[str], mapping: ColumnMapping,
            findings: list[Finding], source: str) -> tuple[list[str | None], tuple[str, ...]]:
    """Class name of every row (None where unusable) and the class names in order."""
    raw: list[str | None] = []
    if mapping.one_hot:
        not_one_hot = []
        for rid, row in zip(ids, rows):
            hot = []
            for col in mapping.one_hot:
                try:
                    value = float(row[col] or "nan")
                except ValueError:
                    value = float("nan")
                if value == 1.0:
                    hot.append(col)
                elif value != 0.0:
                    hot = ["?", "?"]
                    break
            if len(hot) == 1:
                raw.append(hot[0])
            else:
                raw.append(None)
                not_one_hot.append(rid)
        if not_one_hot:
            findings.append(Finding("not_one_hot", "fatal",
                                    f"{source}: {len(not_one_hot)} rows are not one-hot over "
                                    f"{list(mapping.one_hot)} (each row needs exactly one 1 and the rest 0): "
                                    f"{show(not_one_hot)}; fix those rows", tuple(not_one_hot)))
        classes = mapping.classes or tuple(mapping.one_hot)
    else:
        empty = []
        for rid, row in zip(ids, rows):
            value = row[mapping.label]
            raw.append(value or None)
            if not value:
                empty.append(rid)
        if empty:
            findings.append(Finding("empty_labels", "fatal",
                                    f"{source}: {len(empty)} rows have an empty {mapping.label!r}: {show(empty)}; "
                                    "give every row a label or remove it", tuple(empty)))
        classes = mapping.classes or tuple(sorted({v for v in raw if v}, key=_class_order))
    allowed = set(classes)
    outside = Counter(v for v in raw if v and v not in allowed)
    if outside:
        bad_ids = tuple(rid for rid, v in zip(ids, raw) if v and v not in allowed)
        findings.append(Finding("unknown_labels", "fatal",
                                f"{source}: labels not in the label set {list(classes)}: "
                                f"{', '.join(f'{k!r} x{n}' for k, n in outside.most_common(_SHOW))} "
                                f"(rows {show(bad_ids)}); fix the labels or the label set", bad_ids))
    return raw, tuple(classes)


def _attributes(rows: Sequence[dict[str, str]], ids: Sequence[str], specs: Sequence[AttributeSpec],
                findings: list[Finding], source: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    out = []
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise DataError(f"attribute names must be unique; got {names}")
    for spec in specs:
        cells = [row[spec.column] for row in rows]
        derived = groups.derive(spec, cells)
        if derived.unrecognized:
            bad_values = {v for v, _ in derived.unrecognized}
            bad_ids = tuple(rid for rid, c in zip(ids, cells) if c.strip() in bad_values)
            is_age = spec.kind == "age"
            code = "age_as_text" if is_age else "unknown_sex"
            examples = ", ".join(f"{v!r} x{n}" for v, n in derived.unrecognized[:_SHOW])
            what = "ages written as text or out of range (not numbers from 0 to 130)" if is_age else "sex values other than male/female"
            fix = "numbers" if is_age else "male/female (or M/F)"
            findings.append(Finding(code, "fatal", f"{source}: column {spec.column!r} has {len(bad_ids)} {what}: "
                                    f"{examples} (rows {show(bad_ids)}); write them as {fix} or leave the cell "
                                    "empty for unknown", bad_ids))
        out.append((spec.name, derived.values))
    return tuple(out)


def build_index(root: Path, fmt: str, source: str, rows: Sequence[dict[str, str]], mapping: ColumnMapping,
                files: Sequence[str] | None = None, header: Sequence[str] = (),
                extra: Sequence[Finding] = ()) -> Loaded:
    """Turn CSV rows into a :class:`Loaded` under ``mapping`` (shared by the generic and HAM10000 readers).

    Raises:
        DataError: no row matches any image, or the CSV has no rows.
    """
    findings: list[Finding] = list(extra)
    if not rows:
        raise DataError(f"{source} has a header but no rows; add one row per image")
    files = scan_images(root) if files is None else files
    resolver = ImageResolver(files)
    ids = [row[mapping.image] for row in rows]
    empty = [str(i + 2) for i, v in enumerate(ids) if not v]
    if empty:
        findings.append(Finding("empty_ids", "fatal", f"{source}: lines {show(empty)} have an empty "
                                f"{mapping.image!r}; every row needs its image", tuple(empty)))
    dupes = sorted(k for k, n in Counter(v for v in ids if v).items() if n > 1)
    dupe_set = set(dupes)
    if dupes:
        findings.append(Finding("duplicate_ids", "fatal", f"{source}: {len(dupes)} ids appear more than once in "
                                f"{mapping.image!r}: {show(dupes)}; keep one row per image", tuple(dupes)))
    labels, classes = _labels(rows, ids, mapping, findings, source)
    attributes = _attributes(rows, ids, mapping.attributes, findings, source)
    keep, missing, ambiguous, same_file, used = [], [], [], [], set()
    paths: list[str] = []
    for i, rid in enumerate(ids):
        if not rid:
            continue
        path, amb = resolver.resolve(rid)
        if path is None:
            (ambiguous if amb else missing).append(rid)
            continue
        if path in used:
            if rid not in dupe_set:  # a repeated id is already reported as such
                same_file.append(rid)
            continue
        keep.append(i)
        paths.append(path)
        used.add(path)
    if not keep:
        raise DataError(f"none of the {len(rows)} ids in {source} ({show(ids)}) match an image file under "
                        f"{root} ({len(files)} images there, e.g. {show(list(files), 3) or 'none'}); check the "
                        "image column and the folder")
    if missing:
        findings.append(Finding("missing_images", "consent",
                                f"{len(missing)} rows of {source} have no image file: {show(missing)}; add the "
                                "images, or allow leaving these rows out", tuple(missing)))
    if same_file:
        findings.append(Finding("duplicate_images", "fatal",
                                f"{len(same_file)} rows of {source} name an image file an earlier row already "
                                f"names: {show(same_file)}; keep one row per image", tuple(same_file)))
    if ambiguous:
        findings.append(Finding("ambiguous_images", "fatal",
                                f"{len(ambiguous)} ids match several image files: {show(ambiguous)}; write the "
                                "relative path in the image column", tuple(ambiguous)))
    orphans = tuple(f for f in files if f not in used)
    if orphans:
        findings.append(Finding("orphan_images", "warning",
                                f"{len(orphans)} image files have no row in {source}: {show(orphans)}; they are "
                                "ignored", orphans))
    label_idx = {c: k for k, c in enumerate(classes)}
    group_ids = None
    if mapping.group:
        # A row without a lesion/patient id is its own group: it cannot leak into another.
        group_ids = tuple(rows[i][mapping.group] or f"__row_{ids[i]}" for i in keep)
    index = DatasetIndex(
        root=str(root),
        format=fmt,
        ids=tuple(ids[i] for i in keep),
        paths=tuple(paths),
        labels=tuple(label_idx.get(labels[i] or "", -1) for i in keep),
        class_names=classes,
        attributes=tuple((name, tuple(values[i] for i in keep)) for name, values in attributes),
        group_ids=group_ids,
        problems=tuple(f.message for f in sort_findings(findings) if f.severity != "info"),
    )
    return Loaded(index=index, findings=sort_findings(findings), n_rows=len(rows), columns=tuple(header),
                  mapping=mapping)


def read_generic(root: str | os.PathLike, mapping: ColumnMapping | None = None) -> Loaded:
    """Read a folder holding one metadata CSV and images anywhere below it.

    Args:
        root: the data folder.
        mapping: which columns mean what; unset parts are guessed from common names.

    Raises:
        DataError: no CSV, a needed column missing (the message lists the columns present), or no
            id matching an image.
    """
    root = Path(root)
    csv_path = find_csv(root, mapping.csv if mapping else None)
    if csv_path is None:
        raise DataError(f"{root} holds no CSV; a generic data set needs a CSV with an image and a label column "
                        "(or use --format folder for one sub-folder per class)")
    header, rows = read_csv(csv_path)
    mapping = complete_mapping(mapping, header, csv_path.name)
    if not mapping.image or not (mapping.label or mapping.one_hot):
        raise DataError(f"cannot tell which columns of {csv_path.name} hold the image and the label (columns: "
                        f"{header}); pass --image-col and --label-col")
    needed = [mapping.image, mapping.label, *mapping.one_hot, *(a.column for a in mapping.attributes),
              mapping.group or ""]
    require_columns(header, needed, csv_path.name, "map the columns with --image-col/--label-col/--attr")
    return build_index(root, "generic", csv_path.name, rows, mapping, header=header)


def read_folder_tree(root: str | os.PathLike, mapping: ColumnMapping | None = None) -> Loaded:
    """Read a class-per-folder tree (``root/<class>/<image>``) with an optional CSV of attributes.

    The CSV (the only one in ``root``, or ``mapping.csv``) needs an image column (file name, relative
    path or id) and the attribute columns; an image it does not list gets ``unknown`` attributes.

    Raises:
        DataError: fewer than two class folders with images, or a CSV column missing.
    """
    root = Path(root)
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
                        and d.name != "__MACOSX" and scan_images(d))
    if len(class_dirs) < 2:
        raise DataError(f"{root} needs at least two sub-folders of images (one per class) for --format folder; "
                        f"found {[d.name for d in class_dirs]}")
    files = [f"{d.name}/{f}" for d in class_dirs for f in scan_images(d)]
    findings: list[Finding] = []
    csv_path = find_csv(root, mapping.csv if mapping else None)
    classes = tuple(d.name for d in class_dirs)
    if mapping is not None and mapping.classes and set(mapping.classes) != set(classes):
        findings.append(Finding("unknown_labels", "fatal",
                                f"class folders {list(classes)} differ from the label set {list(mapping.classes)}; "
                                "rename the folders or fix the label set"))
    if csv_path is None:
        rows = [{"image": f, "label": f.split("/", 1)[0]} for f in files]
        m = ColumnMapping(image="image", label="label", classes=classes)
        return build_index(root, "folder", root.name, rows, m, files=files, extra=findings)
    header, csv_rows = read_csv(csv_path)
    m = complete_mapping(mapping, header, csv_path.name)
    if not m.image:
        raise DataError(f"cannot tell which column of {csv_path.name} names the image (columns: {header}); "
                        "pass --image-col")
    require_columns(header, [m.image, *(a.column for a in m.attributes), m.group or ""], csv_path.name)
    resolver = ImageResolver(files)
    by_file: dict[str, dict[str, str]] = {}
    unmatched, dupes = [], []
    for row in csv_rows:
        path, _ = resolver.resolve(row[m.image])
        if path is None:
            unmatched.append(row[m.image])
        elif path in by_file:
            dupes.append(row[m.image])
        else:
            by_file[path] = row
    if not by_file:
        raise DataError(f"none of the {len(csv_rows)} ids in {csv_path.name} ({show([r[m.image] for r in csv_rows])})"
                        f" match an image in the class folders of {root}; check the image column")
    if dupes:
        findings.append(Finding("duplicate_ids", "fatal", f"{csv_path.name}: {len(dupes)} images are listed more "
                                f"than once: {show(dupes)}; keep one row per image", tuple(dupes)))
    if unmatched:
        findings.append(Finding("missing_images", "consent", f"{len(unmatched)} rows of {csv_path.name} name no "
                                f"image in the class folders: {show(unmatched)}; add the images or allow leaving "
                                "these rows out", tuple(unmatched)))
    no_row = [f for f in files if f not in by_file]
    if no_row:
        findings.append(Finding("images_without_attributes", "warning", f"{len(no_row)} images have no row in "
                                f"{csv_path.name}: {show(no_row)}; their attributes are {UNKNOWN!r}", tuple(no_row)))
    blank = {c: "" for c in header}
    rows = []
    for f in files:
        row = dict(by_file.get(f, blank))
        row["__image"], row["__label"] = f, f.split("/", 1)[0]
        rows.append(row)
    ids = [by_file[f][m.image] if f in by_file else f for f in files]
    for row, rid in zip(rows, ids):
        row["__id"] = rid
    inner = ColumnMapping(image="__image", label="__label", attributes=m.attributes, group=m.group,
                          csv=csv_path.name, classes=classes)
    loaded = build_index(root, "folder", csv_path.name, rows, inner, files=files, header=header, extra=findings)
    index = loaded.index
    index = DatasetIndex(root=index.root, format=index.format, ids=tuple(ids), paths=index.paths,
                         labels=index.labels, class_names=index.class_names, attributes=index.attributes,
                         group_ids=index.group_ids, problems=index.problems)
    user_mapping = ColumnMapping(image=m.image, attributes=m.attributes, group=m.group, csv=csv_path.name,
                                 classes=classes)
    return Loaded(index=index, findings=loaded.findings, n_rows=len(csv_rows), columns=tuple(header),
                  mapping=user_mapping)
