"""Generic CSV + images and class-per-folder readers: mapping, image resolution and every row-level problem."""

import pytest

from nas_core.data.generic import ColumnMapping, read_folder_tree, read_generic
from nas_core.data.index import UNKNOWN, AttributeSpec, DataError
from tests.data.b2_fixtures import CLASSES, image, make_folder, make_generic, write_csv

MAPPING = ColumnMapping(image="file", label="diagnosis",
                        attributes=(AttributeSpec("sex", "gender", kind="sex"), AttributeSpec("age", "age", kind="age")),
                        group="patient")


def _codes(loaded, severity=None):
    return {f.code for f in loaded.findings if severity is None or f.severity == severity}


@pytest.mark.parametrize("style", ["name", "path", "id"])
def test_reads_every_image_column_style(tmp_path, style):
    make_generic(tmp_path, n=30, id_style=style)
    loaded = read_generic(tmp_path, MAPPING)
    idx = loaded.index
    assert len(idx) == 30 and loaded.n_rows == 30
    assert idx.class_names == CLASSES
    assert idx.paths[0] == "pics/img_000.jpg"
    assert [idx.class_names[k] for k in idx.labels[:4]] == ["cat_a", "cat_b", "cat_c", "cat_a"]
    assert idx.attribute("sex")[:4] == ("male", "female", "female", UNKNOWN)
    assert idx.attribute("age")[:4] == ("young", "middle", "old", UNKNOWN)
    assert idx.group_ids[:4] == ("p0", "p0", "p1", "p1")
    assert _codes(loaded, "fatal") == set() and _codes(loaded, "consent") == set()


def test_guesses_columns_when_not_mapped(tmp_path):
    write_csv(tmp_path / "labels.csv", ["image_id", "label", "sex", "age_approx"],
              [[f"x{i}", "ab"[i % 2], "male", "40"] for i in range(6)])
    for i in range(6):
        image(tmp_path / f"x{i}.png", seed=i, fmt="PNG")
    loaded = read_generic(tmp_path)
    assert loaded.mapping.image == "image_id" and loaded.mapping.label == "label"
    assert loaded.index.attribute_names == ("sex", "age")
    assert loaded.index.class_names == ("a", "b")


def test_missing_columns_name_what_is_missing_and_present(tmp_path):
    make_generic(tmp_path)
    bad = ColumnMapping(image="file", label="dx", attributes=(AttributeSpec("skin", "fitzpatrick"),))
    with pytest.raises(DataError, match=r"no column\(s\) \['dx', 'fitzpatrick'\].*columns present.*diagnosis"):
        read_generic(tmp_path, bad)


def test_unguessable_columns_ask_for_flags(tmp_path):
    write_csv(tmp_path / "m.csv", ["a", "b"], [["1", "2"]])
    with pytest.raises(DataError, match="--image-col and --label-col"):
        read_generic(tmp_path)


def test_row_level_problems_are_fatal_and_named(tmp_path):
    make_generic(tmp_path, n=12)
    rows = [["img_000.jpg", "cat_a", "male", "25", "p0"], ["img_000.jpg", "cat_a", "male", "25", "p0"],
            ["img_001.jpg", "cat_b", "robot", "40", "p1"], ["img_002.jpg", "cat_q", "female", "forty", "p2"],
            ["img_003.jpg", "cat_c", "female", "30", "p3"]]
    write_csv(tmp_path / "meta.csv", ["file", "diagnosis", "gender", "age", "patient"], rows)
    mapping = ColumnMapping(image="file", label="diagnosis", attributes=MAPPING.attributes, group="patient",
                            classes=CLASSES)
    loaded = read_generic(tmp_path, mapping)
    fatal = {f.code: f for f in loaded.findings if f.severity == "fatal"}
    assert set(fatal) == {"duplicate_ids", "unknown_sex", "age_as_text", "unknown_labels"}
    assert fatal["duplicate_ids"].items == ("img_000.jpg",)
    assert "'robot'" in fatal["unknown_sex"].message and fatal["unknown_sex"].items == ("img_001.jpg",)
    assert "'forty'" in fatal["age_as_text"].message
    assert "'cat_q'" in fatal["unknown_labels"].message
    assert "orphan_images" in _codes(loaded, "warning")  # img_004..011 have no row


def test_rows_without_images_need_consent_and_no_match_is_refused(tmp_path):
    make_generic(tmp_path, n=6)
    (tmp_path / "pics" / "img_002.jpg").unlink()
    loaded = read_generic(tmp_path, MAPPING)
    missing = [f for f in loaded.findings if f.code == "missing_images"][0]
    assert missing.severity == "consent" and missing.items == ("img_002.jpg",)
    assert len(loaded.index) == 5
    write_csv(tmp_path / "meta.csv", ["file", "diagnosis", "gender", "age", "patient"],
              [["nope_1.jpg", "cat_a", "male", "30", "p"], ["nope_2.jpg", "cat_b", "male", "30", "p"]])
    with pytest.raises(DataError, match="none of the 2 ids in meta.csv.*match an image"):
        read_generic(tmp_path, MAPPING)


def test_not_one_hot_rows_are_fatal(tmp_path):
    for i in range(4):
        image(tmp_path / f"i{i}.jpg", seed=i)
    write_csv(tmp_path / "gt.csv", ["image", "A", "B"], [["i0", 1, 0], ["i1", 0, 1], ["i2", 1, 1], ["i3", 0, 0]])
    loaded = read_generic(tmp_path, ColumnMapping(image="image", one_hot=("A", "B")))
    bad = [f for f in loaded.findings if f.code == "not_one_hot"][0]
    assert bad.severity == "fatal" and bad.items == ("i2", "i3")
    assert loaded.index.class_names == ("A", "B")


def test_folder_tree_with_attribute_csv(tmp_path):
    make_folder(tmp_path, per_class=5)
    mapping = ColumnMapping(image="image", attributes=(AttributeSpec("sex", "sex", kind="sex"),
                                                       AttributeSpec("skin", "skin")))
    loaded = read_folder_tree(tmp_path, mapping)
    idx = loaded.index
    assert idx.format == "folder" and len(idx) == 15 and idx.class_names == CLASSES
    assert idx.labels.count(0) == idx.labels.count(1) == idx.labels.count(2) == 5
    assert idx.paths[0] == "cat_a/cat_a_0.png" and idx.attribute("sex")[0] == "male"
    assert idx.attribute("skin")[-1] == UNKNOWN  # last image has no attribute row
    assert "images_without_attributes" in _codes(loaded, "warning")


def test_folder_tree_needs_two_classes(tmp_path):
    image(tmp_path / "only" / "a.jpg")
    with pytest.raises(DataError, match="at least two sub-folders"):
        read_folder_tree(tmp_path)


def test_two_rows_naming_one_file_and_numeric_labels(tmp_path):
    for i in range(4):
        image(tmp_path / f"i{i}.jpg", seed=i)
    write_csv(tmp_path / "m.csv", ["image", "label"], [["i0", "10"], ["i1", "2"], ["i2.jpg", "2"], ["i2", "10"]])
    loaded = read_generic(tmp_path)
    dup = [f for f in loaded.findings if f.code == "duplicate_images"][0]
    assert dup.severity == "fatal" and dup.items == ("i2",)
    assert loaded.index.class_names == ("2", "10")
