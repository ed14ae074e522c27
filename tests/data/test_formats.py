"""Format detection and dispatch: every layout is recognized, overridable, and read the same way."""

import pytest

from nas_core.data import formats
from nas_core.data.generic import ColumnMapping
from nas_core.data.index import DataError
from tests.data.b2_fixtures import image, make_folder, make_generic, make_ham, make_isic, write_csv


@pytest.mark.parametrize("maker,fmt,n", [(make_isic, "isic2019", 24), (make_ham, "ham10000", 28),
                                         (make_generic, "generic", 30), (make_folder, "folder", 24)])
def test_detects_and_loads_each_format(tmp_path, maker, fmt, n):
    maker(tmp_path)
    assert formats.detect_format(tmp_path) == fmt
    idx = formats.load_index(tmp_path)
    assert idx.format == fmt and len(idx) == n
    assert len(idx.paths) == len(idx.labels) == n
    assert all((tmp_path / p).is_file() for p in idx.paths)


def test_descends_into_a_single_wrapping_folder(tmp_path):
    make_ham(tmp_path / "wrap" / "HAM", n=6)
    assert formats.detect_format(tmp_path / "wrap") == "ham10000"
    assert len(formats.load_index(tmp_path / "wrap")) == 6


def test_format_override_and_unknown_format(tmp_path):
    make_folder(tmp_path)
    # The attribute CSV has no label column, so "generic" must ask for the columns.
    with pytest.raises(DataError, match="--label-col"):
        formats.load_index(tmp_path, fmt="generic")
    with pytest.raises(DataError, match="unknown format 'dicom'"):
        formats.load_index(tmp_path, fmt="dicom")


def test_mapping_with_label_means_generic(tmp_path):
    make_generic(tmp_path)
    m = ColumnMapping(image="file", label="diagnosis")
    assert formats.detect_format(tmp_path, m) == "generic"
    assert formats.load_index(tmp_path, mapping=m).attribute_names == ("sex", "age")  # guessed


def test_fatal_findings_raise_from_load_index(tmp_path):
    make_generic(tmp_path, n=4)
    write_csv(tmp_path / "meta.csv", ["file", "diagnosis", "gender", "age"],
              [["img_000.jpg", "cat_a", "male", "sixty"], ["img_001.jpg", "cat_b", "female", "20"]])
    with pytest.raises(DataError, match="ages written as text.*'sixty'"):
        formats.load_index(tmp_path)


def test_isic_text_ages_are_refused_like_every_format(tmp_path):
    make_isic(tmp_path, n=8)
    meta = tmp_path / "ISIC_2019_Training_Metadata.csv"
    meta.write_text(meta.read_text().replace(",35,", ",thirty-five,", 1))
    loaded = formats.read(tmp_path)
    assert [f.code for f in loaded.findings if f.severity == "fatal"] == ["age_as_text"]


def test_nothing_to_read(tmp_path):
    image(tmp_path / "lonely.jpg")
    with pytest.raises(DataError, match="does not look like a data set"):
        formats.load_index(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        formats.load_index(tmp_path / "nope")
    (tmp_path / "x.zip").write_bytes(b"PK")
    with pytest.raises(DataError, match="is a zip"):
        formats.load_index(tmp_path / "x.zip")


def test_age_bins_and_extra_attributes_keep_format_defaults(tmp_path):
    from nas_core.data.index import AttributeSpec

    make_isic(tmp_path, n=8)  # ages 35, 70, 20, "" repeating
    m = ColumnMapping(attributes=(AttributeSpec("site", "anatom_site_general"),), extend_defaults=True,
                      age_bins=(40.0,))
    idx = formats.load_index(tmp_path, mapping=m)
    assert idx.attribute_names == ("sex", "age", "site")
    assert idx.attribute("age")[:4] == ("<40", ">40", "<40", "unknown")
    only = formats.load_index(tmp_path, mapping=ColumnMapping(attributes=(AttributeSpec("site", "anatom_site_general"),)))
    assert only.attribute_names == ("site",)
    with pytest.raises(DataError, match="need 3 labels"):
        formats.load_index(tmp_path, mapping=ColumnMapping(age_bins=(30.0, 65.0), age_labels=("a", "b")))
