"""Tiny generated data sets in every format a user can bring (for the B2 data-import tests)."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("cat_a", "cat_b", "cat_c")


def image(path: Path, seed: int = 0, size: tuple[int, int] = (24, 20), fmt: str = "JPEG") -> Path:
    """A small noisy image (different per seed) written to ``path``."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def generic_rows(n: int = 30):
    """Rows (id, label, sex, age, patient) with every class and both sexes present."""
    rows = []
    for i in range(n):
        sex = ["male", "female", "F", ""][i % 4]
        age = ["25", "45.0", "70", ""][i % 4]
        rows.append([f"img_{i:03d}", CLASSES[i % 3], sex, age, f"p{i // 2}"])
    return rows


def make_generic(root: Path, n: int = 30, id_style: str = "name") -> Path:
    """CSV ``meta.csv`` (file, diagnosis, gender, age, patient) + images under ``pics/``.

    ``id_style``: "name" (img_000.jpg), "path" (pics/img_000.jpg) or "id" (img_000).
    """
    rows = generic_rows(n)
    for i, r in enumerate(rows):
        image(root / "pics" / f"{r[0]}.jpg", seed=i)
        r[0] = {"name": f"{r[0]}.jpg", "path": f"pics/{r[0]}.jpg", "id": r[0]}[id_style]
    write_csv(root / "meta.csv", ["file", "diagnosis", "gender", "age", "patient"], rows)
    return root


HAM_CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


def make_ham(root: Path, n: int = 28) -> Path:
    """HAM10000 layout: metadata CSV + images split over part_1/part_2; lesions with 2 images."""
    rows = []
    for i in range(n):
        image_id = f"ISIC_{24306 + i:07d}"
        folder = "HAM10000_images_part_1" if i % 2 else "HAM10000_images_part_2"
        image(root / folder / f"{image_id}.jpg", seed=100 + i)
        rows.append([f"HAM_{i // 2:07d}", image_id, HAM_CLASSES[(i // 2) % 7], "histo",
                     ["30.0", "75.0", "", "15.0"][i % 4], ["male", "female", "unknown"][i % 3], "back", "vidir"])
    write_csv(root / "HAM10000_metadata.csv",
              ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "dataset"], rows)
    return root


def make_folder(root: Path, per_class: int = 8, with_csv: bool = True) -> Path:
    """root/<class>/<img>.png with a CSV of attributes (image, sex, age, skin) for all but one image."""
    rows = []
    k = 0
    for c in CLASSES:
        for j in range(per_class):
            name = f"{c}_{j}.png"
            image(root / c / name, seed=200 + k, fmt="PNG")
            rows.append([name, ["male", "female"][k % 2], str(20 + 2 * k), ["I", "II", "V"][k % 3]])
            k += 1
    if with_csv:
        write_csv(root / "attributes.csv", ["image", "sex", "age", "skin"], rows[:-1])
    return root


ISIC_CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")


def make_isic(root: Path, n: int = 24) -> Path:
    """ISIC 2019 layout: one-hot ground truth (with UNK), metadata, ISIC_2019_Training_Input/."""
    gt, meta = [], []
    for i in range(n):
        iid = f"ISIC_{i:07d}"
        image(root / "ISIC_2019_Training_Input" / f"{iid}.jpg", seed=300 + i)
        one_hot = [0.0] * 9
        one_hot[i % 8] = 1.0
        gt.append([iid, *one_hot])
        meta.append([iid, ["35", "70", "20", ""][i % 4], "head/neck", f"IL_{i // 2:07d}", ["male", "female", ""][i % 3]])
    write_csv(root / "ISIC_2019_Training_GroundTruth.csv", ["image", *ISIC_CLASSES, "UNK"], gt)
    write_csv(root / "ISIC_2019_Training_Metadata.csv",
              ["image", "age_approx", "anatom_site_general", "lesion_id", "sex"], meta)
    return root


def zip_folder(folder: Path, zip_path: Path, top: str | None = "dataset") -> Path:
    """Zip every file under ``folder`` (inside a top folder ``top`` when given)."""
    with zipfile.ZipFile(zip_path, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                rel = p.relative_to(folder).as_posix()
                zf.write(p, f"{top}/{rel}" if top else rel)
    return zip_path


def truncated_jpeg(path: Path, seed: int = 0) -> Path:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    data = buf.getvalue()
    path.write_bytes(data[: len(data) // 2])
    return path


def big_png(path: Path, width: int, height: int) -> Path:
    """A PNG of many pixels but few bytes (a decompression-bomb stand-in)."""
    Image.new("L", (width, height)).save(path, "PNG")
    return path
