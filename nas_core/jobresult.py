"""The typed records a job handler hands back: :class:`JobResult` at the end, :class:`Progress` on the way.

Owns the one path from a handler to the store and the pages:

- every handler returns a :class:`JobResult` (``kind`` + ``record``): ``"metrics"`` (a
  :class:`~nas_core.records.Metrics`, written as the job's candidate's metrics) or ``"data"`` (a
  JSON-able mapping: a checkpoint summary, a preliminary rung, a re-measurement). The worker
  never looks inside a result to guess what it is.
- every long step reports :class:`Progress` (``fraction`` 0..1, a one-line ``message``, a
  ``detail`` mapping such as epoch, losses, ETA): the worker writes it to the job row, and the
  app shows it through one progress widget (``ui.common.progress_bar``).

Stored shapes. ``jobs.progress_json`` is :meth:`Progress.to_dict` (flat: ``fraction``,
``message`` and the detail keys, so readers of older rows keep working). ``jobs.result_json`` is
:meth:`JobResult.to_dict`: ``{"kind": "data", "record": {...}}``; for a metrics result of a
candidate's job only ``{"kind": "metrics", "candidate_id": N}``, since the metrics themselves are
written once, in the ``metrics`` table. :meth:`JobResult.from_dict` also reads rows written before
this shape (a bare ``Metrics.to_dict()`` or a bare dict).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nas_core.records import Metrics

#: The kinds of :class:`JobResult`.
RESULT_KINDS = ("metrics", "data")



class MalformedResult(ValueError):
    """A handler's result (or a stored row) that cannot be read as a :class:`JobResult`; the message says why."""


_FRACTION_PAIRS = (("epoch", "max_epochs"), ("epoch", "total"), ("done", "total"), ("step", "steps"))


@dataclass(frozen=True)
class Progress:
    """One progress report of a long step.

    Attributes:
        fraction: how much of the step is done, 0..1 (None: not known yet).
        message: one line for a person ("epoch 3/10", "measuring 12/40 sub-networks").
        detail: JSON-able extras the pages may plot or show (epoch, train_loss, eta_seconds, ...).
    """

    fraction: float | None = None
    message: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fraction is not None:
            f = float(self.fraction)
            if math.isnan(f):
                raise ValueError("Progress.fraction must be a number in 0..1, not NaN")
            object.__setattr__(self, "fraction", min(max(f, 0.0), 1.0))
        object.__setattr__(self, "detail", dict(self.detail))

    def to_dict(self) -> dict[str, Any]:
        """The flat JSON form stored in the job row: detail keys, then ``fraction`` and ``message``."""
        return {**self.detail, "fraction": self.fraction, "message": self.message}

    @classmethod
    def from_report(cls, report: Progress | Mapping[str, Any] | float | int | None) -> Progress:
        """A Progress from what a handler reported: a Progress, a bare fraction, or a dict.

        A dict is read as stored (``fraction``, ``message``, the rest is detail); a missing fraction
        comes from epoch/max_epochs, epoch/total, done/total or step/steps, and a missing message
        from the epoch or stage, so every report moves the same bar.

        Raises:
            TypeError: the report is none of these.
        """
        if isinstance(report, Progress):
            return report
        if report is None:
            return cls()
        if isinstance(report, bool):
            raise TypeError("a progress report must be a Progress, a fraction or a mapping, not a bool")
        if isinstance(report, int | float):
            return cls(fraction=float(report))
        if not isinstance(report, Mapping):
            raise TypeError(f"a progress report must be a Progress, a fraction or a mapping, not {type(report).__name__}")
        detail = {str(k): v for k, v in report.items() if k not in ("fraction", "message")}
        fraction = report.get("fraction")
        if fraction is None:
            for num, den in _FRACTION_PAIRS:
                if _number(detail.get(num)) is not None and (_number(detail.get(den)) or 0) > 0:
                    fraction = float(detail[num]) / float(detail[den])
                    break
        message = str(report.get("message") or "") or _message(detail, fraction)
        return cls(fraction=None if fraction is None else float(fraction), message=message, detail=detail)

    def merged(self, newer: Progress) -> Progress:
        """``newer`` on top of this report: its fraction and message, the detail keys of both (newer wins)."""
        return Progress(
            fraction=newer.fraction if newer.fraction is not None else self.fraction,
            message=newer.message or self.message,
            detail={**self.detail, **newer.detail},
        )


