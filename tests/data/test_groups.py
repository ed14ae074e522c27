"""Demographic grouping: sex normalization, age bins and their edges, missing and unrecognized values."""

import math

import pytest

from nas_core.data import groups
from nas_core.data.index import UNKNOWN, AttributeSpec, DataError


@pytest.mark.parametrize("cell,expected", [
    ("male", "male"), ("Male", "male"), ("  MALE ", "male"), ("M", "male"), ("m", "male"),
    ("female", "female"), ("F", "female"), (" Female\t", "female"), ("woman", "female"),
    ("", UNKNOWN), ("  ", UNKNOWN), (None, UNKNOWN), ("NaN", UNKNOWN), (float("nan"), UNKNOWN),
    ("unknown", UNKNOWN),
])
def test_normalize_sex(cell, expected):
    assert groups.normalize_sex(cell) == expected


def test_unrecognized_sex_is_reported_not_dropped():
    spec = AttributeSpec("sex", "sex")  # categorical kind, but named sex: normalized as sex
    d = groups.derive(spec, ["male", "X", "F", "intersex", "X", ""])
    assert d.values == ("male", UNKNOWN, "female", UNKNOWN, UNKNOWN, UNKNOWN)
    assert d.n_missing == 1
    assert dict(d.unrecognized) == {"X": 2, "intersex": 1}
    assert len(d.problems) == 1 and "'X' x2" in d.problems[0] and "'sex'" in d.problems[0]
    with pytest.raises(DataError, match="3 rows have values that are not a sex"):
        groups.derive(spec, ["male", "X", "F", "intersex", "X", ""], strict=True)


@pytest.mark.parametrize("age,expected", [
    (0, "young"), (29.9, "young"), (30, "middle"), (45, "middle"), (65, "middle"), (65.1, "old"), (85, "old"),
])
def test_default_age_bins_put_edges_as_documented(age, expected):
    assert groups.age_group(age) == expected


def test_custom_bins_edge_belongs_above_except_last():
    bins, labels = (18.0, 40.0, 60.0), ("child", "adult", "mid", "senior")
    assert [groups.age_group(a, bins, labels) for a in (17, 18, 39, 40, 59, 60, 61)] == [
        "child", "adult", "adult", "mid", "mid", "mid", "senior"]


def test_derive_age_from_text_cells_with_missing_and_bad_values():
    spec = groups.default_attributes()[1]
    d = groups.derive(spec, ["25.0", "30", " 70 ", "", None, "sixty", "-5", "200"])
    assert d.values == ("young", "middle", "old", UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN)
    assert d.n_missing == 2
    assert dict(d.unrecognized) == {"sixty": 1, "-5": 1, "200": 1}
    assert "3 rows have values that are not ages" in d.problems[0]
    assert "'sixty'" in d.problems[0] and "'age_approx'" in d.problems[0]


def test_parse_age():
    assert groups.parse_age("45.0") == 45.0
    assert math.isnan(groups.parse_age(""))
    assert groups.parse_age("abc") is None


def test_bad_bins_are_refused_with_a_message():
    with pytest.raises(DataError, match="need 3 labels"):
        groups.derive(AttributeSpec("age", "age", kind="age", bins=(30.0, 65.0), labels=("a", "b")), ["1"])
    with pytest.raises(DataError, match="increase strictly"):
        groups.derive(AttributeSpec("age", "age", kind="age", bins=(65.0, 30.0)), ["1"])
    with pytest.raises(DataError, match="reserved"):
        groups.derive(AttributeSpec("age", "age", kind="age", bins=(30.0,), labels=("unknown", "old")), ["1"])


def test_categorical_strips_and_marks_missing():
    d = groups.derive(AttributeSpec("site", "anatom_site_general"), [" head/neck", "", "torso", None])
    assert d.values == ("head/neck", UNKNOWN, "torso", UNKNOWN)
    assert d.n_missing == 2 and d.problems == ()


def test_unknown_kind_is_refused():
    with pytest.raises(DataError, match="kind 'weird'"):
        groups.derive(AttributeSpec("x", "x", kind="weird"), ["1"])


def test_default_attributes_are_sex_and_age():
    sex, age = groups.default_attributes()
    assert (sex.name, sex.column, age.name, age.column, age.kind) == ("sex", "sex", "age", "age_approx", "age")
    assert age.bins == (30.0, 65.0) and age.labels == ("young", "middle", "old")
    assert groups.default_attributes(age_column="age")[1].column == "age"


def test_derive_attributes_names_a_missing_column():
    cols = {"image": ["a", "b"], "sex": ["m", "f"]}
    with pytest.raises(DataError, match=r"meta.csv has no column\(s\) \['age_approx'\]"):
        groups.derive_attributes(cols, groups.default_attributes(), source="meta.csv")
    attrs, problems = groups.derive_attributes({**cols, "age_approx": ["20", "x"]}, groups.default_attributes())
    assert attrs == (("sex", ("male", "female")), ("age", ("young", UNKNOWN)))
    assert len(problems) == 1


def test_duplicate_attribute_names_are_refused():
    spec = AttributeSpec("sex", "sex")
    with pytest.raises(DataError, match="unique"):
        groups.derive_attributes({"sex": ["m"]}, [spec, spec])
