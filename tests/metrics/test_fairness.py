"""Fairness metrics: hand-computed cases, undefined rates, bootstrap, and fairlearn agreement."""

import numpy as np
import pytest
from fairlearn.metrics import equal_opportunity_difference, equalized_odds_difference

from nas_core.errors import UserError
from nas_core.metrics.fairness import (
    FairnessInputError,
    balanced_accuracy,
    confusion_matrix,
    fairness_report,
    per_class_recall,
)


def _group(report, attribute, group):
    return next(g for g in report.groups if g.attribute == attribute and g.group == group)


def _rate(gm, cls):
    return next(r for r in gm.rates if r.cls == cls)


def test_two_class_hand_computed():
    # f: (0,0) (0,1) (1,1) (1,1) -> 3/4 correct; m: (0,0) (0,0) (1,0) -> 2/3; unknown: (1,0) -> 0/1.
    y_true = [0, 0, 1, 1, 0, 0, 1, 1]
    y_pred = [0, 1, 1, 1, 0, 0, 0, 0]
    sex = ["f", "f", "f", "f", "m", "m", "m", None]
    r = fairness_report(y_true, y_pred, [("sex", sex)], ["A", "B"], n_bootstrap=0, min_group_size=0)
    assert r.n == 8
    assert r.overall_accuracy == pytest.approx(5 / 8)  # unknown row counts in overall accuracy
    f, m, unk = _group(r, "sex", "f"), _group(r, "sex", "m"), _group(r, "sex", "unknown")
    assert (f.n, m.n, unk.n) == (4, 3, 1)
    assert f.accuracy == pytest.approx(3 / 4) and m.accuracy == pytest.approx(2 / 3)
    assert unk.accuracy == 0.0
    # Unfairness = (|3/4 - 5/8| + |2/3 - 5/8|) / 2 ; the unknown group is left out.
    assert r.unfairness == pytest.approx((1 / 8 + 1 / 24) / 2)
    # Class A: f TPR 1/2, FPR 0/2, TNR 1 ; m TPR 2/2, FPR 1/1, TNR 0.
    a_f, a_m = _rate(f, "A"), _rate(m, "A")
    assert (a_f.tpr, a_f.fpr, a_f.tnr) == (0.5, 0.0, 1.0)
    assert (a_m.tpr, a_m.fpr, a_m.tnr) == (1.0, 1.0, 0.0)
    # Class B: f TPR 2/2, FPR 1/2, TNR 1/2 ; m TPR 0/1, FPR 0/2, TNR 1.
    b_f, b_m = _rate(f, "B"), _rate(m, "B")
    assert (b_f.n_pos, b_f.n_neg, b_f.tpr, b_f.fpr) == (2, 2, 1.0, 0.5)
    assert (b_m.n_pos, b_m.n_neg, b_m.tpr, b_m.tnr) == (1, 2, 0.0, 1.0)
    # EODD: A max(.5, 1) = 1, B max(1, .5) = 1 -> 1 ; EOPP1: (.5 + 1)/2 ; EOPP2: (1 + .5)/2.
    (pair,) = r.pairs
    assert (pair.group_a, pair.group_b) == ("f", "m")
    assert pair.eodd == pytest.approx(1.0)
    assert pair.eopp1 == pytest.approx(0.75)
    assert pair.eopp2 == pytest.approx(0.75)
    assert r.eodd == pytest.approx(1.0) and r.eopp1 == pytest.approx(0.75) and r.eopp2 == pytest.approx(0.75)
    assert r.worst_group_accuracy == pytest.approx(2 / 3)
    assert r.ci == () and f.accuracy_ci is None


