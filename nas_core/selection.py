"""Choosing the best candidate by the user's priorities, and Pareto fronts.

Owns :class:`Priorities` (ordered objectives with tolerances, or weights) and the
functions that read measured candidates through them: FL-NAS's GetBestMetrics
(:func:`best_candidate`, :func:`rank_candidates`) and the Pareto helpers
(:func:`non_dominated`, :func:`pareto_front`) that LINAS and the UI reuse.
Hypervolume is computed by LINAS (``nas_core.linas.hypervolume``); the shared normalization that makes
curves of several runs comparable (:func:`hypervolume_scale`, :func:`hypervolume_points`) is here, and so
is FL-NAS's Table I (:func:`comparison_of`: the run's best searched candidates next to its baselines).

Exact semantics of "best" (FL-NAS section III-B, made precise):

Eligible candidates are those with metrics (``Candidate.metrics is not None``);
``failed``/``rejected`` candidates never have metrics. Every objective is read
through :meth:`nas_core.records.Metrics.value` and turned into a "goodness"
``g = v`` for "max" objectives and ``g = -v`` for "min" ones, so larger is better.

Ordered mode (lexicographic with tolerances, a semiorder):

1. Guards first. For every objective with ``guard`` set, a candidate is dropped
   when its goodness is below the best goodness among the eligible candidates
   minus ``guard`` (or when it lacks that metric while another candidate has it).
   The paper's "improve fairness without decreasing accuracy" is the accuracy
   guard of the default priorities: fairness may only be bought with at most
   ``guard`` of accuracy (a constant predictor is often "fair" and must not win).
2. Then objective by objective, in order, on the surviving pool: candidates
   that lack the metric are dropped if at least one candidate in the pool has
   it (a missing value cannot be shown to be as good); if nobody has it the
   objective is skipped. Of the rest, every candidate whose goodness is
   ``>= best - tolerance`` stays (``tolerance`` is in the metric's own units,
   e.g. 0.01 = one accuracy point; values within it are ties).
3. Remaining ties are broken by the raw goodness of each objective in order
   (no tolerance), then by the lowest candidate id (the oldest), so the result
   is deterministic.

Weighted mode: for each objective the goodness is min-max normalized over the
eligible candidates to [0, 1] (1 = best); when every candidate has the same
value the objective contributes 1 to all; a missing value scores 0 (worst).
Score = sum(w_i * s_i) / sum(w_i); highest wins; ties as in ordered mode step 3.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nas_core.errors import UserError
from nas_core.records import OBJECTIVES, Candidate

MODES = ("ordered", "weighted")


class PrioritiesError(UserError, ValueError):
    """The priorities name an unknown metric, an unknown mode or a negative tolerance/weight."""


@dataclass(frozen=True)
class Objective:
    """One objective in the user's priorities. Names are keys of nas_core.records.OBJECTIVES."""

    name: str
    tolerance: float = 0.0  # ordered mode: values within this of the best count as ties
    weight: float = 1.0  # weighted mode: importance of this objective
    guard: float | None = None  # ordered mode: never accept more than this loss vs the best; None = no guard

    def __post_init__(self) -> None:
        if self.name not in OBJECTIVES:
            raise PrioritiesError(f"unknown objective {self.name!r}; known: {', '.join(OBJECTIVES)}")
        if not self.tolerance >= 0:
            raise PrioritiesError(f"tolerance of {self.name} must be >= 0, got {self.tolerance}")
        if not self.weight >= 0:
            raise PrioritiesError(f"weight of {self.name} must be >= 0, got {self.weight}")
        if self.guard is not None and not self.guard >= 0:
            raise PrioritiesError(f"guard of {self.name} must be >= 0 or empty, got {self.guard}")

    @property
    def direction(self) -> str:
        """"max" or "min"."""
        return OBJECTIVES[self.name][0]


def _paper_default() -> tuple[Objective, ...]:
    # FL-NAS: improve fairness without decreasing accuracy; hardware efficiency last.
    # The accuracy guard (2 points) is what "without decreasing accuracy" means for selection.
    return (
        Objective("unfairness", tolerance=0.005),
        Objective("accuracy", tolerance=0.01, guard=0.02),
        Objective("params", tolerance=0.0),
    )


