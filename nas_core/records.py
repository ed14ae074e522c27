"""Immutable records that cross module borders: measurements, proposals, candidates.

Owns :class:`Metrics` (everything the evaluator measures about one trained
candidate) and its parts, :class:`Proposal` (what a designer suggests) and
:class:`Candidate` (a proposal as the store keeps it). Every record converts
to and from plain JSON-able dicts (``to_dict``/``from_dict``) so the store,
the worker and Ray can move them without pickling code.

Metrics has a flat objective namespace (:data:`OBJECTIVES`, :meth:`Metrics.value`)
used by selection, LINAS and the UI, with the direction of each objective.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nas_core.space import ArchSpec


def _clean(value: Any) -> Any:
    """NaN/inf -> None so JSON stays valid."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class ClassRates:
    """One-vs-rest rates of one class inside one group (None where undefined)."""

    cls: str
    n_pos: int  # samples of this class in the group
    n_neg: int  # samples of other classes in the group
    tpr: float | None  # undefined when n_pos == 0
    fpr: float | None  # undefined when n_neg == 0
    tnr: float | None  # undefined when n_neg == 0


@dataclass(frozen=True)
class GroupMetrics:
    """Accuracy and per-class rates of one group of one demographic attribute."""

    attribute: str  # e.g. "sex"
    group: str  # e.g. "female"; "unknown" rows are reported but excluded from fairness
    n: int  # test samples in the group
    accuracy: float | None  # None when n == 0
    accuracy_ci: tuple[float, float] | None = None  # bootstrap 95% interval
    rates: tuple[ClassRates, ...] = ()
    small: bool = False  # fewer than the report's min_group_size samples: left out of Unfairness


@dataclass(frozen=True)
class PairFairness:
    """EODD/EOPP1/EOPP2 of one unordered pair of groups of one attribute."""

    attribute: str
    group_a: str
    group_b: str
    eodd: float | None  # mean over classes that count (None if none counts)
    eopp1: float | None
    eopp2: float | None
    n_classes_eodd: int = 0  # classes that counted for each metric
    n_classes_eopp1: int = 0
    n_classes_eopp2: int = 0


@dataclass(frozen=True)
class AttributeFairness:
    """Fairness of one attribute: its own Unfairness and the mean over its pairs."""

    attribute: str
    unfairness: float | None
    eodd: float | None
    eopp1: float | None
    eopp2: float | None


@dataclass(frozen=True)
class FairnessReport:
    """Everything DESIGN.md's fairness section defines, with bootstrap intervals."""

    overall_accuracy: float
    n: int  # all test samples, unknown-group ones included
    unfairness: float | None
    eodd: float | None
    eopp1: float | None
    eopp2: float | None
    groups: tuple[GroupMetrics, ...] = ()  # includes "unknown" groups (excluded from metrics)
    attributes: tuple[AttributeFairness, ...] = ()
    pairs: tuple[PairFairness, ...] = ()
    # metric name -> (low, high) 95% bootstrap interval; names: unfairness, eodd, eopp1, eopp2
    ci: tuple[tuple[str, float, float], ...] = ()
    n_bootstrap: int = 0
    min_group_size: int = 0  # known groups below this size are flagged small, left out of Unfairness

    @property
    def worst_group_accuracy(self) -> float | None:
        """Lowest accuracy over the known groups with at least one sample."""
        accs = [g.accuracy for g in self.groups if g.group != "unknown" and g.accuracy is not None]
        return min(accs) if accs else None

    def interval(self, name: str) -> tuple[float, float] | None:
        """The bootstrap interval of ``name`` (unfairness, eodd, eopp1, eopp2)."""
        for n, lo, hi in self.ci:
            if n == name:
                return (lo, hi)
        return None

    def group_lines(self) -> list[str]:
        """The per-group table of the CLIs' text output: attribute, group, n, accuracy, its interval.

        The ``unknown`` group and groups under ``min_group_size`` are flagged on their line, so a
        one-image group is never read as a finding.
        """
        lines = [f"{'attribute':<14} {'group':<12} {'n':>6} {'accuracy':>9}  95% interval"]
        for g in self.groups:
            acc = "n/a" if g.accuracy is None else f"{100 * g.accuracy:.1f}%"
            iv = "" if g.accuracy_ci is None else f"[{100 * g.accuracy_ci[0]:.1f}, {100 * g.accuracy_ci[1]:.1f}]"
            if g.group == "unknown":
                note = "  (left out of the fairness metrics)"
            elif g.small:
                note = f"  SMALL (n < {self.min_group_size}: left out of Unfairness)"
            else:
                note = ""
            lines.append(f"{g.attribute:<14} {g.group:<12} {g.n:>6} {acc:>9}  {iv}{note}")
        return lines


