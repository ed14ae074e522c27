"""Reader of the ISIC 2019 training set layout (the real archive and the synthetic default).

Owns the rules of that one format:

- ``ISIC_2019_Training_GroundTruth.csv``: one-hot ``image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK``
  (values written ``1.0``/``0.0``). A class column that is zero in every row (ISIC's ``UNK`` in the
  training set) is dropped and named in the problems, because a class without images can be
  neither learned nor measured. A row that is not exactly one-hot is an error naming the rows.
- ``ISIC_2019_Training_Metadata.csv``: ``image,age_approx,anatom_site_general,lesion_id,sex``;
  empty cells are missing values (``unknown`` groups). ``lesion_id`` becomes the index's
  ``group_ids`` so a split keeps photos of one lesion together; a row without a lesion id is its
  own group. Ground-truth rows absent from the metadata get ``unknown`` attributes (reported).
- Images ``<id>.jpg`` in ``ISIC_2019_Training_Input/`` or directly in the root folder (also
  ``.jpeg``/``.png``, any case). Ids ending ``_downsampled`` are ordinary ids whose file has the
  same name. Images without a row are reported, rows without an image are an error.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from nas_core.data.groups import default_attributes, derive_attributes
from nas_core.data.index import AttributeSpec, DataError, DatasetIndex

GROUND_TRUTH = "ISIC_2019_Training_GroundTruth.csv"
METADATA = "ISIC_2019_Training_Metadata.csv"
IMAGE_DIR = "ISIC_2019_Training_Input"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_FIRST = 5  # how many offending ids an error message lists


def _first(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_FIRST])
    return shown + (", ..." if len(items) > _FIRST else "")


def detect_isic2019(root: str | Path) -> bool:
    """True if ``root`` looks like an ISIC 2019 training folder (its ground-truth CSV is there)."""
    root = Path(root)
    return root.is_dir() and (root / GROUND_TRUTH).is_file()


def _read_csv(path: Path, required: Sequence[str], what: str) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        raise DataError(f"{what} {path.name} not found in {path.parent}; an ISIC 2019 folder needs "
                        f"{GROUND_TRUTH} and {METADATA} next to {IMAGE_DIR}/")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path.name} is not a readable CSV file: {exc}") from exc
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"{path.name} has no column(s) {missing}; its columns are {header}")
    return header, rows


def _image_files(root: Path) -> tuple[Path, dict[str, str]]:
    """The image folder and a map id -> file name, from one directory listing."""
    folder = root / IMAGE_DIR if (root / IMAGE_DIR).is_dir() else root
    files: dict[str, str] = {}
    with os.scandir(folder) as it:
        for entry in it:
            stem, ext = os.path.splitext(entry.name)
            if ext.lower() in IMAGE_EXTENSIONS and entry.is_file():
                files.setdefault(stem, entry.name)
    return folder, files


def load_isic2019(root: str | Path, attributes: Sequence[AttributeSpec] | None = None) -> DatasetIndex:
    """Read an ISIC 2019 training folder into a :class:`DatasetIndex` (no image is decoded).

    Args:
        root: the folder holding the two CSV files and the images.
        attributes: demographic attributes to derive from the metadata; default
            :func:`~nas_core.data.groups.default_attributes` (sex, age from ``age_approx``).

    Returns:
        The index in ground-truth order, with problems found along the way.

    Raises:
        DataError: a CSV or one of its columns is missing, a label row is not one-hot, an id is
            repeated, or images are missing; the message names the file, column or ids.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data set folder {root} does not exist; give the folder holding {GROUND_TRUTH}")
    specs = tuple(default_attributes() if attributes is None else attributes)
    problems: list[str] = []

    header, gt_rows = _read_csv(root / GROUND_TRUTH, ["image"], "ground-truth file")
    class_cols = [c for c in header if c != "image"]
    if not class_cols:
        raise DataError(f"{GROUND_TRUTH} has no class columns after 'image'; expected "
                        "MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK")
    if not gt_rows:
        raise DataError(f"{GROUND_TRUTH} has a header but no rows")

    ids: list[str] = []
    onehot: list[list[float]] = []
    bad_rows: list[str] = []
    for n, row in enumerate(gt_rows, start=2):  # line numbers as an editor shows them
        image = (row.get("image") or "").strip()
        try:
            values = [float(row.get(c) or "nan") for c in class_cols]
        except ValueError:
            values = []
        if not image or len(values) != len(class_cols) or sorted(values) != [0.0] * (len(values) - 1) + [1.0]:
            bad_rows.append(f"line {n} ({image or 'no id'})")
            continue
        ids.append(image)
        onehot.append(values)
    if bad_rows:
        raise DataError(f"{GROUND_TRUTH}: {len(bad_rows)} label rows are not one-hot (exactly one 1.0 among "
                        f"{class_cols}): {_first(bad_rows)}")
    seen: set[str] = set()
    dupes = sorted({i for i in ids if i in seen or seen.add(i)})
    if dupes:
        raise DataError(f"{GROUND_TRUTH}: {len(dupes)} image ids appear more than once: {_first(dupes)}")

    used = [j for j in range(len(class_cols)) if any(v[j] for v in onehot)]
    dropped = [class_cols[j] for j in range(len(class_cols)) if j not in used]
    # ISIC's UNK is empty in every training row by design: dropping it is not news.
    dropped = [c for c in dropped if c != "UNK"]
    if dropped:
        problems.append(f"{GROUND_TRUTH}: dropped class column(s) {dropped} with no image")
    class_names = tuple(class_cols[j] for j in used)
    labels = tuple(used.index(v.index(1.0)) for v in onehot)

    needed = ["image", *(s.column for s in specs)]
    md_header, md_rows = _read_csv(root / METADATA, needed, "metadata file")
    meta = {(r.get("image") or "").strip(): r for r in md_rows}
    no_meta = [i for i in ids if i not in meta]
    if no_meta:
        problems.append(f"{METADATA}: {len(no_meta)} images have no metadata row, their attributes are "
                        f"unknown: {_first(no_meta)}")
    columns = {c: [meta.get(i, {}).get(c) for i in ids] for c in md_header}
    attrs, attr_problems = derive_attributes(columns, specs, source=METADATA)
    problems.extend(attr_problems)

    group_ids = None
    if "lesion_id" in md_header:
        # A row without a lesion id is a lesion of its own: key it by its image id.
        group_ids = tuple((meta.get(i, {}).get("lesion_id") or "").strip() or f"image:{i}" for i in ids)

    folder, files = _image_files(root)
    missing = [i for i in ids if i not in files]
    if missing:
        raise DataError(f"{len(missing)} of {len(ids)} ids in {GROUND_TRUTH} have no image file (<id>.jpg) in "
                        f"{folder}: {_first(missing)}")
    extra = sorted(set(files) - set(ids))
    if extra:
        problems.append(f"{len(extra)} images in {folder.name}/ have no row in {GROUND_TRUTH} and are left "
                        f"out: {_first(extra)}")
    prefix = "" if folder == root else IMAGE_DIR + "/"
    return DatasetIndex(
        root=str(root),
        format="isic2019",
        ids=tuple(ids),
        paths=tuple(prefix + files[i] for i in ids),
        labels=labels,
        class_names=class_names,
        attributes=attrs,
        group_ids=group_ids,
        problems=tuple(problems),
    )