def test_class_counts_only_where_rates_defined_in_both_groups():
    # a: (0,0) (1,1) (1,0) ; b: (0,0) (0,1) (2,2). Class 1 has no positive in b, class 2 none in a.
    y_true = [0, 1, 1, 0, 0, 2]
    y_pred = [0, 1, 0, 0, 1, 2]
    grp = ["a", "a", "a", "b", "b", "b"]
    r = fairness_report(y_true, y_pred, {"g": grp}, ["c0", "c1", "c2"], n_bootstrap=0)
    a, b = _group(r, "g", "a"), _group(r, "g", "b")
    assert _rate(b, "c1").tpr is None and _rate(a, "c2").tpr is None
    assert _rate(b, "c1").fpr == pytest.approx(1 / 3)
    (pair,) = r.pairs
    # c0: a TPR 1, FPR 1/2, TNR 1/2 ; b TPR 1/2, FPR 0, TNR 1 -> EODD .5, EOPP1 .5, EOPP2 .5
    # c1: TPR undefined in b -> only EOPP2: |1 - 2/3| ; c2: TPR undefined in a -> EOPP2 |1 - 1| = 0
    assert (pair.n_classes_eodd, pair.n_classes_eopp1, pair.n_classes_eopp2) == (1, 1, 3)
    assert pair.eodd == pytest.approx(0.5)
    assert pair.eopp1 == pytest.approx(0.5)
    assert pair.eopp2 == pytest.approx((0.5 + 1 / 3 + 0) / 3)


def test_group_without_negatives_has_no_fpr_and_pairs_without_classes_are_left_out():
    # Attribute "site": x holds only class 0, y only class 1 -> no rate is defined in both: pair left out.
    # Attribute "sex": ordinary pair. Overall metrics are the mean over pairs that have a value.
    y_true = [0, 0, 1, 1]
    y_pred = [0, 1, 1, 1]
    site = ["x", "x", "y", "y"]
    sex = ["f", "m", "f", "m"]
    r = fairness_report(y_true, y_pred, [("site", site), ("sex", sex)], ["A", "B"], n_bootstrap=0,
                        min_group_size=0)
    x = _group(r, "site", "x")
    assert _rate(x, "A").fpr is None and _rate(x, "A").tnr is None and _rate(x, "A").tpr == 0.5
    site_pair = next(p for p in r.pairs if p.attribute == "site")
    assert site_pair.eodd is None and site_pair.eopp1 is None and site_pair.eopp2 is None
    assert site_pair.n_classes_eodd == 0
    site_attr = next(a for a in r.attributes if a.attribute == "site")
    assert site_attr.eodd is None
    # sex: f (0,0) (1,1) ; m (0,1) (1,1). A: f TPR 1 FPR 0 ; m TPR 0 FPR 0 -> EODD 1, EOPP1 1, EOPP2 0.
    # B: f TPR 1 FPR 0 ; m TPR 1 FPR 1 -> EODD 1, EOPP1 0, EOPP2 1.
    sex_pair = next(p for p in r.pairs if p.attribute == "sex")
    assert sex_pair.eodd == pytest.approx(1.0)
    assert sex_pair.eopp1 == pytest.approx(0.5)
    assert sex_pair.eopp2 == pytest.approx(0.5)
    assert r.eodd == pytest.approx(1.0) and r.eopp1 == pytest.approx(0.5)
    # Unfairness over all P = 4 known groups: overall 3/4; x 1/2, y 1, f 1, m 1/2 -> each |.| = 1/4.
    assert r.unfairness == pytest.approx(0.25)