@dataclass(frozen=True)
class HardwareMetrics:
    """Costs of the model on the run's Env. Methods are stated in nas_core.metrics.hardware."""

    params: int
    macs: int  # multiply-accumulates of one image at the run's input size
    size_mb: float  # fp32 parameters + buffers
    latency_batch_s: float | None = None  # median seconds per batch of ``batch_size``
    latency_image_s: float | None = None  # latency_batch_s / batch_size
    latency_b1_s: float | None = None  # median seconds for a single image
    throughput: float | None = None  # images per second at ``batch_size``
    peak_memory_mb: float | None = None  # peak inference memory
    peak_train_memory_mb: float | None = None  # peak memory of one training step
    memory_method: str = ""  # how memory was measured
    device: str = "cpu"
    threads: int = 1
    batch_size: int = 2
    # (max - min) / min of the latency's round medians (nas_core.metrics.hardware); None before it existed
    latency_spread: float | None = None
    # process CPU seconds (all threads) per image of the batch forward pass, CPU only: barely moves
    # with other processes' load, unlike the wall-clock latency; None on CUDA and before it existed
    latency_cpu_image_s: float | None = None


@dataclass(frozen=True)
class Metrics:
    """Everything measured about one candidate (trained, or estimated by the super-network)."""

    train_loss: float | None
    train_acc: float | None
    val_loss: float | None
    val_acc: float | None
    test_acc: float
    balanced_acc: float
    per_class_recall: tuple[tuple[str, float | None], ...]
    fairness: FairnessReport
    hardware: HardwareMetrics
    epochs: int = 0  # epochs run
    best_epoch: int = 0  # epoch whose weights were kept
    train_seconds: float = 0.0
    estimate: bool = False  # True: a super-network estimate, not a from-scratch result
    class_names: tuple[str, ...] = ()
    # confusion matrices per group: (attribute, group, matrix rows as tuples)
    confusion: tuple[tuple[str, str, tuple[tuple[int, ...], ...]], ...] = ()
    # torch intra-op threads the result was computed with (0 = not recorded): on the CPU a seed
    # reproduces a result bit for bit only at the same thread count
    threads: int = 0
    # arithmetic of the training forward passes: "fp32", "bf16" (autocast), "" (not recorded: fp32
    # before the setting existed, or nothing was trained). Measurements are always fp32.
    precision: str = ""

    def value(self, name: str) -> float | None:
        """Value of a flat objective name (see :data:`OBJECTIVES`)."""
        if name not in OBJECTIVES:
            raise KeyError(f"unknown metric {name!r}; known: {', '.join(OBJECTIVES)}")
        getter = OBJECTIVES[name][1]
        v = getter(self)
        return None if v is None else float(v)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (NaN -> None)."""
        return _to_jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Metrics:
        """Inverse of :meth:`to_dict`."""
        d = dict(data)
        fr = dict(d["fairness"])
        fr["groups"] = tuple(
            GroupMetrics(
                **{
                    **g,
                    "accuracy_ci": tuple(g["accuracy_ci"]) if g.get("accuracy_ci") else None,
                    "rates": tuple(ClassRates(**r) for r in g.get("rates", ())),
                }
            )
            for g in fr.get("groups", ())
        )
        fr["attributes"] = tuple(AttributeFairness(**a) for a in fr.get("attributes", ()))
        fr["pairs"] = tuple(PairFairness(**p) for p in fr.get("pairs", ()))
        fr["ci"] = tuple(tuple(c) for c in fr.get("ci", ()))
        d["fairness"] = FairnessReport(**fr)
        d["hardware"] = HardwareMetrics(**d["hardware"])
        d["per_class_recall"] = tuple(tuple(x) for x in d.get("per_class_recall", ()))
        d["class_names"] = tuple(d.get("class_names", ()))
        d["confusion"] = tuple(
            (a, g, tuple(tuple(int(v) for v in row) for row in m)) for a, g, m in d.get("confusion", ())
        )
        return cls(**d)

    def to_text(self) -> str:
        """The paper's optMetrics text form (FL-NAS section III-C)."""

        def pct(v: float | None) -> str:
            return "n/a" if v is None else f"{100 * v:.2f}%"

        def num(v: float | None, digits: int = 4) -> str:
            return "n/a" if v is None else f"{v:.{digits}f}"

        fr = self.fairness
        detail = ", ".join(
            f"{g.group}: ({pct(g.accuracy)}, {g.n}{', small: not in Unfairness' if g.small else ''})"
            for g in fr.groups if g.group != "unknown"
        )
        hw = self.hardware
        mem = "n/a" if hw.peak_memory_mb is None else f"{hw.peak_memory_mb:.2f} MB"
        tput = "n/a" if hw.throughput is None else f"{hw.throughput:.2f} images per second"
        lat = "n/a" if hw.latency_image_s is None else f"{hw.latency_image_s:.6f} seconds per image"
        if hw.latency_cpu_image_s is not None:
            lat += f" ({hw.latency_cpu_image_s:.6f} CPU seconds)"
        return (
            f"Train Loss: {num(self.train_loss)}, Train Acc: {pct(self.train_acc)}, "
            f"Valid Loss: {num(self.val_loss)}, Valid Acc: {pct(self.val_acc)}, "
            f"Test Acc: {pct(self.test_acc)}, "
            f"Unfairness Score: {num(fr.unfairness)}, EODD: {num(fr.eodd)}, "
            f"EOPP1: {num(fr.eopp1)}, EOPP2: {num(fr.eopp2)}, "
            f"Fairness Detail: [{detail}] "
            f"Latency: {lat}, Throughput: {tput}, Peak Memory: {mem} ({hw.device}), "
            f"Parameters: {hw.params:,}, MACs: {hw.macs:,}"
            + (" [super-network estimate]" if self.estimate else "")
        )


