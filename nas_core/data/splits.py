"""Seeded train/validation/test splits stratified by class x group, and balanced subsamples.

Owns how rows are divided, so every candidate of a run sees the same split.

Split algorithm (deterministic for a seed, no sklearn needed): rows are packed into *units* (one
row, or every row sharing a ``group_id`` such as a lesion id). Units are ordered stratum by stratum
(strata in a seeded random order, units shuffled inside a stratum). Walking that order, each unit
goes to the part whose running count lags its target the most: after ``t`` rows the target of part
``j`` is ``t * fractions[j]``. Over any stretch of the walk the parts therefore stay within about
one unit of their fractions, so every stratum is split in proportion (a stratum of 10 rows gives
7/2/1) and small strata are spread across parts instead of all landing in train; the totals match
the fractions to within one unit. A unit's stratum is the stratum of most of its rows.

Balanced subsample (the FL-NAS paper trains on 5,000 images balanced across groups): rows are
grouped by the *joint* demographic group (e.g. ``female|old``); each group gets an equal share of
``n`` (water-filling: a group smaller than its share gives all its rows and the rest is shared
among the others), and inside a group rows are drawn stratified by class. Rows with an
``unknown`` value in any attribute are not a group and are left out.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from nas_core.data.index import UNKNOWN, DataError, DatasetIndex


@dataclass(frozen=True, eq=False)  # arrays: == would be ambiguous; identity is the useful equality
class Split:
    """Disjoint train/validation/test row indices covering every row once.

    Attributes:
        train: row indices for training (sorted int64).
        val: row indices for early stopping and model selection.
        test: row indices for the reported metrics.
        n_grouped: how many groups of two or more rows (e.g. lesions photographed several
            times) were kept together on one side.
        seed: the seed that made it.
        fractions: the requested (train, val, test) fractions.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    n_grouped: int = 0
    seed: int = 0
    fractions: tuple[float, float, float] = field(default=(0.7, 0.2, 0.1))

    @property
    def sizes(self) -> tuple[int, int, int]:
        """(train, val, test) row counts."""
        return len(self.train), len(self.val), len(self.test)

    def part(self, name: str) -> np.ndarray:
        """The rows of ``"train"``, ``"val"`` or ``"test"``."""
        if name not in ("train", "val", "test"):
            raise KeyError(f"no split part {name!r}; use 'train', 'val' or 'test'")
        return getattr(self, name)


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1) > 1e-6 or fr[0] == 0:
        raise DataError(f"split fractions must be three non-negative numbers (train, val, test) summing to 1 "
                        f"with train > 0, got {tuple(fractions)}")
    return fr  # type: ignore[return-value]


def _frozen(rows: list[int]) -> np.ndarray:
    # Left writable: torch warns on every tensor indexed with a read-only array.
    return np.sort(np.asarray(rows, dtype=np.int64))


def make_split(
    labels: Sequence[int] | np.ndarray,
    strata: Sequence[str] | np.ndarray | None,
    seed: int,
    fractions: Sequence[float] = (0.7, 0.2, 0.1),
    group_ids: Sequence[str] | np.ndarray | None = None,
) -> Split:
    """Split rows into train/validation/test, stratified and seeded.

    Args:
        labels: class index of every row (used as the stratum when ``strata`` is None).
        strata: a key per row to stratify by, e.g. ``"MEL|female|old"`` (see :func:`strata_of`).
        seed: same inputs and seed give the identical split.
        fractions: (train, val, test), summing to 1.
        group_ids: rows sharing an id (a lesion, a patient) always land in the same part.

    Returns:
        The split.

    Raises:
        DataError: lengths differ or the fractions are invalid.
    """
    fr = _check_fractions(fractions)
    n = len(labels)
    keys = [str(s) for s in (labels if strata is None else strata)]
    if len(keys) != n or (group_ids is not None and len(group_ids) != n):
        raise DataError(f"labels ({n}), strata ({len(keys)}) and group ids "
                        f"({'none' if group_ids is None else len(group_ids)}) must have one entry per row")
    if n == 0:
        raise DataError("cannot split an empty data set")
    rng = np.random.default_rng(seed)

    if group_ids is None:
        units = [[i] for i in range(n)]
    else:
        by_group: dict[str, list[int]] = defaultdict(list)
        for i, g in enumerate(group_ids):
            by_group[str(g)].append(i)
        units = [by_group[g] for g in sorted(by_group)]
    n_grouped = sum(len(u) > 1 for u in units)

    by_stratum: dict[str, list[list[int]]] = defaultdict(list)
    for unit in units:
        stratum = Counter(keys[i] for i in unit).most_common(1)[0][0]
        by_stratum[stratum].append(unit)
    order = sorted(by_stratum)
    order = [order[i] for i in rng.permutation(len(order))]

    parts: list[list[int]] = [[], [], []]
    counts = np.zeros(3)
    target = np.asarray(fr)
    placed = 0
    for stratum in order:
        stratum_units = by_stratum[stratum]
        for ui in rng.permutation(len(stratum_units)):
            unit = stratum_units[ui]
            placed += len(unit)
            lag = target * placed - counts
            j = int(np.argmax(lag))  # ties go to the earlier part (train, then val)
            parts[j].extend(unit)
            counts[j] += len(unit)
    return Split(train=_frozen(parts[0]), val=_frozen(parts[1]), test=_frozen(parts[2]),
                 n_grouped=n_grouped, seed=seed, fractions=fr)


