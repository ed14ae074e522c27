"""The synthetic default data set: ISIC 2019 layout, class and group structure, determinism, CLI."""

import csv
import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from nas_core.cli import main
from nas_core.data import synthetic
from nas_core.data.synthetic import (
    CLASSES,
    GROUND_TRUTH,
    IMAGE_DIR,
    METADATA,
    Lesion,
    make_default,
    plan,
    render,
)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_layout_and_csv_columns(tiny_dataset):
    gt = _rows(tiny_dataset / GROUND_TRUTH)
    meta = _rows(tiny_dataset / METADATA)
    assert list(gt[0]) == ["image", *CLASSES, "UNK"]
    assert list(meta[0]) == ["image", "age_approx", "anatom_site_general", "lesion_id", "sex"]
    assert len(gt) == len(meta) == 240 and [r["image"] for r in gt] == [r["image"] for r in meta]
    files = {p.name for p in (tiny_dataset / IMAGE_DIR).iterdir()}
    assert files == {r["image"] + ".jpg" for r in gt}
    for r in gt:
        assert sorted(float(r[c]) for c in CLASSES) == [0.0] * 7 + [1.0] and r["UNK"] == "0.0"
    counts = Counter(next(c for c in CLASSES if r[c] == "1.0") for r in gt)
    assert set(counts) == set(CLASSES) and counts.most_common(1)[0][0] == "NV"
    assert min(counts.values()) >= 6
    with Image.open(tiny_dataset / IMAGE_DIR / files.pop()) as img:
        assert img.format == "JPEG" and img.mode == "RGB"


def test_missing_values_sites_and_lesions(tiny_dataset):
    meta = _rows(tiny_dataset / METADATA)
    n_missing_sex = sum(r["sex"] == "" for r in meta)
    n_missing_age = sum(r["age_approx"] == "" for r in meta)
    assert 1 <= n_missing_sex <= 20 and 1 <= n_missing_age <= 20
    assert {r["sex"] for r in meta} == {"male", "female", ""}
    assert all(r["age_approx"] == "" or float(r["age_approx"]) % 5 == 0 for r in meta)
    assert {r["anatom_site_general"] for r in meta} - {""} <= set(synthetic.SITES)
    lesions = Counter(r["lesion_id"] for r in meta if r["lesion_id"])
    assert max(lesions.values()) in (2, 3) and sum(v > 1 for v in lesions.values()) >= 5


def test_metadata_depends_on_class():
    photos = plan(4000, seed=0)
    age = {c: np.mean([p.lesion.age for p in photos if p.lesion.label == c]) for c in CLASSES}
    assert min(age["AK"], age["BCC"], age["SCC"]) > age["NV"] + 15
    counts = Counter(p.lesion.label for p in photos)
    assert counts["NV"] > 0.4 * 4000 and min(counts.values()) >= 40
    assert sum(p.downsampled for p in photos) > 100
    assert sum(p.lesion.male for p in photos if p.lesion.label == "AK") / counts["AK"] > \
        sum(p.lesion.male for p in photos if p.lesion.label == "DF") / counts["DF"]


def test_old_skin_has_lower_lesion_contrast():
    def centre_vs_rim(age):
        diffs = []
        for i in range(12):
            img = render(Lesion(i, "NV", age, False, "anterior torso", 1, 0.3), 0, 64, seed=5).astype(float)
            centre = img[24:40, 35:51].mean()
            rim = np.concatenate([img[:8, 20:65].ravel(), img[-8:, 20:65].ravel()]).mean()
            diffs.append(rim - centre)
        return np.mean(diffs)

    assert centre_vs_rim(25) > 1.4 * centre_vs_rim(80) > 0


def test_photos_of_one_lesion_are_similar_but_not_identical():
    def coarse(lesion, photo):
        img = Image.fromarray(render(lesion, photo, 48, seed=0))
        return np.asarray(img.resize((8, 6), Image.Resampling.BOX), dtype=float)

    same, other = [], []
    for i in range(10):
        les = Lesion(2 * i, "MEL", 50, True, "head/neck", 2, 0.4)
        a, b = coarse(les, 0), coarse(les, 1)
        assert np.abs(a - b).mean() > 0
        same.append(np.abs(a - b).mean())
        other.append(np.abs(a - coarse(Lesion(2 * i + 1, "MEL", 50, True, "head/neck", 1, 0.4), 0)).mean())
    assert np.mean(same) < 0.7 * np.mean(other)


