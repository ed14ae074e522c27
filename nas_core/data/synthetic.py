"""The embedded default data set: a deterministic generator of dermoscopy-like images.

The product must work on a fresh machine with no download, so it ships a generator instead of
data. :func:`make_default` writes a *synthetic* data set in the real ISIC 2019 layout, so it goes
through exactly the loader, cache and split that real data go through:

- ``<out>/ISIC_2019_Training_Input/ISIC_00xxxxx.jpg`` (about 5% of ids end ``_downsampled`` and
  are stored smaller, as in the real archive); images are landscape (4:3), so the cache's
  centre crop is exercised;
- ``<out>/ISIC_2019_Training_GroundTruth.csv``: one-hot ``image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK``
  (UNK always 0);
- ``<out>/ISIC_2019_Training_Metadata.csv``: ``image,age_approx,anatom_site_general,lesion_id,sex``
  with empty cells where a value is missing (about 3% of sex and 3% of age).

What is simulated, and why:

- The 8 ISIC 2019 classes with ISIC's imbalance (NV about half, DF and VASC about 1%, with a floor
  so every class is present), each with its own shape, colours and texture (irregular multi-colour
  melanoma, round brown naevus with a pigment network, pink pearly BCC with vessels, scaly red AK,
  waxy BKL with milia, small DF with a white centre, red-purple lobular VASC, keratotic SCC).
  Colours and features overlap between classes on purpose, so architecture matters.
- Sex and age depend on the class as in ISIC (AK, BCC and SCC older; NV younger; more men among
  AK/SCC), and the appearance shifts with the group: older skin has **lower lesion contrast and
  more texture noise**, men have more hair and slightly darker skin. On top of that the **whole
  photo** shifts by group, affinely per channel: older patients' photos are flatter (contrast
  towards the photo's mean, :data:`WHOLE_PHOTO_FLATTENING`) and hazier, men's have a warmer colour
  cast. A network that normalizes each image's features (instance, layer, group norm) or sees
  the lesion whole (receptive field) can undo part of that; fine texture lost in noise it cannot.
  A plain CNN therefore shows a real accuracy gap between groups, which is what a fairness search
  needs to have something to fix, and architectures differ in how large it is.
- Class cues at several scales: colour (global), outline irregularity and size (needs a large
  receptive field), pigment network, dots and thin vessels (a few pixels: needs resolution and
  early, unpooled layers). Only 6% of lesions borrow a lookalike's colours or features
  (:data:`P_LOOKALIKE`; it was 22%, which capped every network near the same accuracy), so a
  stronger network can score clearly higher than a weak one.
- Skin of varied tone, hair, vignetting, a dermoscope's round frame on some images, sensor noise.
- A ``lesion_id`` shared by 2-3 slightly perturbed photos of the same lesion for about 15% of the
  lesions (so the split must keep them together), and an ``anatom_site_general`` per lesion.

Calibration: ``benchmarks/bench_fidelity.py`` trains 24 specs across the CNN space twice (init
seeds 0 and 1, one split) and prints the accuracy spread, the Unfairness spread against its
bootstrap interval and the noise ceiling; its ``--quick`` form uses a 2,400-image copy at 32 px.
The default size, :data:`DEFAULT_N_IMAGES` = 7,500, split by :data:`DEFAULT_FRACTIONS` (56/16/28,
written to :data:`SPLIT_FILE` beside the CSVs), gives the same 4,200 training and 1,200 validation
images as the former 6,000-image 70/20/10 set and a 2,100-image test split (the majority class, NV,
is half of it; every age group holds at least a sixth of the images).

Determinism: every lesion and every photo draws from its own ``numpy`` generator seeded by
``(seed, lesion, photo)``, so the output does not depend on the number of worker processes.
The data are synthetic: figures measured on them say nothing about real skin lesions.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from nas_core.data.pool import process_pool

log = logging.getLogger(__name__)

CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")
#: Image counts of the real ISIC 2019 training set; only the proportions are used.
ISIC_COUNTS = {"MEL": 4522, "NV": 12875, "BCC": 3323, "AK": 867, "BKL": 2624, "DF": 239, "VASC": 253, "SCC": 628}
#: Mean and spread of age per class (older patients for keratinocyte cancers, as in ISIC).
#: NV is younger than in ISIC so that every age group holds at least a fifth of the images (a
#: group's accuracy interval on the test split stays within about +-5 points).
AGE = {"MEL": (58, 17), "NV": (35, 16), "BCC": (67, 13), "AK": (72, 10), "BKL": (62, 15), "DF": (42, 14),
       "VASC": (48, 20), "SCC": (72, 11)}
#: Probability that a lesion's patient is male, per class.
P_MALE = {"MEL": 0.56, "NV": 0.49, "BCC": 0.58, "AK": 0.66, "BKL": 0.54, "DF": 0.40, "VASC": 0.50, "SCC": 0.63}
SITES = ("anterior torso", "posterior torso", "lateral torso", "head/neck", "upper extremity",
         "lower extremity", "palms/soles", "oral/genital")
#: Site weights per class: sun-exposed head/neck for AK/BCC/SCC, trunk for naevi and melanoma.
SITE_WEIGHTS = {
    "MEL": (5, 5, 1, 3, 3, 4, 0.3, 0.1), "NV": (8, 7, 1, 1, 2, 4, 0.4, 0.2),
    "BCC": (3, 3, 0.5, 9, 1, 1, 0.1, 0.1), "AK": (1, 1, 0.2, 10, 3, 1, 0.1, 0.1),
    "BKL": (5, 4, 1, 5, 2, 2, 0.2, 0.1), "DF": (1, 1, 0.2, 0.5, 3, 8, 0.1, 0.1),
    "VASC": (3, 2, 1, 3, 2, 3, 0.3, 0.5), "SCC": (1, 1, 0.2, 8, 4, 3, 0.1, 0.2),
}
#: Default size and split: 7,500 images split 56/16/28 keep the training (4,200) and validation
#: (1,200) splits of the former 6,000-image 70/20/10 set, so training costs the same, and give a
#: 2,100-image test split, so a main group's accuracy interval is within about +-5 points (the
#: smallest age group holds about a fifth of the images). Generation stays under a minute on 2 cores.
DEFAULT_N_IMAGES = 7500
#: (train, validation, test) fractions the generated data set asks for, written to :data:`SPLIT_FILE`.
DEFAULT_FRACTIONS = (0.56, 0.16, 0.28)
#: Sidecar file (not part of the ISIC layout; other tools ignore it) holding the split fractions
#: this data set asks for; :func:`nas_core.data.prepare.split_fractions` reads it.
SPLIT_FILE = "equinas_split.json"
#: From this many images up, :func:`make_default` asks for :data:`DEFAULT_FRACTIONS` by default.
AUTO_SPLIT_MIN = 1000
P_MISSING_SEX = 0.03
P_MISSING_AGE = 0.03
P_MISSING_SITE = 0.05
P_DOWNSAMPLED = 0.05
P_MULTI = (0.85, 0.10, 0.05)  # a lesion has 1, 2 or 3 photos
GROUND_TRUTH = "ISIC_2019_Training_GroundTruth.csv"
METADATA = "ISIC_2019_Training_Metadata.csv"
IMAGE_DIR = "ISIC_2019_Training_Input"


@dataclass(frozen=True)
class Lesion:
    """Everything that stays the same across the photos of one lesion."""

    index: int  # position in the generation order; seeds its generator
    label: str  # one of CLASSES
    age: int  # true age (appearance uses it even when the metadata hides it)
    male: bool
    site: str
    n_photos: int
    tone: float  # skin tone, 0 light .. 1 dark


@dataclass(frozen=True)
class _Photo:
    image_id: str
    lesion: Lesion
    photo: int
    downsampled: bool


def _class_counts(n_images: int) -> dict[str, int]:
    """Images per class: ISIC's proportions with a floor so every class is present."""
    total = sum(ISIC_COUNTS.values())
    floor = max(6, round(0.012 * n_images))  # tiny sets still put every class in every part
    counts = {c: max(floor, round(n_images * ISIC_COUNTS[c] / total)) for c in CLASSES}
    counts["NV"] += n_images - sum(counts.values())  # NV absorbs rounding and the floors
    if counts["NV"] < floor:
        raise ValueError(f"n_images={n_images} is too small for 8 classes; use at least {10 * floor}")
    return counts


