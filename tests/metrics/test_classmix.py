"""Class-mix decomposition against a case worked out by hand."""

from __future__ import annotations

import pytest

from nas_core.metrics.classmix import decompose, expected_accuracy
from nas_core.records import ClassRates, GroupMetrics

# Overall, the model finds class A easy (recall 0.9) and class B hard (0.5); overall accuracy 0.7.
OVERALL_RECALL = {"A": 0.9, "B": 0.5}


def _group(name: str, n_a: int, tpr_a: float, n_b: int, tpr_b: float) -> GroupMetrics:
    n = n_a + n_b
    return GroupMetrics(attribute="age", group=name, n=n, accuracy=(n_a * tpr_a + n_b * tpr_b) / n, rates=(
        ClassRates("A", n_a, n_b, tpr_a, None, None), ClassRates("B", n_b, n_a, tpr_b, None, None)))


def test_a_group_with_harder_classes_but_equal_service_has_no_model_gap():
    # 2 A and 8 B, recognised exactly as well as overall: accuracy 0.2*0.9 + 0.8*0.5 = 0.58.
    m = decompose(_group("old", 2, 0.9, 8, 0.5), OVERALL_RECALL, 0.7)
    assert m.observed == pytest.approx(0.58)
    assert m.expected == pytest.approx(0.58)
    assert m.mix_effect == pytest.approx(-0.12)  # all of the shortfall is class mix
    assert m.model_gap == pytest.approx(0.0)


def test_a_group_served_worse_shows_a_negative_model_gap():
    # Same mix, but only 2 of its 8 B cases found (0.25 against 0.5 overall); both A found.
    m = decompose(_group("old", 2, 1.0, 8, 0.25), OVERALL_RECALL, 0.7)
    assert m.observed == pytest.approx(0.4)  # (2 + 2) / 10
    assert m.expected == pytest.approx(0.58)
    assert m.mix_effect == pytest.approx(-0.12)
    assert m.model_gap == pytest.approx(-0.18)
    assert m.observed - m.overall == pytest.approx(m.mix_effect + m.model_gap)
    assert m.balanced == pytest.approx((1.0 + 0.25) / 2)
    assert m.recalls == (("A", 2, 1.0), ("B", 8, 0.25))


def test_expected_accuracy_skips_classes_without_a_known_recall():
    assert expected_accuracy({"A": 3, "B": 1}, {"A": 0.8, "B": None}) == pytest.approx(0.8)
    assert expected_accuracy({"A": 0}, {"A": 0.8}) is None