def _to_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_to_jsonable(v) for v in obj]
    return _clean(obj)


#: Flat objective names -> (direction, getter). direction is "max" or "min".
OBJECTIVES: dict[str, tuple[str, Any]] = {
    "accuracy": ("max", lambda m: m.test_acc),
    "val_accuracy": ("max", lambda m: m.val_acc),
    "balanced_accuracy": ("max", lambda m: m.balanced_acc),
    "worst_group_accuracy": ("max", lambda m: m.fairness.worst_group_accuracy),
    "unfairness": ("min", lambda m: m.fairness.unfairness),
    "eodd": ("min", lambda m: m.fairness.eodd),
    "eopp1": ("min", lambda m: m.fairness.eopp1),
    "eopp2": ("min", lambda m: m.fairness.eopp2),
    "latency": ("min", lambda m: m.hardware.latency_image_s),
    "params": ("min", lambda m: m.hardware.params),
    "macs": ("min", lambda m: m.hardware.macs),
    "memory": ("min", lambda m: m.hardware.peak_memory_mb),
    "size_mb": ("min", lambda m: m.hardware.size_mb),
    "latency_cpu": ("min", lambda m: m.hardware.latency_cpu_image_s),  # after the columns of migration 1
}


def direction(name: str) -> str:
    """"max" or "min" for an objective name."""
    if name not in OBJECTIVES:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name][0]


@dataclass(frozen=True)
class Proposal:
    """A designer's suggestion: a spec plus why (rationale) or what it expects (predicted)."""

    spec: ArchSpec
    origin: str  # designer name: llm, heuristic, random, linas, nsga2, baseline, human
    rationale: str = ""
    predicted: tuple[tuple[str, float], ...] = ()  # objective -> predicted value (LINAS)


#: Candidate life cycle. proposed -> approved -> queued -> running -> done|failed; proposed -> rejected.
CANDIDATE_STATUSES = ("proposed", "rejected", "queued", "running", "done", "failed", "cancelled")


@dataclass(frozen=True)
class Candidate:
    """A proposal as stored for a run, with its status and (once evaluated) metrics."""

    id: int
    run_id: int
    iteration: int
    spec: ArchSpec
    key: str
    origin: str
    status: str
    rationale: str = ""
    predicted: tuple[tuple[str, float], ...] = ()
    metrics: Metrics | None = None
    error: str = ""
    baseline: str = ""  # baseline name when the candidate is a hand-made model
    extra: tuple[tuple[str, Any], ...] = field(default=())  # small engine-specific facts