def plan(n_images: int, seed: int) -> list[_Photo]:
    """Draw the lesions, their patients and photos: the metadata of the whole data set."""
    rng = np.random.default_rng([seed, 0])
    counts = _class_counts(n_images)
    photos: list[_Photo] = []
    lesions: list[Lesion] = []
    # One pool of class labels, shuffled, consumed lesion by lesion; a lesion with k photos takes
    # k labels of its class so the class counts stay exact.
    remaining = dict(counts)
    order = rng.permutation(np.repeat(np.arange(len(CLASSES)), [counts[c] for c in CLASSES]))
    for ci in order:
        label = CLASSES[ci]
        if remaining[label] == 0:
            continue
        k = int(rng.choice(3, p=P_MULTI)) + 1
        k = min(k, remaining[label])
        remaining[label] -= k
        mean, sd = AGE[label]
        age = int(np.clip(5 * round(rng.normal(mean, sd) / 5), 5, 85))
        male = bool(rng.random() < P_MALE[label])
        w = np.asarray(SITE_WEIGHTS[label], dtype=float)
        site = SITES[int(rng.choice(len(SITES), p=w / w.sum()))]
        # Men's skin a little darker on average: part of the group-dependent appearance.
        tone = float(np.clip(rng.beta(2.0, 3.5) + (0.06 if male else 0.0), 0, 1))
        lesions.append(Lesion(len(lesions), label, age, male, site, k, tone))
    ids = rng.permutation(len(order))  # ISIC ids are not grouped by lesion
    down = rng.random(len(order)) < P_DOWNSAMPLED
    i = 0
    for lesion in lesions:
        for p in range(lesion.n_photos):
            name = f"ISIC_{ids[i]:07d}" + ("_downsampled" if down[i] else "")
            photos.append(_Photo(name, lesion, p, bool(down[i])))
            i += 1
    return photos