def test_metric_is_mean_over_all_pairs_of_all_attributes():
    rng = np.random.default_rng(3)
    n = 400
    y_true = rng.integers(0, 3, n)
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, 3, n))
    age = rng.choice(["young", "middle", "old"], n)
    sex = rng.choice(["male", "female"], n)
    r = fairness_report(y_true, y_pred, [("sex", sex), ("age", age)], ["a", "b", "c"], n_bootstrap=0)
    assert len(r.pairs) == 1 + 3
    assert [g.group for g in r.groups] == ["female", "male", "young", "middle", "old"]
    for metric in ("eodd", "eopp1", "eopp2"):
        values = [getattr(p, metric) for p in r.pairs]
        assert getattr(r, metric) == pytest.approx(np.mean(values))
        age_values = [getattr(p, metric) for p in r.pairs if p.attribute == "age"]
        age_attr = next(a for a in r.attributes if a.attribute == "age")
        assert getattr(age_attr, metric) == pytest.approx(np.mean(age_values))
    accs = [g.accuracy for g in r.groups]
    assert r.unfairness == pytest.approx(np.mean([abs(a - r.overall_accuracy) for a in accs]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_fairlearn_for_two_groups(seed):
    rng = np.random.default_rng(seed)
    n, k = 300, 4
    y_true = rng.integers(0, k, n)
    y_pred = np.where(rng.random(n) < 0.5, y_true, rng.integers(0, k, n))
    sex = rng.choice(["female", "male"], n, p=[0.4, 0.6])
    r = fairness_report(y_true, y_pred, [("sex", sex)], [f"k{c}" for c in range(k)], n_bootstrap=0)
    (pair,) = r.pairs
    assert pair.n_classes_eodd == k
    eodd_c, eopp1_c = [], []
    for c in range(k):
        yt, yp = (y_true == c).astype(int), (y_pred == c).astype(int)
        fl_eodd = equalized_odds_difference(yt, yp, sensitive_features=sex, agg="worst_case")
        fl_eopp1 = equal_opportunity_difference(yt, yp, sensitive_features=sex)
        f, m = _rate(_group(r, "sex", "female"), f"k{c}"), _rate(_group(r, "sex", "male"), f"k{c}")
        assert max(abs(f.tpr - m.tpr), abs(f.fpr - m.fpr)) == pytest.approx(fl_eodd)
        assert abs(f.tpr - m.tpr) == pytest.approx(fl_eopp1)
        eodd_c.append(fl_eodd)
        eopp1_c.append(fl_eopp1)
    assert r.eodd == pytest.approx(np.mean(eodd_c))
    assert r.eopp1 == pytest.approx(np.mean(eopp1_c))


def test_bootstrap_matches_a_plain_loop_and_is_seeded():
    rng = np.random.default_rng(7)
    n, b = 120, 30
    y_true = rng.integers(0, 3, n)
    y_pred = np.where(rng.random(n) < 0.7, y_true, rng.integers(0, 3, n))
    sex = rng.choice(["female", "male", "unknown"], n)
    names = ["a", "b", "c"]
    r = fairness_report(y_true, y_pred, [("sex", sex)], names, n_bootstrap=b, seed=5, ci=0.9)
    # The same resamples, one report at a time.
    idx = np.random.default_rng(5).integers(0, n, size=(b, n))
    loop = [fairness_report(y_true[i], y_pred[i], [("sex", sex[i])], names, n_bootstrap=0) for i in idx]
    for metric in ("unfairness", "eodd", "eopp1", "eopp2"):
        vals = np.array([getattr(x, metric) for x in loop], dtype=float)
        lo, hi = np.quantile(vals[np.isfinite(vals)], [0.05, 0.95])
        assert r.interval(metric) == pytest.approx((lo, hi))
    female_accs = [_group(x, "sex", "female").accuracy for x in loop]
    assert _group(r, "sex", "female").accuracy_ci == pytest.approx(tuple(np.quantile(female_accs, [0.05, 0.95])))
    assert r.n_bootstrap == b
    again = fairness_report(y_true, y_pred, [("sex", sex)], names, n_bootstrap=b, seed=5, ci=0.9)
    assert again == r
    other = fairness_report(y_true, y_pred, [("sex", sex)], names, n_bootstrap=b, seed=6, ci=0.9)
    assert other.ci != r.ci


def test_group_accuracy_interval_brackets_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(0)

    def width(n):
        y_true = rng.integers(0, 2, n)
        y_pred = np.where(rng.random(n) < 0.8, y_true, 1 - y_true)
        sex = rng.choice(["female", "male"], n)
        r = fairness_report(y_true, y_pred, [("sex", sex)], ["a", "b"], n_bootstrap=300)
        g = _group(r, "sex", "female")
        assert g.accuracy_ci[0] <= g.accuracy <= g.accuracy_ci[1]
        return g.accuracy_ci[1] - g.accuracy_ci[0]

    assert width(2000) < width(50)


def test_helpers():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], 4)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    assert per_class_recall(cm) == [0.5, 1.0, pytest.approx(2 / 3), None]
    assert balanced_accuracy(cm) == pytest.approx((0.5 + 1 + 2 / 3) / 3)


def test_bad_input_is_a_user_error_that_says_what_to_do():
    with pytest.raises(FairnessInputError, match="outside 0..1"):
        fairness_report([0, 2], [0, 1], [("sex", ["f", "m"])], ["a", "b"])
    with pytest.raises(UserError, match="3 values for 2 samples"):
        fairness_report([0, 1], [0, 1], [("sex", ["f", "m", "f"])], ["a", "b"])
    with pytest.raises(FairnessInputError, match="2 samples but y_pred has 1"):
        fairness_report([0, 1], [0], [], ["a", "b"])
    with pytest.raises(FairnessInputError, match="no samples"):
        fairness_report([], [], [], ["a", "b"])