@dataclass(frozen=True)
class Priorities:
    """How "best" is decided: lexicographic with tolerances ("ordered") or a weighted sum."""

    mode: str = "ordered"  # ordered | weighted
    objectives: tuple[Objective, ...] = field(default_factory=_paper_default)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise PrioritiesError(f"priority mode {self.mode!r} is unknown; use ordered or weighted")
        if not self.objectives:
            raise PrioritiesError("priorities need at least one objective")
        names = [o.name for o in self.objectives]
        if len(set(names)) != len(names):
            raise PrioritiesError(f"an objective is listed twice in the priorities: {names}")
        if self.mode == "weighted" and sum(o.weight for o in self.objectives) <= 0:
            raise PrioritiesError("weighted priorities need at least one positive weight")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {
            "mode": self.mode,
            "objectives": [
                {"name": o.name, "tolerance": o.tolerance, "weight": o.weight, "guard": o.guard}
                for o in self.objectives
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Priorities:
        """Inverse of :meth:`to_dict`.

        Raises:
            PrioritiesError: unknown fields, metrics or modes.
        """
        unknown = set(data) - {"mode", "objectives"}
        if unknown:
            raise PrioritiesError(f"priorities: unknown field(s) {sorted(unknown)}; allowed: mode, objectives")
        if data.get("objectives") is None:
            return cls(mode=data.get("mode", "ordered"))
        objs = []
        for raw in data["objectives"]:
            if isinstance(raw, str):
                objs.append(Objective(raw))
                continue
            if not isinstance(raw, Mapping):
                raise PrioritiesError(f"priorities: an objective must be a name or an object, got {raw!r}")
            bad = set(raw) - {"name", "tolerance", "weight", "guard"}
            if bad:
                raise PrioritiesError(
                    f"priorities: unknown objective field(s) {sorted(bad)}; allowed: name, tolerance, weight, guard"
                )
            try:
                objs.append(Objective(**dict(raw)))
            except TypeError as exc:
                raise PrioritiesError(f"priorities: {exc}") from exc
        return cls(mode=data.get("mode", "ordered"), objectives=tuple(objs))

    @classmethod
    def from_names(cls, names: Sequence[str], mode: str = "ordered") -> Priorities:
        """Ordered (or equally weighted) priorities from bare objective names."""
        return cls(mode=mode, objectives=tuple(Objective(n) for n in names))

    def describe(self) -> str:
        """One paragraph for prompts and reports."""
        if self.mode == "weighted":
            parts = [f"{o.name} ({o.direction}imize, weight {o.weight:g})" for o in self.objectives]
            return "Weighted priorities: " + ", ".join(parts) + "."
        parts = []
        for i, o in enumerate(self.objectives, 1):
            text = f"{i}. {o.name} ({o.direction}imize"
            if o.tolerance:
                text += f"; differences within {o.tolerance:g} count as ties"
            if o.guard is not None:
                text += f"; never lose more than {o.guard:g} of it"
            parts.append(text + ")")
        return "Objectives in order of priority: " + "; ".join(parts) + "."


def goodness(candidate: Candidate, name: str) -> float | None:
    """Value of objective ``name`` oriented so larger is better (None when missing)."""
    if candidate.metrics is None:
        return None
    value = candidate.metrics.value(name)
    if value is None or not math.isfinite(value):
        return None
    return value if OBJECTIVES[name][0] == "max" else -value


def _tie_key(c: Candidate, objectives: Sequence[Objective]) -> tuple:
    # Larger goodness first, missing last, then the oldest id.
    parts: list[Any] = []
    for o in objectives:
        g = goodness(c, o.name)
        parts.append(math.inf if g is None else -g)
    parts.append(c.id)
    return tuple(parts)


def _ordered_pool(cands: list[Candidate], objectives: Sequence[Objective]) -> list[Candidate]:
    pool = list(cands)
    for o in objectives:
        if o.guard is None:
            continue
        vals = [goodness(c, o.name) for c in pool]
        known = [v for v in vals if v is not None]
        if not known:
            continue
        floor = max(known) - o.guard
        pool = [c for c, v in zip(pool, vals) if v is not None and v >= floor - 1e-12]
    for o in objectives:
        vals = [goodness(c, o.name) for c in pool]
        known = [v for v in vals if v is not None]
        if not known:
            continue
        floor = max(known) - o.tolerance
        pool = [c for c, v in zip(pool, vals) if v is not None and v >= floor - 1e-12]
        if len(pool) == 1:
            break
    return pool


def weighted_scores(candidates: Sequence[Candidate], priorities: Priorities) -> dict[int, float]:
    """Weighted-mode score in [0, 1] of every candidate with metrics, by candidate id."""
    cands = [c for c in candidates if c.metrics is not None]
    total = sum(o.weight for o in priorities.objectives) or 1.0
    scores = {c.id: 0.0 for c in cands}
    for o in priorities.objectives:
        vals = {c.id: goodness(c, o.name) for c in cands}
        known = [v for v in vals.values() if v is not None]
        if not known:
            continue
        lo, hi = min(known), max(known)
        for cid, v in vals.items():
            if v is None:
                continue
            s = 1.0 if hi == lo else (v - lo) / (hi - lo)
            scores[cid] += o.weight * s
    return {cid: s / total for cid, s in scores.items()}


def rank_candidates(candidates: Sequence[Candidate], priorities: Priorities | None = None,
                    limit: int | None = None) -> list[Candidate]:
    """Every candidate with metrics (or the first ``limit``), best first, by ``priorities``.

    Ordered mode: the best is :func:`best_candidate`; the rest follow by repeating the
    selection on what is left (quadratic, hence ``limit`` for "the top few").
    """
    priorities = priorities or Priorities()
    cands = sorted((c for c in candidates if c.metrics is not None), key=lambda c: c.id)
    if priorities.mode == "weighted":
        scores = weighted_scores(cands, priorities)
        out = sorted(cands, key=lambda c: (-scores[c.id],) + _tie_key(c, priorities.objectives))
        return out if limit is None else out[:limit]
    ranked: list[Candidate] = []
    left = cands
    while left and (limit is None or len(ranked) < limit):
        pool = _ordered_pool(left, priorities.objectives)
        if not pool:  # everyone lacked a guarded metric someone else had
            pool = left
        best = min(pool, key=lambda c: _tie_key(c, priorities.objectives))
        ranked.append(best)
        left = [c for c in left if c.id != best.id]
    return ranked


def best_candidate(candidates: Sequence[Candidate], priorities: Priorities | None = None) -> Candidate | None:
    """GetBestMetrics: the best measured candidate by ``priorities``, or None when none is measured."""
    priorities = priorities or Priorities()
    cands = sorted((c for c in candidates if c.metrics is not None), key=lambda c: c.id)
    if not cands:
        return None
    if priorities.mode == "weighted":
        return rank_candidates(cands, priorities)[0]
    pool = _ordered_pool(cands, priorities.objectives) or cands
    return min(pool, key=lambda c: _tie_key(c, priorities.objectives))


def non_dominated(points: Sequence[Sequence[float | None]], directions: Sequence[str]) -> list[bool]:
    """Flags: True where no other point dominates this one.

    Args:
        points: one row of objective values per point; None/NaN counts as the worst value.
        directions: "max" or "min" per column.

    A point dominates another when it is at least as good in every objective and
    strictly better in one; equal points do not dominate each other (both stay).
    """
    for d in directions:
        if d not in ("max", "min"):
            raise ValueError(f"direction must be 'max' or 'min', got {d!r}")
    import numpy as np

    rows = []
    for p in points:
        if len(p) != len(directions):
            raise ValueError(f"point {list(p)} has {len(p)} values; expected {len(directions)}")
        row = []
        for v, d in zip(p, directions):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                row.append(-math.inf)
            else:
                row.append(float(v) if d == "max" else -float(v))
        rows.append(row)
    if not rows:
        return []
    # Larger is better in every column now. Sweep in descending lexicographic order: a point can only
    # be dominated by one that comes before it, and if it is, some non-dominated one dominates it, so
    # each point is checked against the front so far only (the UI sorts 5,000+ points).
    a = np.asarray(rows, dtype=float)
    flags = np.zeros(len(a), dtype=bool)
    front = np.empty((0, a.shape[1]))
    for i in np.lexsort(-a.T[::-1]):
        p = a[i]
        if len(front) and ((front >= p).all(axis=1) & (front > p).any(axis=1)).any():
            continue
        flags[i] = True
        front = np.vstack([front, p])
    return flags.tolist()


def pareto_front(points: Sequence[Sequence[float | None]], directions: Sequence[str]) -> list[int]:
    """Indices of the non-dominated points, in input order (see :func:`non_dominated`)."""
    return [i for i, ok in enumerate(non_dominated(points, directions)) if ok]


def candidate_front(candidates: Sequence[Candidate], objectives: Sequence[str]) -> list[Candidate]:
    """The measured candidates on the Pareto front of ``objectives``."""
    cands = [c for c in candidates if c.metrics is not None]
    dirs = [OBJECTIVES[n][0] for n in objectives]
    pts = [[c.metrics.value(n) for n in objectives] for c in cands]  # type: ignore[union-attr]
    return [cands[i] for i in pareto_front(pts, dirs)]


@dataclass(frozen=True)
class HypervolumeScale:
    """One normalization shared by the hypervolume curves of the runs compared, so the curves compare.

    Everything is in minimization form: an objective to maximize enters negated (its sign is -1).

    Attributes:
        signs: +1 for a "min" objective, -1 for a "max" one.
        ideal: per-objective best value over every point of every run compared.
        nadir: per-objective worst value; an objective where every point is equal gets a span of 1.
        ref: the reference point in normalized space (the nadir plus the margin, e.g. 1.1).
    """

    signs: tuple[float, ...]
    ideal: tuple[float, ...]
    nadir: tuple[float, ...]
    ref: tuple[float, ...]

    def minimized(self, values: Sequence[float]) -> tuple[float, ...]:
        """``values`` (natural directions) in minimization form."""
        return tuple(s * float(v) for s, v in zip(self.signs, values))


def hypervolume_points(candidates: Sequence[Candidate], objectives: Sequence[str]) -> list[tuple[float, ...]]:
    """The objective values of the measured searched candidates, oldest first (baselines and
    candidates missing a value left out): the evaluations a run's hypervolume curve steps through."""
    out = []
    for c in sorted(candidates, key=lambda c: c.id):
        if c.metrics is None or c.origin == "baseline":
            continue
        vals = [c.metrics.value(o) for o in objectives]
        if any(v is None for v in vals):
            continue
        out.append(tuple(float(v) for v in vals))  # type: ignore[arg-type]
    return out


def hypervolume_scale(points: Sequence[Sequence[float]], directions: Sequence[str],
                      margin: float = 0.1) -> HypervolumeScale | None:
    """The ideal, nadir and reference point of ``points`` (natural directions; all runs together).

    Args:
        points: every point of every run compared, one value per objective.
        directions: "min" or "max" per objective.
        margin: how far beyond the nadir the reference point lies, in normalized units.

    Returns:
        The scale, or None when there are no points.

    Raises:
        ValueError: a direction that is neither "min" nor "max", or a point of the wrong length.
    """
    bad = [d for d in directions if d not in ("min", "max")]
    if bad:
        raise ValueError(f"directions must be 'min' or 'max', got {bad}")
    signs = tuple(-1.0 if d == "max" else 1.0 for d in directions)
    if not points:
        return None
    if any(len(p) != len(signs) for p in points):
        raise ValueError(f"every point needs {len(signs)} values (one per objective)")
    flipped = [tuple(s * float(v) for s, v in zip(signs, p)) for p in points]
    ideal = tuple(min(col) for col in zip(*flipped))
    nadir = tuple(hi if hi - lo >= 1e-12 else lo + 1.0 for lo, hi in zip(ideal, (max(col) for col in zip(*flipped))))
    return HypervolumeScale(signs, ideal, nadir, tuple(1.0 + margin for _ in signs))


# ------------------------------------------------------- the comparison with the baselines (FL-NAS Table I)

#: Table I columns: (objective name, header, format).
TABLE_COLUMNS = (
    ("accuracy", "Test acc", "{:.4f}"),
    ("unfairness", "Unfairness", "{:.4f}"),
    ("eodd", "EODD", "{:.4f}"),
    ("eopp1", "EOPP1", "{:.4f}"),
    ("eopp2", "EOPP2", "{:.4f}"),
    ("params", "Params", "{:,.0f}"),
    ("memory", "Memory MB", "{:.2f}"),
    ("latency", "Latency s", "{:.6f}"),
)


@dataclass(frozen=True)
class TableRow:
    """One model of the comparison."""

    name: str  # "#12 (llm)" or the baseline's name
    candidate_id: int
    kind: str  # searched | baseline
    values: tuple[tuple[str, float | None], ...]  # objective -> value
    beats_all: tuple[str, ...] = ()  # objectives where this searched model beats every baseline
    status: str = "done"

    def value(self, name: str) -> float | None:
        """The value of one objective."""
        return dict(self.values).get(name)


@dataclass(frozen=True)
class ComparisonTable:
    """FL-NAS Table I for one run."""

    run_id: int
    rows: tuple[TableRow, ...]
    missing_baselines: tuple[str, ...] = ()  # not evaluated (yet, or failed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "run_id": self.run_id,
            "columns": [c[0] for c in TABLE_COLUMNS],
            "rows": [
                {"name": r.name, "candidate_id": r.candidate_id, "kind": r.kind, "status": r.status,
                 "values": dict(r.values), "beats_all_baselines": list(r.beats_all)}
                for r in self.rows
            ],
            "missing_baselines": list(self.missing_baselines),
        }

    def to_text(self) -> str:
        """A fixed-width table; ↑/↓ marks a value better than every baseline's."""
        headers = ["Model"] + [h for _, h, _ in TABLE_COLUMNS]
        lines = []
        for r in self.rows:
            cells = [r.name]
            for name, _, fmt in TABLE_COLUMNS:
                v = r.value(name)
                text = "n/a" if v is None else fmt.format(v)
                if name in r.beats_all:
                    text += " ↑" if OBJECTIVES[name][0] == "max" else " ↓"
                cells.append(text)
            lines.append(cells)
        widths = [max(len(str(x)) for x in col) for col in zip(headers, *lines)]
        out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths))]
        out.append("  ".join("-" * w for w in widths))
        for cells in lines:
            out.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)))
        out.append("↑/↓: better than every baseline (higher / lower is better).")
        if self.missing_baselines:
            out.append("Baselines not evaluated: " + ", ".join(self.missing_baselines))
        return "\n".join(out)