# ----------------------------------------------------------------------------------------------
# Rendering


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: a small random grid upsampled bicubically."""
    grid = rng.standard_normal((cells, max(2, round(cells * w / h)))).astype(np.float32)
    return np.asarray(Image.fromarray(grid).resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)


_PALETTE = {  # (main colour, second colour) in RGB 0..1
    "MEL": ((0.25, 0.14, 0.10), (0.40, 0.36, 0.44)),
    "NV": ((0.45, 0.28, 0.17), (0.32, 0.19, 0.12)),
    "BCC": ((0.82, 0.58, 0.58), (0.70, 0.35, 0.35)),
    "AK": ((0.78, 0.44, 0.38), (0.88, 0.80, 0.72)),
    "BKL": ((0.55, 0.40, 0.26), (0.40, 0.28, 0.18)),
    "DF": ((0.55, 0.36, 0.25), (0.92, 0.86, 0.80)),
    "VASC": ((0.60, 0.12, 0.22), (0.42, 0.10, 0.35)),
    "SCC": ((0.76, 0.40, 0.36), (0.90, 0.84, 0.58)),
}
#: (radius, irregularity, border softness, second-colour share): the class's shape habits.
_SHAPE = {
    "MEL": (0.46, 0.22, 0.06, 0.45), "NV": (0.38, 0.06, 0.05, 0.25), "BCC": (0.40, 0.12, 0.08, 0.30),
    "AK": (0.42, 0.16, 0.14, 0.35), "BKL": (0.42, 0.10, 0.03, 0.30), "DF": (0.26, 0.06, 0.08, 0.50),
    "VASC": (0.30, 0.10, 0.03, 0.40), "SCC": (0.40, 0.18, 0.08, 0.40),
}
#: Classes borrow each other's look sometimes: the confusions a dermatologist knows.
_LOOKALIKE = {"MEL": "NV", "NV": "MEL", "BCC": "AK", "AK": "SCC", "BKL": "MEL", "DF": "NV", "VASC": "BCC",
              "SCC": "AK"}
P_LOOKALIKE = 0.06  # chance that a lesion takes its lookalike's colours (label noise: caps accuracy)


#: How much an 80-year-old's whole photo is flattened towards its mean colour (0 = not at all).
WHOLE_PHOTO_FLATTENING = 0.45
#: Per-channel colour cast of the photo by sex (lighting and skin redness differ).
_CAST_MALE = np.array([1.05, 0.98, 0.93], dtype=np.float32)
_CAST_FEMALE = np.array([0.97, 1.0, 1.03], dtype=np.float32)


def _skin_colour(tone: float) -> np.ndarray:
    light = np.array([0.93, 0.78, 0.70])
    dark = np.array([0.45, 0.30, 0.22])
    return light + (dark - light) * tone


def render(lesion: Lesion, photo: int, size: int, seed: int) -> np.ndarray:
    """One photo of ``lesion`` as an RGB uint8 array of shape (size, round(size*4/3), 3).

    The lesion's own generator fixes its shape, colours and features; the photo's generator adds
    what changes between two photos of it (pose, light, hair, noise).
    """
    lr = np.random.default_rng([seed, 1, lesion.index])
    pr = np.random.default_rng([seed, 2, lesion.index, photo])
    h, w = size, round(size * 4 / 3)
    ys = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    xs = np.linspace(-w / h, w / h, w, dtype=np.float32)[None, :]

    # Group-dependent appearance: the source of the accuracy gap between groups.
    agef = np.clip((lesion.age - 20) / 60, 0, 1)
    contrast = 1.0 - 0.5 * agef  # older skin: the lesion stands out less
    texture = 0.03 + 0.09 * agef  # older skin: more wrinkles and spots

    look = _LOOKALIKE[lesion.label] if lr.random() < P_LOOKALIKE else lesion.label
    c1, c2 = (np.asarray(c, dtype=np.float32) for c in _PALETTE[look])
    c1 = np.clip(c1 * lr.normal(1, 0.12) + lr.normal(0, 0.025, 3), 0, 1)
    c2 = np.clip(c2 * lr.normal(1, 0.12) + lr.normal(0, 0.025, 3), 0, 1)
    radius, irregular, soft, share = _SHAPE[lesion.label]
    radius *= lr.uniform(0.75, 1.25)
    irregular *= lr.uniform(0.5, 1.5)
    harmonics = [(k, lr.uniform(0, irregular) / k ** 0.7, lr.uniform(0, 2 * np.pi)) for k in range(2, 8)]
    aspect = lr.uniform(0.75, 1.0)

    # Photo pose: small rotation, shift and zoom between photos of one lesion.
    rot = lr.uniform(0, 2 * np.pi) + pr.normal(0, 0.2)
    cx, cy = pr.normal(0, 0.08, 2)
    zoom = pr.uniform(0.9, 1.1)
    dx, dy = xs - cx, ys - cy
    u = (dx * np.cos(rot) + dy * np.sin(rot)) / zoom
    v = (-dx * np.sin(rot) + dy * np.cos(rot)) / (zoom * aspect)
    r = np.sqrt(u * u + v * v)
    theta = np.arctan2(v, u)
    boundary = radius * (1 + sum(a * np.cos(k * theta + ph) for k, a, ph in harmonics))
    mask = 1 / (1 + np.exp(-(boundary - r) / (soft * radius + 1e-3)))
    inner = np.clip(r / np.maximum(boundary, 1e-3), 0, 1.5)

    # Lesion colour: two colours mixed by a smooth field, plus class features.
    blend = (_smooth_noise(lr, h, w, 4) * 0.5 + 0.5) < share
    if lesion.label in ("DF", "SCC"):
        blend = inner < share * 0.8  # white scar / central crust sits in the middle
    col = np.where(blend[..., None], c2, c1)
    col = col * (1 + 0.15 * _smooth_noise(lr, h, w, 6)[..., None])
    if look in ("NV", "MEL") or lesion.label in ("NV", "MEL"):
        freq = lr.uniform(18, 30)
        net = np.sin(freq * u) * np.sin(freq * v)
        col = col * (1 - 0.25 * (net > 0.3)[..., None] * lr.uniform(0.3, 1.0))
    feature = lesion.label if lr.random() > P_LOOKALIKE else look
    dots = np.zeros((h, w), dtype=np.float32)
    if feature in ("BKL", "AK", "MEL", "VASC"):
        n_dots = int(lr.integers(4, 14))
        for _ in range(n_dots):
            ang, rad = lr.uniform(0, 2 * np.pi), radius * np.sqrt(lr.uniform(0, 0.7))
            px, py = rad * np.cos(ang), rad * np.sin(ang)
            s = radius * (0.14 if feature == "VASC" else 0.06)
            dots += np.exp(-((u - px) ** 2 + (v - py) ** 2) / (2 * s * s))
        dots = np.clip(dots, 0, 1)
        dot_col = {"BKL": (0.95, 0.92, 0.85), "AK": (0.95, 0.93, 0.9), "MEL": (0.1, 0.08, 0.1),
                   "VASC": (0.35, 0.05, 0.2)}[feature]
        col = col * (1 - dots[..., None]) + np.asarray(dot_col) * dots[..., None]
    col = np.clip(col, 0, 1)

    # Skin: tone, mottling, texture noise that grows with age.
    skin = _skin_colour(np.clip(lesion.tone + pr.normal(0, 0.03), 0, 1)).astype(np.float32)
    base = skin * (1 + 0.05 * _smooth_noise(pr, h, w, 5)[..., None])
    alpha = (mask * contrast)[..., None]
    img = base * (1 - alpha) + col * alpha
    img = img * (1 + texture * _smooth_noise(pr, h, w, 24)[..., None])
    img = img + texture * 0.5 * pr.standard_normal((h, w, 1)).astype(np.float32)

    # Light: global gain, vignetting, sometimes the dermoscope's round frame.
    rr = np.sqrt((xs / (w / h)) ** 2 + ys ** 2)
    img = img * pr.normal(1.0, 0.06) * (1 - pr.uniform(0.1, 0.4) * rr[..., None] ** 2)
    # Whole-photo shifts by group, affine per channel: a network that normalizes each image's
    # features (instance, layer or group norm) can undo them; batch norm over mixed batches cannot.
    flat = 1.0 - WHOLE_PHOTO_FLATTENING * agef  # older patients' photos: flatter and hazier
    m = img.mean(axis=(0, 1), keepdims=True)
    img = (m + (img - m) * flat + 0.08 * agef) * (_CAST_MALE if lesion.male else _CAST_FEMALE)
    if lr.random() < 0.3:  # per lesion: follow-up photos are taken with the same dermoscope
        img = img * (np.sqrt(xs ** 2 + ys ** 2) < lr.uniform(1.05, 1.3))[..., None]
    img = img + pr.normal(0, 0.015, (h, w, 3)).astype(np.float32)
    out = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))

    draw = ImageDraw.Draw(out)
    if lesion.label == "BCC" or (feature == "BCC" and lesion.label != "BCC"):
        # Arborizing vessels: thin red branches over the lesion.
        for _ in range(int(lr.integers(2, 6))):
            ang = lr.uniform(0, 2 * np.pi)
            pts = []
            x0, y0 = cx + radius * 0.2 * np.cos(ang), cy + radius * 0.2 * np.sin(ang)
            for _ in range(5):
                pts.append((float((x0 + w / h) * h / 2), float((y0 + 1) * h / 2)))
                ang += lr.normal(0, 0.6)
                x0, y0 = x0 + radius * 0.18 * np.cos(ang), y0 + radius * 0.18 * np.sin(ang)
            draw.line(pts, fill=(150, 20, 30), width=1)
    n_hair = int(pr.poisson(5.0 if lesion.male else 1.0))
    for _ in range(n_hair):
        x0, y0 = pr.uniform(0, w), pr.uniform(0, h)
        ang = pr.uniform(0, np.pi)
        length = pr.uniform(0.3, 1.0) * h
        bend = pr.normal(0, 0.4)
        pts = [(x0 + t * length * math.cos(ang + bend * t), y0 + t * length * math.sin(ang + bend * t))
               for t in np.linspace(0, 1, 6)]
        shade = int(pr.integers(10, 60))
        draw.line(pts, fill=(shade, shade // 2, shade // 3), width=int(pr.integers(1, 3)))
    return np.asarray(out)


def _render_chunk(photos: list[_Photo], size: int, seed: int, image_dir: str) -> int:
    for ph in photos:
        arr = render(ph.lesion, ph.photo, size, seed)
        img = Image.fromarray(arr)
        if ph.downsampled:
            img = img.resize((img.width * 3 // 4, img.height * 3 // 4), Image.Resampling.BILINEAR)
        img.save(os.path.join(image_dir, ph.image_id + ".jpg"), quality=92)
    return len(photos)


def _write_csvs(photos: list[_Photo], out: Path, seed: int) -> None:
    rng = np.random.default_rng([seed, 3])
    miss = rng.random((len(photos), 3))
    lesion_missing = rng.random(len(photos)) < 0.05
    with open(out / GROUND_TRUTH, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["image", *CLASSES, "UNK"])
        for ph in photos:
            wr.writerow([ph.image_id, *("1.0" if c == ph.lesion.label else "0.0" for c in CLASSES), "0.0"])
    with open(out / METADATA, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["image", "age_approx", "anatom_site_general", "lesion_id", "sex"])
        for i, ph in enumerate(photos):
            les = ph.lesion
            age = "" if miss[i, 0] < P_MISSING_AGE else f"{les.age:.1f}"
            sex = "" if miss[i, 1] < P_MISSING_SEX else ("male" if les.male else "female")
            site = "" if miss[i, 2] < P_MISSING_SITE else les.site
            # A few single-photo lesions carry no lesion id, as in the real archive.
            lid = "" if (les.n_photos == 1 and lesion_missing[i]) else f"BCN_{les.index:07d}"
            wr.writerow([ph.image_id, age, site, lid, sex])


def make_default(
    out_dir: str | Path,
    n_images: int = DEFAULT_N_IMAGES,
    image_size: int = 96,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
    fractions: tuple[float, float, float] | None | str = "auto",
) -> Path:
    """Generate the default data set in the ISIC 2019 layout.

    Args:
        out_dir: folder to create (its parent must be writable). If it already holds a data set
            it is replaced; it is written to a temporary sibling first and renamed, so an
            interrupted run never leaves a half data set behind.
        n_images: number of images (at least 100).
        image_size: image height in pixels (width is 4/3 of it); training resizes anyway.
        seed: everything is a function of the seed.
        progress: called with (images done, total) as chunks finish.
        workers: processes to render with; None = up to 2 for large sets, 0/1 = in this process.
        fractions: (train, validation, test) split fractions written to :data:`SPLIT_FILE`, which
            :func:`nas_core.data.prepare.prepare` uses instead of its 70/20/10; None writes no
            file (the data set then gets the usual split); ``"auto"``: :data:`DEFAULT_FRACTIONS`
            from :data:`AUTO_SPLIT_MIN` images up, none below (a 28% test share of a few hundred
            images would starve training, and tests rely on the usual split of tiny sets).

    Returns:
        The path of the data set folder.
    """
    if n_images < 100:
        raise ValueError(f"n_images must be at least 100, got {n_images}")
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16, got {image_size}")
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    photos = plan(n_images, seed)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        image_dir = tmp / IMAGE_DIR
        image_dir.mkdir()
        if workers is None:
            workers = min(2, os.cpu_count() or 1) if n_images >= 1000 else 1
        chunk = 100
        chunks = [photos[i:i + chunk] for i in range(0, len(photos), chunk)]
        done = 0
        if workers <= 1:
            for ch in chunks:
                done += _render_chunk(ch, image_size, seed, str(image_dir))
                if progress:
                    progress(done, len(photos))
        else:
            with process_pool(workers) as pool:
                futures = [pool.submit(_render_chunk, ch, image_size, seed, str(image_dir)) for ch in chunks]
                for fut in futures:
                    done += fut.result()
                    if progress:
                        progress(done, len(photos))
        _write_csvs(photos, tmp, seed)
        if fractions == "auto":
            fractions = DEFAULT_FRACTIONS if n_images >= AUTO_SPLIT_MIN else None
        if fractions is not None:
            fr = [float(f) for f in fractions]
            if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1) > 1e-6 or fr[0] == 0:
                raise ValueError(f"fractions must be (train, val, test) summing to 1 with train > 0, got {fractions}")
            (tmp / SPLIT_FILE).write_text(json.dumps(
                {"fractions": fr, "why": "a larger test split for tighter group accuracy intervals; "
                 "the training and validation splits keep the size of a 70/20/10 split of 6,000 images"},
                indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote %d synthetic images to %s", len(photos), out)
    return out
