"""Reader for HAM10000 (Tschandl et al. 2018) as distributed by the ISIC archive / Harvard Dataverse.

Owns the HAM10000 layout: ``HAM10000_metadata.csv`` with columns
``lesion_id,image_id,dx,dx_type,age,sex,localization`` (newer releases add
``dataset``) and the images ``<image_id>.jpg`` in one or two folders
(``HAM10000_images_part_1/`` and ``_part_2/``, ``HAM10000_images/``, or the
data folder itself; any folder below the data folder is searched).

Decisions: classes are the seven ``dx`` codes in alphabetical order
(akiec, bcc, bkl, df, mel, nv, vasc); any other code is refused. Attributes
default to sex and age (``age``, binned <30 / 30-65 / >65); HAM10000 writes
``unknown`` for a missing sex, which becomes the ``unknown`` group. The
``lesion_id`` column becomes the group id, so the 10,015 images of 7,470
lesions never straddle a split. ``localization``, ``dx_type`` or ``dataset``
can be added as categorical attributes by name.
"""

from __future__ import annotations

import os
from pathlib import Path

from nas_core.data import groups
from nas_core.data.generic import (
    ColumnMapping,
    Loaded,
    build_index,
    read_csv,
    require_columns,
    resolve_attributes,
)
from nas_core.data.index import AttributeSpec, DataError, DatasetIndex

METADATA_NAMES = ("HAM10000_metadata.csv", "HAM10000_metadata", "HAM10000_metadata.tab")
COLUMNS = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization")
CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


def find_metadata(root: str | os.PathLike) -> Path | None:
    """The HAM10000 metadata file in ``root`` (any letter case), or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    names = {n.lower() for n in METADATA_NAMES}
    for p in sorted(root.iterdir()):
        if p.is_file() and p.name.lower() in names:
            return p
    return None


def detect_ham10000(root: str | os.PathLike) -> bool:
    """True when ``root`` holds a HAM10000 metadata file."""
    return find_metadata(root) is not None


def default_mapping(extra_attributes: tuple[AttributeSpec, ...] = ()) -> ColumnMapping:
    """HAM10000's columns: image_id, dx, sex + age, lesion_id as the group, plus any extra attributes."""
    return ColumnMapping(image="image_id", label="dx",
                         attributes=groups.default_attributes(sex_column="sex", age_column="age") + extra_attributes,
                         group="lesion_id", classes=CLASSES)


def read_ham10000(root: str | os.PathLike, attributes: tuple[AttributeSpec, ...] | None = None,
                  mapping: ColumnMapping | None = None) -> Loaded:
    """Read a HAM10000 folder.

    Args:
        root: folder holding ``HAM10000_metadata.csv`` and the image folder(s).
        attributes: the demographic attributes; None = sex and age (paper default).
        mapping: only its attribute settings are used (attributes, extend_defaults, age bins);
            ``attributes`` wins when both are given.

    Raises:
        DataError: no metadata file, a HAM10000 column missing, or no image_id matching an image.
    """
    root = Path(root)
    meta = find_metadata(root)
    if meta is None:
        raise DataError(f"{root} has no HAM10000_metadata.csv; point at the folder that holds it and the "
                        "HAM10000_images_part_1/_part_2 folders")
    header, rows = read_csv(meta)
    specs = resolve_attributes(default_mapping().attributes, mapping) if attributes is None else tuple(attributes)
    mapping = ColumnMapping(image="image_id", label="dx", attributes=specs, group="lesion_id", classes=CLASSES)
    needed = ["lesion_id", "image_id", "dx", *(a.column for a in mapping.attributes)]
    require_columns(header, needed, meta.name, "HAM10000 needs lesion_id,image_id,dx,dx_type,age,sex,localization")
    return build_index(root, "ham10000", meta.name, rows, mapping, header=header)


def load_ham10000(root: str | os.PathLike, attributes: tuple[AttributeSpec, ...] | None = None) -> DatasetIndex:
    """The :class:`DatasetIndex` of a HAM10000 folder; fatal findings raise.

    Raises:
        DataError: as :func:`read_ham10000`, or a fatal finding (unknown dx code, duplicate
            image_id, age written as text, unknown sex value).
    """
    loaded = read_ham10000(root, attributes)
    fatal = [f.message for f in loaded.findings if f.severity == "fatal"]
    if fatal:
        raise DataError("; ".join(fatal))
    return loaded.index
