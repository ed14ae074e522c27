"""Class-mix decomposition of a group's accuracy: "served worse" versus "harder diseases".

A group's accuracy depends on two things: how well the model recognises each class, and which
classes the group has. Older patients of HAM10000, for example, have far more BCC/AKIEC/BKL, the
classes every model finds hardest, so their accuracy is low even for a model that treats every age
the same. This module separates the two:

    expected_c-mix(group) = sum over classes c of share_c(group) * recall_c(overall)

is the accuracy the group would get if the model recognised each class exactly as well in the group
as overall; only its class mix differs. Then

    observed(group) - overall  =  [expected(group) - overall]  +  [observed(group) - expected(group)]
                                   class-mix effect                 model gap ("served worse")

A negative model gap means the model recognises the group's own cases less well than the same
classes elsewhere; a negative class-mix effect means the group simply has harder classes.
Balanced accuracy (the mean of the group's per-class recalls over the classes it has) is returned
beside accuracy because it does not reward a majority class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nas_core.records import GroupMetrics, Metrics


@dataclass(frozen=True)
class GroupClassMix:
    """One group's accuracy split into its class-mix effect and the model's gap."""

    attribute: str
    group: str
    n: int
    observed: float | None  # the group's accuracy
    expected: float | None  # sum_c share_c(group) * recall_c(overall)
    overall: float | None  # the model's overall accuracy (same test set)
    balanced: float | None  # mean recall over the classes the group has
    recalls: tuple[tuple[str, int, float | None], ...] = ()  # (class, n in group, recall in group)

    @property
    def mix_effect(self) -> float | None:
        """expected - overall: how much the group's class mix alone moves its accuracy."""
        return None if self.expected is None or self.overall is None else self.expected - self.overall

    @property
    def model_gap(self) -> float | None:
        """observed - expected: below zero, the model serves this group's cases worse than the same classes elsewhere."""
        return None if self.observed is None or self.expected is None else self.observed - self.expected


def expected_accuracy(counts: Mapping[str, int], overall_recall: Mapping[str, float | None]) -> float | None:
    """sum_c share_c * recall_c over the classes with a known overall recall (shares renormalised).

    Args:
        counts: samples of each class in the group.
        overall_recall: the model's recall of each class on the whole test set.

    Returns:
        The expected accuracy, or None when the group has no sample of a class with a known recall.
    """
    known = {c: n for c, n in counts.items() if n > 0 and overall_recall.get(c) is not None}
    total = sum(known.values())
    if total == 0:
        return None
    return sum(n / total * float(overall_recall[c]) for c, n in known.items())


def decompose(group: GroupMetrics, overall_recall: Mapping[str, float | None],
              overall_accuracy: float | None) -> GroupClassMix:
    """Split one group's accuracy (its :class:`ClassRates` carry the class counts and recalls)."""
    counts = {r.cls: r.n_pos for r in group.rates}
    recalls = tuple((r.cls, r.n_pos, r.tpr) for r in group.rates)
    present = [r.tpr for r in group.rates if r.n_pos > 0 and r.tpr is not None]
    observed = group.accuracy
    if observed is None and group.n:
        hits = sum(r.n_pos * r.tpr for r in group.rates if r.tpr is not None)
        observed = hits / group.n
    return GroupClassMix(
        attribute=group.attribute, group=group.group, n=group.n, observed=observed,
        expected=expected_accuracy(counts, overall_recall), overall=overall_accuracy,
        balanced=sum(present) / len(present) if present else None, recalls=recalls,
    )


def class_mix(metrics: Metrics, include_unknown: bool = False) -> list[GroupClassMix]:
    """The decomposition of every group of every attribute of a measured candidate."""
    overall_recall = dict(metrics.per_class_recall)
    out = []
    for g in metrics.fairness.groups:
        if g.group == "unknown" and not include_unknown:
            continue
        out.append(decompose(g, overall_recall, metrics.test_acc))
    return out


def class_mix_rows(metrics: Metrics, min_n: int = 0) -> Sequence[dict[str, object]]:
    """Plain rows for tables: one per group, with a ``small`` flag below ``min_n`` test images."""
    return [{
        "attribute": m.attribute, "group": m.group, "n": m.n, "small": m.n < min_n,
        "accuracy": m.observed, "balanced_accuracy": m.balanced, "expected_from_class_mix": m.expected,
        "class_mix_effect": m.mix_effect, "model_gap": m.model_gap,
    } for m in class_mix(metrics)]
