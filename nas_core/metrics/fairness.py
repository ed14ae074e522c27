"""Group fairness of a classifier's predictions, exactly as DESIGN.md defines it.

Owns :func:`fairness_report` (per-group accuracy and one-vs-rest rates, Unfairness,
EODD, EOPP1, EOPP2 per pair, per attribute and overall, with seeded bootstrap
intervals) and the small helpers the evaluator shares with it
(:func:`confusion_matrix`, :func:`per_class_recall`, :func:`balanced_accuracy`).

Definitions (DESIGN.md, "Fairness metrics"):

- Unfairness = (1/P) * sum over the P known groups of all attributes of
  |Acc_group - Acc_overall|. Acc_overall counts every sample, ``unknown`` ones included.
- For every attribute, every unordered pair (g1, g2) of its known groups and every
  class c one-vs-rest: EODD_c = max(|dTPR_c|, |dFPR_c|), EOPP1_c = |dTPR_c|,
  EOPP2_c = |dTNR_c|. A class counts for a pair's metric only where the rates that
  metric uses are defined in both groups (TPR needs a positive, FPR/TNR a negative).
  A pair's value is the mean over the classes that count; an attribute's value the
  mean over its pairs; the overall value the mean over all pairs of all attributes.
  Pairs where no class counts are left out of both means.

Decisions where DESIGN.md is silent:

- The class list is the data set's classes (``class_names``: the evaluator passes the data set's,
  the ``fairness`` CLI those of ``--classes`` or the ones it finds), but a class that occurs
  nowhere in the evaluated samples (neither as a true label nor as a prediction) counts for no
  pair: its rates would be 0 vs 0 or undefined and would only dilute the means. So the metrics
  do not depend on classes absent from the test set, and the CLI and ``evaluate`` agree on the
  same predictions whatever class list each is given.
- Small groups: a known group with fewer than ``min_group_size`` samples (default
  :data:`MIN_GROUP_SIZE`, the run setting ``TrainSettings.min_group_size``) is reported and
  flagged ``small`` but left out of Unfairness (its accuracy is mostly sampling noise: a
  one-image group would weigh as much as a group of 120). It still counts for EODD/EOPP, whose
  pair values are reported with their group sizes. When no known group reaches the size (a test
  set too small for the rule, e.g. in tests), every known group counts and all are flagged.

- A group with no sample (possible only in a bootstrap resample, or when
  ``group_order`` names a group absent from the data) has no accuracy and is left
  out of P for that resample.
- Bootstrap: the whole test set is resampled with replacement ``n_bootstrap`` times
  (seeded ``numpy.random.default_rng(seed)``); every statistic is recomputed on each
  resample and the interval is the percentile interval at level ``ci``. Resamples in
  which a statistic is undefined are dropped for that statistic. Counting is one
  ``numpy.bincount`` over all resamples, so 1,000 resamples of 1,000 samples take
  well under 0.1 s. EODD/EOPP are absolute differences, which small groups bias upward:
  their bootstrap distribution usually sits above the point estimate, and the interval
  can even exclude it. The interval says how much the estimate would move on another
  test set of this size; read a wide or shifted one as "this test set is too small".
- Groups are listed in ``group_order`` when given, else in a conventional order for
  the default labels (female, male, young, middle, old) and alphabetical otherwise,
  ``unknown`` last.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas_core.data.index import UNKNOWN
from nas_core.errors import UserError
from nas_core.records import (
    AttributeFairness,
    ClassRates,
    FairnessReport,
    GroupMetrics,
    PairFairness,
)

#: Conventional display order of the default attribute labels; others sort alphabetically after them.
_CONVENTIONAL_ORDER = {"female": 0, "male": 1, "young": 2, "middle": 3, "old": 4}

METRIC_NAMES = ("unfairness", "eodd", "eopp1", "eopp2")
#: Default smallest group counted in Unfairness (TrainSettings.min_group_size; the CLI's --min-group).
MIN_GROUP_SIZE = 10


class FairnessInputError(UserError):
    """Labels, predictions or attribute columns that cannot be compared (length, range)."""


@dataclass(frozen=True)
class _Stats:
    """Every statistic of one attribute, over a leading resample axis B.

    Shapes: acc (B, G); tpr/fpr/tnr (B, G, C); pair arrays (B, n_pairs); counts are of the
    first resample (the point estimate when B == 1).
    """

    acc: np.ndarray
    n: np.ndarray
    pos: np.ndarray
    neg: np.ndarray
    tpr: np.ndarray
    fpr: np.ndarray
    tnr: np.ndarray
    pair_eodd: np.ndarray
    pair_eopp1: np.ndarray
    pair_eopp2: np.ndarray
    pair_k_eodd: np.ndarray
    pair_k_eopp1: np.ndarray
    pair_k_eopp2: np.ndarray


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def _order_groups(values: Sequence[str], preferred: Sequence[str] | None) -> list[str]:
    present = sorted({v for v in values if v != UNKNOWN})
    if preferred:
        head = [g for g in preferred if g != UNKNOWN]
        rest = [g for g in present if g not in head]
    else:
        head = []
        rest = present
    rest.sort(key=lambda g: (_CONVENTIONAL_ORDER.get(g.lower(), len(_CONVENTIONAL_ORDER)), g))
    ordered = head + rest
    if UNKNOWN in values:
        ordered.append(UNKNOWN)
    return ordered


def _as_labels(values: Any, n_classes: int, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise FairnessInputError(f"{what} must be one label per sample (1-D), got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.mod(arr, 1) == 0):
            arr = arr.astype(np.int64)
        else:
            raise FairnessInputError(f"{what} must be integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    bad = (arr < 0) | (arr >= n_classes)
    if bad.any():
        raise FairnessInputError(
            f"{what} has {int(bad.sum())} value(s) outside 0..{n_classes - 1} "
            f"(first: {arr[bad][:5].tolist()}); pass one class name per class index"
        )
    return arr


def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int) -> np.ndarray:
    """Counts[true, pred] as an int64 (n_classes, n_classes) array."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_recall(cm: np.ndarray) -> list[float | None]:
    """Recall of every class from a confusion matrix (None for a class with no sample)."""
    pos = cm.sum(axis=1)
    return [float(cm[c, c] / pos[c]) if pos[c] > 0 else None for c in range(cm.shape[0])]