def _table_values(c: Candidate) -> tuple[tuple[str, float | None], ...]:
    assert c.metrics is not None
    out = []
    for name, _, _ in TABLE_COLUMNS:
        v = c.metrics.value(name)
        out.append((name, None if v is None or not math.isfinite(v) else v))
    return tuple(out)


def comparison_of(run_id: int, searched: Sequence[Candidate], baselines: Sequence[Candidate],
                  expected_baselines: Sequence[str] = ()) -> ComparisonTable:
    """Table I from the run's best ``searched`` candidates (best first) and its ``baselines``.

    Baselines without metrics are left out; ``expected_baselines`` names the run's baselines, so those
    not measured (yet, or failed) are listed as missing. An arrow marks an objective where a searched
    model beats every measured baseline.
    """
    done_bases = [b for b in baselines if b.metrics is not None]
    missing = tuple(name for name in expected_baselines if name not in {b.baseline for b in done_bases})
    rows = []
    for c in searched:
        vals = dict(_table_values(c))
        beats = []
        for name, _, _ in TABLE_COLUMNS:
            v = vals[name]
            others = [b.metrics.value(name) for b in done_bases]  # type: ignore[union-attr]
            if v is None or not done_bases or any(o is None for o in others):
                continue
            if OBJECTIVES[name][0] == "max" and all(v > o for o in others):  # type: ignore[operator]
                beats.append(name)
            if OBJECTIVES[name][0] == "min" and all(v < o for o in others):  # type: ignore[operator]
                beats.append(name)
        rows.append(TableRow(f"#{c.id} ({c.origin})", c.id, "searched", tuple(vals.items()), tuple(beats)))
    for b in done_bases:
        rows.append(TableRow(b.baseline, b.id, "baseline", _table_values(b)))
    return ComparisonTable(run_id, tuple(rows), missing)
