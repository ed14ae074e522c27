"""The ISIC 2019 reader on the synthetic default and on hand-written folders with bad input."""

import csv
import shutil

import pytest
from PIL import Image

from nas_core.data.index import UNKNOWN, AttributeSpec, DataError
from nas_core.data.isic2019 import GROUND_TRUTH, IMAGE_DIR, METADATA, detect_isic2019, load_isic2019

CLASSES = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]


def write_isic(root, rows, meta=None, meta_header=None, gt_header=None, images=True, image_dir=True):
    """A small ISIC folder: rows = (id, class name); meta = id -> dict of metadata cells."""
    root.mkdir(parents=True, exist_ok=True)
    folder = root / IMAGE_DIR if image_dir else root
    folder.mkdir(exist_ok=True)
    with open(root / GROUND_TRUTH, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(gt_header or ["image", *CLASSES])
        for image, label in rows:
            w.writerow([image, *("1.0" if c == label else "0.0" for c in CLASSES)])
    header = meta_header or ["image", "age_approx", "anatom_site_general", "lesion_id", "sex"]
    with open(root / METADATA, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        for image, _ in rows:
            cells = {"image": image, "age_approx": "50.0", "anatom_site_general": "head/neck",
                     "lesion_id": f"L_{image}", "sex": "female"}
            cells.update((meta or {}).get(image, {}))
            w.writerow({k: v for k, v in cells.items() if k in header})
    if images:
        for image, _ in rows:
            Image.new("RGB", (12, 9), (200, 100, 50)).save(folder / f"{image}.jpg")
    return root


ROWS = [("ISIC_0000001", "MEL"), ("ISIC_0000002", "NV"), ("ISIC_0000003_downsampled", "NV"), ("ISIC_0000004", "BCC")]


def test_reads_the_synthetic_default(tiny_dataset):
    idx = load_isic2019(tiny_dataset)
    assert len(idx) == 240 and idx.format == "isic2019"
    assert idx.class_names == ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")  # UNK dropped
    assert set(idx.labels) == set(range(8))
    assert idx.attribute_names == ("sex", "age")
    assert UNKNOWN in idx.attribute("sex") or UNKNOWN in idx.attribute("age")
    assert set(idx.attribute("age")) <= {"young", "middle", "old", UNKNOWN}
    assert all((tiny_dataset / p).is_file() for p in idx.paths)
    assert any(i.endswith("_downsampled") for i in idx.ids)
    assert idx.group_ids is not None and len(set(idx.group_ids)) < len(idx)  # some lesions repeat
    assert idx.problems == ()
    assert detect_isic2019(tiny_dataset)


def test_labels_attributes_groups_and_paths(tmp_path):
    meta = {"ISIC_0000002": {"sex": "", "age_approx": "", "lesion_id": ""},
            "ISIC_0000004": {"sex": "male", "age_approx": "70"}}
    idx = load_isic2019(write_isic(tmp_path / "d", ROWS, meta))
    assert idx.class_names == ("MEL", "NV", "BCC")  # all-zero classes (incl. UNK) dropped
    assert idx.labels == (0, 1, 1, 2)
    assert idx.attribute("sex") == ("female", UNKNOWN, "female", "male")
    assert idx.attribute("age") == ("middle", UNKNOWN, "middle", "old")
    assert idx.group_ids == ("L_ISIC_0000001", "image:ISIC_0000002", "L_ISIC_0000003_downsampled",
                             "L_ISIC_0000004")
    assert idx.paths[2] == f"{IMAGE_DIR}/ISIC_0000003_downsampled.jpg"
    assert any("['AK', 'BKL', 'DF', 'VASC', 'SCC']" in p for p in idx.problems)


def test_images_directly_in_root_and_custom_attributes(tmp_path):
    root = write_isic(tmp_path / "d", ROWS, image_dir=False)
    idx = load_isic2019(root, attributes=[AttributeSpec("site", "anatom_site_general")])
    assert idx.paths[0] == "ISIC_0000001.jpg"
    assert idx.attributes == (("site", ("head/neck",) * 4),)


def test_no_lesion_column_means_no_groups(tmp_path):
    root = write_isic(tmp_path / "d", ROWS, meta_header=["image", "age_approx", "sex"])
    assert load_isic2019(root).group_ids is None


def test_unknown_sex_and_text_age_are_reported(tmp_path):
    meta = {"ISIC_0000001": {"sex": "X"}, "ISIC_0000002": {"age_approx": "old"}}
    idx = load_isic2019(write_isic(tmp_path / "d", ROWS, meta))
    text = " ".join(idx.problems)
    assert "are not a sex" in text and "'X'" in text
    assert "are not ages" in text and "'old'" in text


def test_missing_ground_truth_csv(tmp_path):
    root = write_isic(tmp_path / "d", ROWS)
    (root / GROUND_TRUTH).unlink()
    assert not detect_isic2019(root)
    with pytest.raises(DataError, match=f"{GROUND_TRUTH} not found"):
        load_isic2019(root)


def test_missing_metadata_csv(tmp_path):
    root = write_isic(tmp_path / "d", ROWS)
    (root / METADATA).unlink()
    with pytest.raises(DataError, match=f"metadata file {METADATA} not found"):
        load_isic2019(root)


def test_missing_metadata_column_is_named(tmp_path):
    root = write_isic(tmp_path / "d", ROWS, meta_header=["image", "age_approx", "lesion_id"])
    with pytest.raises(DataError, match=r"ISIC_2019_Training_Metadata.csv has no column\(s\) \['sex'\]"):
        load_isic2019(root)


def test_missing_image_column_in_ground_truth(tmp_path):
    root = write_isic(tmp_path / "d", ROWS, gt_header=["name", *CLASSES])
    with pytest.raises(DataError, match=r"GroundTruth.csv has no column\(s\) \['image'\]"):
        load_isic2019(root)


def test_non_one_hot_rows_are_named(tmp_path):
    root = write_isic(tmp_path / "d", ROWS)
    lines = (root / GROUND_TRUTH).read_text().splitlines()
    lines[1] = "ISIC_0000001,1.0,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0"  # two classes
    lines[3] = "ISIC_0000003_downsampled,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0"  # none
    (root / GROUND_TRUTH).write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"2 label rows are not one-hot .*line 2 \(ISIC_0000001\), "
                                        r"line 4 \(ISIC_0000003_downsampled\)"):
        load_isic2019(root)


def test_non_numeric_label_cell_is_not_one_hot(tmp_path):
    root = write_isic(tmp_path / "d", ROWS)
    text = (root / GROUND_TRUTH).read_text().replace("ISIC_0000004,0.0", "ISIC_0000004,yes", 1)
    (root / GROUND_TRUTH).write_text(text)
    with pytest.raises(DataError, match=r"1 label rows are not one-hot.*ISIC_0000004"):
        load_isic2019(root)


def test_missing_images_are_counted_and_listed(tmp_path):
    rows = [(f"ISIC_{i:07d}", "NV") for i in range(12)]
    root = write_isic(tmp_path / "d", rows)
    for i in range(7):
        (root / IMAGE_DIR / f"ISIC_{i:07d}.jpg").unlink()
    with pytest.raises(DataError, match=r"7 of 12 ids .* have no image file .*ISIC_0000000, ISIC_0000001, "
                                        r"ISIC_0000002, ISIC_0000003, ISIC_0000004, \.\.\."):
        load_isic2019(root)


def test_extra_images_and_missing_metadata_rows_are_reported(tmp_path):
    root = write_isic(tmp_path / "d", ROWS)
    Image.new("RGB", (5, 5)).save(root / IMAGE_DIR / "ISIC_9999999.jpg")
    lines = (root / METADATA).read_text().splitlines()
    (root / METADATA).write_text("\n".join(lines[:-1]) + "\n")  # drop ISIC_0000004's metadata
    idx = load_isic2019(root)
    assert len(idx) == 4
    assert idx.attribute("sex")[3] == UNKNOWN
    text = " ".join(idx.problems)
    assert "ISIC_9999999" in text and "1 images have no metadata row" in text


def test_duplicate_ids_are_refused(tmp_path):
    root = write_isic(tmp_path / "d", [*ROWS, ROWS[0]])
    with pytest.raises(DataError, match="1 image ids appear more than once: ISIC_0000001"):
        load_isic2019(root)


def test_not_a_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_isic2019(tmp_path / "nope")


def test_copy_reads_the_same(tiny_dataset, tmp_path):
    copy = shutil.copytree(tiny_dataset, tmp_path / "copy")
    a, b = load_isic2019(tiny_dataset), load_isic2019(copy)
    assert (a.ids, a.labels, a.attributes, a.group_ids) == (b.ids, b.labels, b.attributes, b.group_ids)