def strata_of(index: DatasetIndex, attributes: Sequence[str] | None = None) -> np.ndarray:
    """Per-row stratum keys ``"<class>|<group>|<group>..."`` of ``index`` (all attributes by default)."""
    names = index.attribute_names if attributes is None else tuple(attributes)
    cols = [index.attribute(a) for a in names]
    return np.asarray(["|".join([index.class_names[lab], *(c[i] for c in cols)])
                       for i, lab in enumerate(index.labels)])


def subset_index(index: DatasetIndex, rows: Sequence[int] | np.ndarray, note: str | None = None) -> DatasetIndex:
    """A new index holding only ``rows`` of ``index`` (in that order), optionally with a problem note."""
    rows = [int(r) for r in rows]
    return DatasetIndex(
        root=index.root,
        format=index.format,
        ids=tuple(index.ids[r] for r in rows),
        paths=tuple(index.paths[r] for r in rows),
        labels=tuple(index.labels[r] for r in rows),
        class_names=index.class_names,
        attributes=tuple((name, tuple(vals[r] for r in rows)) for name, vals in index.attributes),
        group_ids=None if index.group_ids is None else tuple(index.group_ids[r] for r in rows),
        problems=index.problems + ((note,) if note else ()),
    )


def _water_fill(sizes: Sequence[int], n: int) -> list[int]:
    """Equal shares of ``n`` over groups of the given sizes; small groups give all they have."""
    quota = [0] * len(sizes)
    open_ = [i for i in range(len(sizes)) if sizes[i] > 0]
    left = n
    while left > 0 and open_:
        share, extra = divmod(left, len(open_))
        if share == 0:
            for i in open_[:extra]:
                quota[i] += 1
            break
        still = []
        for i in open_:
            take = min(share, sizes[i] - quota[i])
            quota[i] += take
            left -= take
            if quota[i] < sizes[i]:
                still.append(i)
        open_ = still
    return quota


def _systematic_pick(rows: Sequence[int], labels: Sequence[int], k: int,
                     rng: np.random.Generator) -> list[int]:
    """Exactly ``k`` of ``rows``, each class represented in proportion (systematic sampling)."""
    by_class: dict[int, list[int]] = defaultdict(list)
    for r, lab in zip(rows, labels):
        by_class[lab].append(r)
    ordered: list[int] = []
    classes = sorted(by_class)
    for c in (classes[i] for i in rng.permutation(len(classes))):
        members = by_class[c]
        ordered.extend(members[i] for i in rng.permutation(len(members)))
    total = len(ordered)
    # Position p is taken when the running quota p*k/total passes a whole number.
    return [r for p, r in enumerate(ordered) if (p + 1) * k // total > p * k // total]


def balanced_subsample(index: DatasetIndex, n: int, seed: int) -> np.ndarray:
    """Row indices of up to ``n`` rows balanced across the joint demographic groups.

    Args:
        index: the data set (its attributes define the groups).
        n: rows wanted; if fewer rows have known groups, all of those are returned.
        seed: same inputs give the same rows.

    Returns:
        Sorted int64 row indices.

    Raises:
        DataError: ``n`` is not positive or the index has no attributes.
    """
    if n <= 0:
        raise DataError(f"subsample size must be positive, got {n}")
    if not index.attributes:
        raise DataError("a balanced subsample needs demographic attributes; this data set has none")
    rng = np.random.default_rng(seed)
    cols = [vals for _, vals in index.attributes]
    groups: dict[str, list[int]] = defaultdict(list)
    for i in range(len(index)):
        vals = [c[i] for c in cols]
        if UNKNOWN not in vals:
            groups["|".join(vals)].append(i)
    names = sorted(groups)
    quotas = _water_fill([len(groups[g]) for g in names], n)
    chosen: list[int] = []
    for g, quota in zip(names, quotas):
        rows = groups[g]
        if quota >= len(rows):
            chosen.extend(rows)
            continue
        chosen.extend(_systematic_pick(rows, [index.labels[r] for r in rows], quota, rng))
    return np.sort(np.asarray(chosen, dtype=np.int64))
