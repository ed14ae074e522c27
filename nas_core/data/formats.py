"""Format detection and the one entry point that reads any data set folder into a DatasetIndex.

Owns the list of formats and the order they are recognized in (the user can
always override it with ``fmt``):

1. ``isic2019``: ``ISIC_2019_Training_GroundTruth.csv`` present (read by
   :mod:`nas_core.data.isic2019`);
2. ``ham10000``: ``HAM10000_metadata.csv`` present (:mod:`nas_core.data.ham10000`);
3. ``generic``: a CSV with an image and a label column (given by the mapping
   or guessed from common names such as ``image``/``label``/``dx``);
4. ``folder``: at least two sub-folders of images, one per class, with an
   optional CSV of attributes;
5. otherwise a CSV that needs its columns named (``generic``).

A folder holding nothing but one sub-folder (a zip that wrapped everything in
a top folder) is read from that sub-folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from nas_core.data import generic, ham10000
from nas_core.data.generic import ColumnMapping, Finding, Loaded
from nas_core.data.index import DataError, DatasetIndex
from nas_core.data.zipsafe import data_root

FORMATS = ("isic2019", "ham10000", "generic", "folder")
ISIC_GROUND_TRUTH = "ISIC_2019_Training_GroundTruth.csv"


def _detect_isic(root: Path) -> bool:
    try:
        from nas_core.data.isic2019 import detect_isic2019
    except ImportError:  # reader not installed yet: fall back to the file that defines the layout
        return (root / ISIC_GROUND_TRUTH).is_file()
    return bool(detect_isic2019(root))


def _isic_finding(problem: str) -> Finding:
    """A problem line of the ISIC reader as a finding; values groups.py could not read are fatal.

    The ISIC reader reports ages written as text and unknown sex values as problem lines (worded by
    :mod:`nas_core.data.groups`); every other format refuses them, so ISIC 2019 does too.
    """
    if "are not ages" in problem:
        return Finding("age_as_text", "fatal", problem.replace("they are counted as", "fix them; they would count as"))
    if "are not a sex" in problem:
        return Finding("unknown_sex", "fatal", problem.replace("they are counted as", "fix them; they would count as"))
    return Finding("reader", "warning", problem)


def resolve_root(path: str | os.PathLike) -> Path:
    """The folder that holds the data (see the module docstring).

    Raises:
        DataError: the path does not exist, or is a file (a zip must be imported, not read in place).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist; give the folder that holds the images and the CSV")
    if path.is_file():
        if path.suffix.lower() == ".zip":
            raise DataError(f"{path.name} is a zip; import it (datasets import) or extract it first")
        raise DataError(f"{path} is a file; give the folder that holds the images and the CSV")
    return data_root(path)


def detect_format(path: str | os.PathLike, mapping: ColumnMapping | None = None) -> str:
    """The format of the data set in ``path`` (one of :data:`FORMATS`).

    Raises:
        DataError: nothing in the folder looks like a data set.
    """
    root = resolve_root(path)
    if _detect_isic(root):
        return "isic2019"
    if ham10000.detect_ham10000(root):
        return "ham10000"
    csvs = sorted(p for p in root.glob("*.csv") if not p.name.startswith("."))
    if mapping is not None and (mapping.label or mapping.one_hot):
        return "generic"
    if csvs:
        try:
            csv_path = generic.find_csv(root, mapping.csv if mapping else None)
        except DataError:
            csv_path = None
        if csv_path is not None:
            header, _ = generic.read_csv(csv_path)
            if generic.guess_column(header, generic.LABEL_COLUMN_GUESSES):
                return "generic"
    subdirs = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and generic.scan_images(d)]
    if len(subdirs) >= 2:
        return "folder"
    if csvs:
        return "generic"
    raise DataError(f"{root} does not look like a data set: no ISIC 2019 or HAM10000 metadata, no CSV and no "
                    "class sub-folders of images; point at the folder that holds the CSV and images")


def read(path: str | os.PathLike, fmt: str | None = None, mapping: ColumnMapping | None = None) -> Loaded:
    """Read a data set folder with every finding the validation report needs.

    Args:
        path: the data folder.
        fmt: one of :data:`FORMATS`; None = detect.
        mapping: column mapping (generic, folder); for ISIC 2019 and HAM10000 only its
            ``attributes`` are used (None = sex and age).

    Raises:
        DataError: unknown format, or a structural problem (missing CSV or column, no image at all).
    """
    root = resolve_root(path)
    if fmt is None:
        fmt = detect_format(root, mapping)
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; choose one of {list(FORMATS)}")
    if fmt == "isic2019":
        from nas_core.data.groups import default_attributes
        from nas_core.data.isic2019 import load_isic2019

        index = load_isic2019(root, attributes=generic.resolve_attributes(default_attributes(), mapping))
        return Loaded(index=index, findings=generic.sort_findings([_isic_finding(p) for p in index.problems]),
                      n_rows=len(index), mapping=mapping)
    if fmt == "ham10000":
        return ham10000.read_ham10000(root, mapping=mapping)
    if fmt == "folder":
        return generic.read_folder_tree(root, mapping)
    return generic.read_generic(root, mapping)


def load_index(path: str | os.PathLike, fmt: str | None = None, mapping: ColumnMapping | None = None) -> DatasetIndex:
    """The :class:`DatasetIndex` of any supported data set folder (what the cache and split read).

    Rows whose image is missing are left out and named in ``index.problems``.

    Raises:
        DataError: as :func:`read`, or any fatal finding (duplicate ids, ages written as text,
            unknown sex values, labels outside the label set), all named in one message.
    """
    loaded = read(path, fmt, mapping)
    fatal = [f.message for f in loaded.findings if f.severity == "fatal"]
    if fatal:
        raise DataError("; ".join(fatal))
    return loaded.index