def test_deterministic_and_independent_of_workers(tmp_path):
    a = make_default(tmp_path / "a", n_images=120, image_size=24, seed=7, workers=1)
    b = make_default(tmp_path / "b", n_images=120, image_size=24, seed=7, workers=2)
    c = make_default(tmp_path / "c", n_images=120, image_size=24, seed=8, workers=1)
    for name in (GROUND_TRUTH, METADATA):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / METADATA).read_bytes() != (c / METADATA).read_bytes()
    first = sorted((a / IMAGE_DIR).iterdir())[0].name
    assert (a / IMAGE_DIR / first).read_bytes() == (b / IMAGE_DIR / first).read_bytes()
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary folder left behind


def test_replaces_an_existing_output_and_rejects_bad_sizes(tmp_path):
    out = make_default(tmp_path / "d", n_images=100, image_size=16, seed=0, workers=1)
    (out / "stale.txt").write_text("old")
    make_default(out, n_images=100, image_size=16, seed=0, workers=1)
    assert not (out / "stale.txt").exists()
    with pytest.raises(ValueError, match="at least 100"):
        make_default(tmp_path / "e", n_images=10)
    with pytest.raises(ValueError, match="at least 16"):
        make_default(tmp_path / "e", n_images=100, image_size=4)


def test_cli_make_default(tmp_path, capsys):
    assert main(["datasets", "make-default", "--out", str(tmp_path / "d"), "--n", "100", "--size", "16",
                 "--seed", "2", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["n_images"] == 100 and payload["synthetic"] is True
    assert len(list((tmp_path / "d" / IMAGE_DIR).iterdir())) == 100
    assert main(["datasets", "make-default", "--out", str(tmp_path / "x"), "--n", "5"]) == 2
    assert "--n must be at least 100" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["datasets", "make-default", "--out", str(tmp_path / "file"), "--n", "100"]) == 2
    assert "is a file" in capsys.readouterr().err


def test_whole_photo_shifts_by_group_are_affine_per_channel():
    """Older patients' photos are flatter, men's have a warmer cast: shifts that per-image normalization undoes."""

    def photo(age, male, i):
        return render(Lesion(i, "NV", age, male, "anterior torso", 1, 0.3), 0, 48, seed=3).astype(float) / 255

    def centre_std(age):  # inside the dermoscope's frame, which some photos have
        return np.mean([photo(age, False, i)[8:40, 12:52].std(axis=(0, 1)).mean() for i in range(8)])

    assert centre_std(80) < 0.75 * centre_std(25)
    red_blue = [np.mean([(lambda x: x[..., 0].mean() / x[..., 2].mean())(photo(50, m, i)) for i in range(8)])
                for m in (False, True)]
    assert red_blue[1] > 1.05 * red_blue[0]


def test_default_size_gives_every_age_group_a_fifth_or_more():
    photos = plan(synthetic.DEFAULT_N_IMAGES, seed=0)
    ages = np.array([p.lesion.age for p in photos])
    assert len(photos) == 7500
    # 56/16/28 keeps the 4,200 training and 1,200 validation images of a 70/20/10 split of 6,000.
    tr, va, te = (round(f * synthetic.DEFAULT_N_IMAGES) for f in synthetic.DEFAULT_FRACTIONS)
    assert (tr, va, te) == (4200, 1200, 2100)
    assert (ages < 30).mean() > 0.15 and (ages > 65).mean() > 0.18 and ((ages >= 30) & (ages <= 65)).mean() > 0.4


def test_split_file_written_on_request_and_automatically_only_for_large_sets(tmp_path):
    from nas_core.data.prepare import SPLIT_FILE, split_fractions

    assert synthetic.SPLIT_FILE == SPLIT_FILE
    small = make_default(tmp_path / "s", n_images=100, image_size=16, seed=0, workers=1)
    assert not (small / SPLIT_FILE).exists() and split_fractions(small) == (0.7, 0.2, 0.1)
    asked = make_default(tmp_path / "a", n_images=100, image_size=16, seed=0, workers=1,
                         fractions=synthetic.DEFAULT_FRACTIONS)
    assert json.loads((asked / SPLIT_FILE).read_text())["fractions"] == list(synthetic.DEFAULT_FRACTIONS)
    assert split_fractions(asked) == synthetic.DEFAULT_FRACTIONS
    with pytest.raises(ValueError, match="summing to 1"):
        make_default(tmp_path / "b", n_images=100, image_size=16, seed=0, workers=1, fractions=(0.5, 0.2, 0.1))
