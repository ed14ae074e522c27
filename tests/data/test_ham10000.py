"""HAM10000 reader: layout, classes, lesion groups, attributes and its bad inputs."""

import pytest

from nas_core.data.ham10000 import CLASSES, detect_ham10000, load_ham10000, read_ham10000
from nas_core.data.index import UNKNOWN, AttributeSpec, DataError
from tests.data.b2_fixtures import make_ham, write_csv

HEADER = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "dataset"]


def test_reads_two_image_folders_with_lesion_groups(tmp_path):
    make_ham(tmp_path, n=28)
    assert detect_ham10000(tmp_path)
    idx = load_ham10000(tmp_path)
    assert idx.format == "ham10000" and len(idx) == 28
    assert idx.class_names == CLASSES
    assert {p.split("/")[0] for p in idx.paths} == {"HAM10000_images_part_1", "HAM10000_images_part_2"}
    assert idx.group_ids[0] == idx.group_ids[1] == "HAM_0000000" and len(set(idx.group_ids)) == 14
    assert idx.attribute("sex")[:3] == ("male", "female", UNKNOWN)  # HAM writes "unknown"
    assert idx.attribute("age")[:4] == ("middle", "old", UNKNOWN, "young")
    assert sorted(set(idx.labels)) == list(range(7))


def test_extra_categorical_attribute(tmp_path):
    make_ham(tmp_path, n=8)
    idx = load_ham10000(tmp_path, attributes=(AttributeSpec("site", "localization"),))
    assert idx.attribute_names == ("site",) and set(idx.attribute("site")) == {"back"}


def test_unknown_dx_and_duplicate_image_ids_refused(tmp_path):
    make_ham(tmp_path, n=6)
    rows = [["HAM_1", "ISIC_0024306", "nv", "histo", "40", "male", "back", "x"],
            ["HAM_1", "ISIC_0024306", "nv", "histo", "40", "male", "back", "x"],
            ["HAM_2", "ISIC_0024307", "melanoma??", "histo", "40", "female", "back", "x"]]
    write_csv(tmp_path / "HAM10000_metadata.csv", HEADER, rows)
    codes = {f.code for f in read_ham10000(tmp_path).findings if f.severity == "fatal"}
    assert codes == {"duplicate_ids", "unknown_labels"}
    with pytest.raises(DataError, match="melanoma"):
        load_ham10000(tmp_path)


def test_missing_column_and_missing_file(tmp_path):
    make_ham(tmp_path, n=4)
    write_csv(tmp_path / "HAM10000_metadata.csv", ["lesion_id", "image_id", "age", "sex"],
              [["HAM_1", "ISIC_0024306", "40", "male"]])
    with pytest.raises(DataError, match=r"no column\(s\) \['dx'\]"):
        load_ham10000(tmp_path)
    with pytest.raises(DataError, match="no HAM10000_metadata.csv"):
        load_ham10000(tmp_path / "HAM10000_images_part_1")