def balanced_accuracy(cm: np.ndarray) -> float:
    """Mean recall over the classes present in the true labels (scikit-learn's definition)."""
    recalls = [r for r in per_class_recall(cm) if r is not None]
    return float(np.mean(recalls)) if recalls else float("nan")


def _group_counts(cells: np.ndarray, n_cells: int, idx: np.ndarray | None) -> np.ndarray:
    """Counts of every cell per resample: (B, n_cells). ``idx`` None = the sample as it is."""
    if idx is None:
        return np.bincount(cells, minlength=n_cells)[None, :]
    b = idx.shape[0]
    flat = (cells[idx] + (np.arange(b, dtype=np.int64) * n_cells)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n_cells).reshape(b, n_cells)


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    # All-NaN slices are expected (a pair where no class counts): NaN is the right answer there.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def _stats(cm: np.ndarray, known: int, present: np.ndarray) -> _Stats:
    """Statistics of one attribute from counts cm (B, G, C, C); groups [0, known) are the known ones.

    ``present`` (C,) marks the classes that occur in the evaluated samples; the others count for no pair.
    """
    cm = cm.astype(np.float64)
    n = cm.sum(axis=(2, 3))
    correct = np.trace(cm, axis1=2, axis2=3)
    acc = _div(correct, n)
    pos = cm.sum(axis=3)
    tp = np.diagonal(cm, axis1=2, axis2=3)
    fp = cm.sum(axis=2) - tp
    neg = n[..., None] - pos
    tn = neg - fp
    tpr = _div(tp, pos)
    fpr = _div(fp, neg)
    tnr = _div(tn, neg)
    pairs = list(itertools.combinations(range(known), 2))
    b, c = cm.shape[0], cm.shape[2]
    if pairs:
        i = np.array([p[0] for p in pairs])
        j = np.array([p[1] for p in pairs])
        d_tpr = np.abs(tpr[:, i] - tpr[:, j])  # NaN where either group lacks the rate
        d_fpr = np.abs(fpr[:, i] - fpr[:, j])
        d_tnr = np.abs(tnr[:, i] - tnr[:, j])
        absent = ~present
        d_tpr[..., absent] = np.nan
        d_fpr[..., absent] = np.nan
        d_tnr[..., absent] = np.nan
        eodd_c = np.maximum(d_tpr, d_fpr)  # np.maximum propagates NaN: both rates must be defined
    else:
        d_tpr = d_tnr = eodd_c = np.full((b, 0, c), np.nan)
    return _Stats(
        acc=acc,
        n=n,
        pos=pos,
        neg=neg,
        tpr=tpr,
        fpr=fpr,
        tnr=tnr,
        pair_eodd=_nanmean(eodd_c, axis=2),
        pair_eopp1=_nanmean(d_tpr, axis=2),
        pair_eopp2=_nanmean(d_tnr, axis=2),
        pair_k_eodd=(~np.isnan(eodd_c)).sum(axis=2),
        pair_k_eopp1=(~np.isnan(d_tpr)).sum(axis=2),
        pair_k_eopp2=(~np.isnan(d_tnr)).sum(axis=2),
    )


