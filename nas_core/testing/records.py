"""Builders of small, realistic records for contract suites and tests (no training, no store).

Owns :func:`make_metrics` and :func:`make_candidate`; the designer suite builds its histories with them.
"""

from __future__ import annotations

from nas_core.records import Candidate, FairnessReport, GroupMetrics, HardwareMetrics, Metrics
from nas_core.space import ArchSpec, default_spec


def make_metrics(
    acc: float = 0.7,
    unfairness: float | None = 0.05,
    params: int = 100_000,
    *,
    train_acc: float | None = None,
    val_acc: float | None = None,
    groups: dict[str, float] | None = None,
    latency: float | None = 0.001,
    memory: float | None = 10.0,
    eodd: float | None = 0.1,
) -> Metrics:
    """A Metrics record with the given headline numbers; groups map "attr:group" -> accuracy."""
    groups = groups if groups is not None else {"sex:male": acc + 0.02, "sex:female": acc - 0.02}
    gms = tuple(
        GroupMetrics(attribute=k.split(":")[0], group=k.split(":")[1], n=50, accuracy=v) for k, v in groups.items()
    )
    fr = FairnessReport(
        overall_accuracy=acc, n=100, unfairness=unfairness, eodd=eodd, eopp1=eodd, eopp2=0.01, groups=gms
    )
    hw = HardwareMetrics(
        params=params, macs=params * 10, size_mb=params * 4 / 1e6, latency_image_s=latency,
        latency_batch_s=None if latency is None else 2 * latency, throughput=None if not latency else 1 / latency,
        peak_memory_mb=memory,
    )
    return Metrics(
        train_loss=0.5, train_acc=acc if train_acc is None else train_acc, val_loss=0.6,
        val_acc=acc if val_acc is None else val_acc, test_acc=acc, balanced_acc=acc - 0.05,
        per_class_recall=(("a", acc), ("b", acc)), fairness=fr, hardware=hw, epochs=2, best_epoch=1,
        class_names=("a", "b"),
    )


def make_candidate(
    cid: int,
    metrics: Metrics | None = None,
    spec: ArchSpec | None = None,
    *,
    status: str | None = None,
    origin: str = "heuristic",
    iteration: int = 0,
) -> Candidate:
    """A Candidate of run 1; status defaults to done when metrics are given, else proposed."""
    spec = spec or default_spec()
    return Candidate(
        id=cid, run_id=1, iteration=iteration, spec=spec, key=spec.key, origin=origin,
        status=status or ("done" if metrics is not None else "proposed"), metrics=metrics,
    )