@dataclass(frozen=True)
class JobResult:
    """What a job handler returns.

    Attributes:
        kind: ``"metrics"`` (``record`` is a :class:`~nas_core.records.Metrics`) or ``"data"``
            (``record`` is a JSON-able mapping).
        record: the result itself (None only for a metrics result read back from a job row: its
            metrics are the candidate's, see :attr:`candidate_id`).
        candidate_id: for a metrics result read back from the store, the candidate holding the metrics.
    """

    kind: str
    record: Any
    candidate_id: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in RESULT_KINDS:
            raise ValueError(f"JobResult.kind must be one of {', '.join(RESULT_KINDS)}, not {self.kind!r}")
        if self.kind == "metrics" and self.record is not None and not isinstance(self.record, Metrics):
            raise TypeError(f"a metrics JobResult holds a Metrics record, not {type(self.record).__name__}")
        if self.kind == "data":
            if not isinstance(self.record, Mapping):
                raise TypeError(f"a data JobResult holds a mapping, not {type(self.record).__name__}")
            object.__setattr__(self, "record", dict(self.record))

    @classmethod
    def metrics(cls, metrics: Metrics) -> JobResult:
        """A result whose record is the job's candidate's measured metrics."""
        return cls("metrics", metrics)

    @classmethod
    def data(cls, record: Mapping[str, Any]) -> JobResult:
        """A result that is a JSON-able record (no metrics are written)."""
        return cls("data", record)

    def to_dict(self, candidate_id: int | None = None) -> dict[str, Any]:
        """The JSON stored as the job's result.

        Args:
            candidate_id: the job's candidate; a metrics result then stores only this pointer,
                because its metrics are written once, as the candidate's.
        """
        if self.kind == "metrics":
            if candidate_id is not None:
                return {"kind": "metrics", "candidate_id": int(candidate_id)}
            return {"kind": "metrics", "record": None if self.record is None else self.record.to_dict()}
        return {"kind": "data", "record": dict(self.record)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobResult:
        """Read a stored result: this module's shape, or a row written before it.

        Old rows held the handler's bare dict; a ``Metrics.to_dict()`` among them (it has
        ``fairness``, ``hardware`` and ``test_acc``) reads back as a metrics result.
        """
        try:
            if set(data) <= {"kind", "record", "candidate_id"} and data.get("kind") in RESULT_KINDS:
                if data["kind"] == "metrics":
                    rec = data.get("record")
                    cid = data.get("candidate_id")
                    return cls("metrics", None if rec is None else _metrics_of(rec),
                               None if cid is None else int(cid))
                return cls("data", data.get("record") or {})
            if {"fairness", "hardware", "test_acc"} <= set(data):
                return cls("metrics", _metrics_of(data))
            return cls("data", data)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, MalformedResult):
                raise
            raise MalformedResult(f"a result that cannot be stored ({exc})") from exc

    @classmethod
    def of(cls, value: JobResult | Metrics | Mapping[str, Any] | None) -> JobResult:
        """The JobResult of a handler's return value: a JobResult, a Metrics, or a plain mapping.

        A plain mapping is a handler written before JobResult: it is read like an old job row
        (:meth:`from_dict`), so a bare ``Metrics.to_dict()`` still counts as metrics.

        Raises:
            MalformedResult: anything else, or metrics that do not parse (the worker fails the job with it).
        """
        if isinstance(value, JobResult):
            return value
        if isinstance(value, Metrics):
            return cls.metrics(value)
        if value is None:
            return cls.data({})
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        raise MalformedResult(f"a handler must return a JobResult, a Metrics or a mapping, not {type(value).__name__}")

    def as_dict(self) -> dict[str, Any] | None:
        """The record as a plain dict (a metrics result's ``Metrics.to_dict()``; None when only a pointer)."""
        if self.kind == "metrics":
            return None if self.record is None else self.record.to_dict()
        return dict(self.record)


def _metrics_of(data: Any) -> Metrics:
    try:
        return Metrics.from_dict(data)
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise MalformedResult(f"malformed metrics ({type(exc).__name__}: {exc})") from exc


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _message(detail: Mapping[str, Any], fraction: Any) -> str:
    parts: list[str] = []
    if detail.get("stage"):
        parts.append(str(detail["stage"]))
    if _number(detail.get("epoch")) is not None:
        total = detail.get("max_epochs") or detail.get("total")
        parts.append(f"epoch {detail['epoch']}/{total}" if total else f"epoch {detail['epoch']}")
    elif _number(detail.get("done")) is not None and detail.get("total"):
        parts.append(f"{detail['done']}/{detail['total']}")
    if not parts and fraction is not None:
        parts.append(f"{100 * float(fraction):.0f}%")
    return ", ".join(parts)