def _opt(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


def _interval(samples: np.ndarray, ci: float) -> tuple[float, float] | None:
    s = samples[np.isfinite(samples)]
    if s.size == 0:
        return None
    lo, hi = np.quantile(s, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return (float(lo), float(hi))


def _summaries(
    stats: list[_Stats], groups: list[list[str]], overall_acc: np.ndarray, counted: list[np.ndarray]
) -> dict[str, Any]:
    """Unfairness and the three pair metrics per attribute and overall, per resample.

    ``counted[a]`` marks the known groups of attribute ``a`` large enough for Unfairness.
    """
    per_attr = []
    all_dev, all_eodd, all_eopp1, all_eopp2 = [], [], [], []
    for st, gs, keep in zip(stats, groups, counted, strict=True):
        known = len([g for g in gs if g != UNKNOWN])
        dev = np.abs(st.acc[:, :known] - overall_acc[:, None])[:, keep[:known]]
        per_attr.append(
            {
                "unfairness": _nanmean(dev, axis=1),
                "eodd": _nanmean(st.pair_eodd, axis=1),
                "eopp1": _nanmean(st.pair_eopp1, axis=1),
                "eopp2": _nanmean(st.pair_eopp2, axis=1),
            }
        )
        all_dev.append(dev)
        all_eodd.append(st.pair_eodd)
        all_eopp1.append(st.pair_eopp1)
        all_eopp2.append(st.pair_eopp2)
    b = overall_acc.shape[0]

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts, axis=1) if parts else np.full((b, 0), np.nan)

    overall = {
        "unfairness": _nanmean(cat(all_dev), axis=1),
        "eodd": _nanmean(cat(all_eodd), axis=1),
        "eopp1": _nanmean(cat(all_eopp1), axis=1),
        "eopp2": _nanmean(cat(all_eopp2), axis=1),
    }
    return {"per_attribute": per_attr, "overall": overall}


def fairness_report(
    y_true: Any,
    y_pred: Any,
    attributes: Sequence[tuple[str, Sequence[Any]]] | Mapping[str, Sequence[Any]],
    class_names: Sequence[str],
    n_bootstrap: int = 200,
    seed: int = 0,
    ci: float = 0.95,
    group_order: Mapping[str, Sequence[str]] | None = None,
    min_group_size: int = MIN_GROUP_SIZE,
) -> FairnessReport:
    """The full fairness report of one set of predictions.

    Args:
        y_true: true class index of every sample.
        y_pred: predicted class index of every sample.
        attributes: (attribute name, group label of every sample) pairs, or a mapping of them.
            Missing labels (None, NaN, empty, ``"unknown"``) form the ``unknown`` group, which is
            reported and counted in the overall accuracy but left out of every fairness metric.
        class_names: one name per class index (fixes the number of classes).
        n_bootstrap: resamples of the test set for the intervals; 0 skips them.
        seed: seeds the resampling.
        ci: interval level, e.g. 0.95.
        group_order: optional display order of the groups of some attributes.
        min_group_size: known groups with fewer samples are flagged ``small`` and left out of
            Unfairness (0 keeps every group).

    Returns:
        A FairnessReport; undefined values are None.

    Raises:
        FairnessInputError: lengths differ, labels out of range, or ``ci`` not in (0, 1).
    """
    n_classes = len(class_names)
    if n_classes < 1:
        raise FairnessInputError("class_names is empty; pass one name per class index")
    if not 0 < ci < 1:
        raise FairnessInputError(f"ci must be between 0 and 1 (e.g. 0.95), got {ci}")
    if n_bootstrap < 0:
        raise FairnessInputError(f"n_bootstrap must be 0 or more, got {n_bootstrap}")
    yt = _as_labels(y_true, n_classes, "y_true")
    yp = _as_labels(y_pred, n_classes, "y_pred")
    n = yt.shape[0]
    if n == 0:
        raise FairnessInputError("there are no samples to measure; pass at least one prediction")
    if yp.shape[0] != n:
        raise FairnessInputError(f"y_true has {n} samples but y_pred has {yp.shape[0]}")
    attr_items = list(attributes.items()) if isinstance(attributes, Mapping) else list(attributes)
    names = [str(a) for a, _ in attr_items]
    if len(set(names)) != len(names):
        raise FairnessInputError(f"attribute names repeat: {names}; give each attribute once")
    order = dict(group_order or {})
    if min_group_size < 0:
        raise FairnessInputError(f"min_group_size must be 0 or more, got {min_group_size}")
    present = np.zeros(n_classes, dtype=bool)
    present[yt] = True
    present[yp] = True

    cells_per_attr: list[np.ndarray] = []
    groups_per_attr: list[list[str]] = []
    counted_per_attr: list[np.ndarray] = []
    for name, raw in attr_items:
        vals = [UNKNOWN if _is_missing(v) else str(v) for v in raw]
        if len(vals) != n:
            raise FairnessInputError(f"attribute {name!r} has {len(vals)} values for {n} samples")
        gs = _order_groups(vals, order.get(name))
        pos = {g: k for k, g in enumerate(gs)}
        g_idx = np.fromiter((pos[v] for v in vals), dtype=np.int64, count=n)
        cells_per_attr.append(g_idx * n_classes * n_classes + yt * n_classes + yp)
        groups_per_attr.append(gs)
        sizes = np.bincount(g_idx, minlength=len(gs))
        counted_per_attr.append(np.array([g != UNKNOWN and sizes[k] >= min_group_size for k, g in enumerate(gs)]))

    if not any(keep.any() for keep in counted_per_attr):
        # A test set too small for the rule: every known group counts (and all are flagged small).
        counted_per_attr = [np.array([g != UNKNOWN for g in gs]) for gs in groups_per_attr]

    def compute(idx: np.ndarray | None) -> tuple[list[_Stats], np.ndarray, dict[str, Any]]:
        correct = (yt == yp).astype(np.float64)
        overall = correct.mean(keepdims=True) if idx is None else correct[idx].mean(axis=1)
        stats = []
        for cells, gs in zip(cells_per_attr, groups_per_attr, strict=True):
            k = len(gs) * n_classes * n_classes
            counts = _group_counts(cells, k, idx).reshape(-1, len(gs), n_classes, n_classes)
            stats.append(_stats(counts, len([g for g in gs if g != UNKNOWN]), present))
        return stats, overall, _summaries(stats, groups_per_attr, overall, counted_per_attr)

    stats, overall_acc, summ = compute(None)

    boot_stats = boot_summ = None
    if n_bootstrap > 0:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n, size=(n_bootstrap, n))
        boot_stats, _, boot_summ = compute(idx)

    group_records: list[GroupMetrics] = []
    pair_records: list[PairFairness] = []
    attr_records: list[AttributeFairness] = []
    for a, (name, gs) in enumerate(zip(names, groups_per_attr, strict=True)):
        st = stats[a]
        for g, group in enumerate(gs):
            rates = tuple(
                ClassRates(
                    cls=str(class_names[c]),
                    n_pos=int(st.pos[0, g, c]),
                    n_neg=int(st.neg[0, g, c]),
                    tpr=_opt(st.tpr[0, g, c]),
                    fpr=_opt(st.fpr[0, g, c]),
                    tnr=_opt(st.tnr[0, g, c]),
                )
                for c in range(n_classes)
            )
            acc_ci = _interval(boot_stats[a].acc[:, g], ci) if boot_stats is not None else None
            group_records.append(
                GroupMetrics(
                    attribute=name,
                    group=group,
                    n=int(st.n[0, g]),
                    accuracy=_opt(st.acc[0, g]),
                    accuracy_ci=acc_ci,
                    rates=rates,
                    small=group != UNKNOWN and int(st.n[0, g]) < min_group_size,
                )
            )
        known = [g for g in gs if g != UNKNOWN]
        for p, (i, j) in enumerate(itertools.combinations(range(len(known)), 2)):
            pair_records.append(
                PairFairness(
                    attribute=name,
                    group_a=known[i],
                    group_b=known[j],
                    eodd=_opt(st.pair_eodd[0, p]),
                    eopp1=_opt(st.pair_eopp1[0, p]),
                    eopp2=_opt(st.pair_eopp2[0, p]),
                    n_classes_eodd=int(st.pair_k_eodd[0, p]),
                    n_classes_eopp1=int(st.pair_k_eopp1[0, p]),
                    n_classes_eopp2=int(st.pair_k_eopp2[0, p]),
                )
            )
        pa = summ["per_attribute"][a]
        attr_records.append(
            AttributeFairness(
                attribute=name,
                unfairness=_opt(pa["unfairness"][0]),
                eodd=_opt(pa["eodd"][0]),
                eopp1=_opt(pa["eopp1"][0]),
                eopp2=_opt(pa["eopp2"][0]),
            )
        )

    intervals: list[tuple[str, float, float]] = []
    if boot_summ is not None:
        for metric in METRIC_NAMES:
            iv = _interval(boot_summ["overall"][metric], ci)
            if iv is not None:
                intervals.append((metric, iv[0], iv[1]))

    ov = summ["overall"]
    return FairnessReport(
        overall_accuracy=float(overall_acc[0]),
        n=int(n),
        unfairness=_opt(ov["unfairness"][0]),
        eodd=_opt(ov["eodd"][0]),
        eopp1=_opt(ov["eopp1"][0]),
        eopp2=_opt(ov["eopp2"][0]),
        groups=tuple(group_records),
        attributes=tuple(attr_records),
        pairs=tuple(pair_records),
        ci=tuple(intervals),
        n_bootstrap=int(n_bootstrap) if boot_summ is not None else 0,
        min_group_size=int(min_group_size),
    )
