"""Splits: disjoint and complete, seeded, stratified by class x group, lesion groups kept together;
balanced subsamples."""

from collections import Counter

import numpy as np
import pytest

from nas_core.data.index import UNKNOWN, DataError, DatasetIndex
from nas_core.data.splits import balanced_subsample, make_split, strata_of, subset_index


def _data(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.choice(5, size=n, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    sex = rng.choice(["male", "female"], size=n)
    strata = np.array([f"{lab}|{s}" for lab, s in zip(labels, sex)])
    return labels, strata


def _assert_partition(split, n):
    allrows = np.concatenate([split.train, split.val, split.test])
    assert len(allrows) == n and len(np.unique(allrows)) == n and allrows.min() == 0 and allrows.max() == n - 1
    for part in (split.train, split.val, split.test):
        assert part.dtype == np.int64 and np.all(np.diff(part) > 0)


def test_partition_sizes_and_stratification():
    labels, strata = _data()
    split = make_split(labels, strata, seed=0)
    _assert_partition(split, len(labels))
    assert split.sizes == (700, 200, 100)
    for key, count in Counter(strata).items():
        rows = np.flatnonzero(strata == key)
        got = [np.isin(rows, p).sum() for p in (split.train, split.val, split.test)]
        for frac, g in zip((0.7, 0.2, 0.1), got):
            assert abs(g - frac * count) <= 1.5, (key, count, got)


def test_same_seed_same_split_other_seed_other_split():
    labels, strata = _data()
    a, b, c = make_split(labels, strata, 3), make_split(labels, strata, 3), make_split(labels, strata, 4)
    assert all(np.array_equal(x, y) for x, y in zip((a.train, a.val, a.test), (b.train, b.val, b.test)))
    assert not np.array_equal(a.test, c.test)


def test_small_strata_are_spread_not_all_in_train():
    # 100 strata of 2 rows: per-stratum rounding would put everything in train.
    labels = np.repeat(np.arange(100), 2)
    split = make_split(labels, None, seed=0)
    assert split.sizes == (140, 40, 20)


def test_groups_stay_together_and_are_counted():
    labels, strata = _data(600)
    rng = np.random.default_rng(1)
    group_ids = np.array([f"g{i}" for i in range(600)], dtype=object)
    # 80 lesions photographed 2-3 times: their rows share an id and a label.
    starts = rng.choice(np.arange(0, 590, 7), size=80, replace=False)
    for s in starts:
        k = int(rng.integers(2, 4))
        group_ids[s:s + k] = f"lesion{s}"
        labels[s:s + k] = labels[s]
        strata[s:s + k] = strata[s]
    split = make_split(labels, strata, seed=0, group_ids=list(group_ids))
    _assert_partition(split, 600)
    side = {}
    for name in ("train", "val", "test"):
        for r in split.part(name):
            side.setdefault(group_ids[r], set()).add(name)
    assert all(len(s) == 1 for s in side.values())
    assert split.n_grouped == 80
    train, val, test = split.sizes
    assert abs(train - 420) <= 3 and abs(val - 120) <= 3 and abs(test - 60) <= 3


def test_custom_fractions():
    labels, strata = _data(200)
    split = make_split(labels, strata, 0, fractions=(0.5, 0.25, 0.25))
    assert split.sizes == (100, 50, 50) and split.fractions == (0.5, 0.25, 0.25)
    with pytest.raises(KeyError):
        split.part("holdout")


@pytest.mark.parametrize("fractions", [(0.7, 0.2), (0.7, 0.2, 0.2), (0.0, 0.5, 0.5), (1.2, -0.1, -0.1)])
def test_bad_fractions_are_refused(fractions):
    with pytest.raises(DataError, match="three non-negative numbers"):
        make_split([0, 1, 0], None, 0, fractions=fractions)


def test_length_mismatch_and_empty_are_refused():
    with pytest.raises(DataError, match="one entry per row"):
        make_split([0, 1, 0], ["a", "b"], 0)
    with pytest.raises(DataError, match="one entry per row"):
        make_split([0, 1, 0], None, 0, group_ids=["a"])
    with pytest.raises(DataError, match="empty"):
        make_split([], None, 0)


def _index(n=900, seed=0):
    rng = np.random.default_rng(seed)
    sex = rng.choice(["male", "female", UNKNOWN], size=n, p=[0.6, 0.37, 0.03])
    age = rng.choice(["young", "middle", "old"], size=n, p=[0.1, 0.6, 0.3])
    labels = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
    return DatasetIndex(root="/nowhere", format="isic2019", ids=tuple(f"i{k}" for k in range(n)),
                        paths=tuple(f"i{k}.jpg" for k in range(n)), labels=tuple(int(x) for x in labels),
                        class_names=("A", "B", "C"),
                        attributes=(("sex", tuple(sex)), ("age", tuple(age))))


def test_strata_of_joins_class_and_groups():
    idx = _index(5)
    keys = strata_of(idx)
    assert keys[0] == f"{idx.class_names[idx.labels[0]]}|{idx.attribute('sex')[0]}|{idx.attribute('age')[0]}"
    assert strata_of(idx, ["age"])[1].count("|") == 1


def test_balanced_subsample_is_balanced_seeded_and_excludes_unknown():
    idx = _index()
    rows = balanced_subsample(idx, 180, seed=0)
    assert len(rows) == 180 and len(np.unique(rows)) == 180
    combos = Counter((idx.attribute("sex")[r], idx.attribute("age")[r]) for r in rows)
    assert UNKNOWN not in {s for s, _ in combos}
    assert set(combos.values()) == {30}  # 6 joint groups, 30 each
    assert np.array_equal(rows, balanced_subsample(idx, 180, seed=0))
    assert not np.array_equal(rows, balanced_subsample(idx, 180, seed=1))
    # The class mix inside a group follows the group's own mix.
    group = [r for r in range(len(idx)) if (idx.attribute("sex")[r], idx.attribute("age")[r]) == ("male", "middle")]
    want = Counter(idx.labels[r] for r in group)
    got = Counter(idx.labels[r] for r in rows if r in set(group))
    for c in want:
        assert abs(got[c] - 30 * want[c] / len(group)) <= 1


def test_balanced_subsample_water_fills_small_groups():
    idx = _index()
    young_female = sum(1 for s, a in zip(idx.attribute("sex"), idx.attribute("age")) if (s, a) == ("female", "young"))
    rows = balanced_subsample(idx, 600, seed=0)
    combos = Counter((idx.attribute("sex")[r], idx.attribute("age")[r]) for r in rows)
    assert young_female < 100 and combos[("female", "young")] == young_female  # all of the small group
    assert len(rows) == 600
    known = sum(1 for s in idx.attribute("sex") if s != UNKNOWN)
    assert len(balanced_subsample(idx, 10_000, seed=0)) == known


def test_balanced_subsample_bad_input():
    with pytest.raises(DataError, match="positive"):
        balanced_subsample(_index(10), 0, 0)
    bare = DatasetIndex(root="/", format="generic", ids=("a",), paths=("a.jpg",), labels=(0,), class_names=("A",))
    with pytest.raises(DataError, match="needs demographic attributes"):
        balanced_subsample(bare, 5, 0)


def test_subset_index_keeps_rows_aligned():
    idx = _index(10)
    sub = subset_index(idx, [7, 2], note="picked")
    assert sub.ids == ("i7", "i2") and sub.labels == (idx.labels[7], idx.labels[2])
    assert sub.attribute("age") == (idx.attribute("age")[7], idx.attribute("age")[2])
    assert sub.problems[-1] == "picked"


def test_split_is_hashable_and_compares_by_identity():
    split = make_split([0, 1, 0, 1], None, 0)
    assert split == split and split != make_split([0, 1, 0, 1], None, 0)
    assert {split: 1}[split] == 1
