"""Builders of complete, realistic records for tests that need measured candidates without training."""

from __future__ import annotations

from nas_core.records import (
    AttributeFairness,
    Candidate,
    ClassRates,
    FairnessReport,
    GroupMetrics,
    HardwareMetrics,
    Metrics,
    PairFairness,
)
from nas_core.space import ArchSpec, default_spec


def make_metrics(acc: float = 0.7, unfairness: float = 0.05, params: int = 50_000, latency: float = 0.002,
                 estimate: bool = False, small_group_n: int = 12) -> Metrics:
    """A Metrics record whose parts agree with each other (groups around ``acc``)."""
    groups = (
        GroupMetrics("sex", "male", 100, acc + unfairness, (acc, acc + 2 * unfairness),
                     (ClassRates("MEL", 20, 80, 0.6, 0.1, 0.9),)),
        GroupMetrics("sex", "female", 90, acc - unfairness, (acc - 2 * unfairness, acc),
                     (ClassRates("MEL", 18, 72, 0.5, 0.12, 0.88),)),
        GroupMetrics("age", "young", small_group_n, acc - 2 * unfairness, None, ()),
        GroupMetrics("age", "unknown", 5, 0.6, None, ()),
    )
    fr = FairnessReport(
        overall_accuracy=acc, n=207, unfairness=unfairness, eodd=0.1, eopp1=0.1, eopp2=0.02,
        groups=groups,
        attributes=(AttributeFairness("sex", unfairness, 0.1, 0.1, 0.02),),
        pairs=(PairFairness("sex", "female", "male", 0.1, 0.1, 0.02, 1, 1, 1),),
        ci=(("unfairness", unfairness / 2, unfairness * 2),), n_bootstrap=50,
    )
    hw = HardwareMetrics(params=params, macs=params * 40, size_mb=params * 4 / 2**20, latency_batch_s=latency * 2,
                         latency_image_s=latency, latency_b1_s=latency, throughput=1 / latency,
                         peak_memory_mb=12.5, memory_method="test", threads=2, batch_size=2)
    return Metrics(train_loss=0.8, train_acc=acc + 0.05, val_loss=0.9, val_acc=acc, test_acc=acc,
                   balanced_acc=acc - 0.1, per_class_recall=(("MEL", 0.55), ("NV", 0.8)), fairness=fr,
                   hardware=hw, epochs=3, best_epoch=2, train_seconds=1.0, estimate=estimate,
                   class_names=("MEL", "NV"), confusion=(("sex", "male", ((10, 2), (3, 20))),))


def make_candidate(cid: int = 1, metrics: Metrics | None = None, spec: ArchSpec | None = None,
                   status: str = "done", origin: str = "heuristic") -> Candidate:
    """A stored-looking candidate."""
    spec = spec or default_spec()
    return Candidate(id=cid, run_id=1, iteration=0, spec=spec, key=spec.key, origin=origin, status=status,
                     rationale="more capacity for the weakest group", metrics=metrics)
