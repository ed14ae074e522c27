"""Choosing the best candidate by the user's priorities, Pareto fronts and hypervolume.

Owns :class:`Priorities` (ordered objectives with tolerances, or weights) and the
functions that read measured candidates through them (FL-NAS's GetBestMetrics).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Objective:
    """One objective in the user's priorities. Names are keys of nas_core.records.OBJECTIVES."""

    name: str
    tolerance: float = 0.0  # ordered mode: values within this of the best count as ties
    weight: float = 1.0  # weighted mode: importance of this objective


def _paper_default() -> tuple[Objective, ...]:
    # FL-NAS: improve fairness without decreasing accuracy; hardware efficiency last.
    return (
        Objective("unfairness", tolerance=0.005),
        Objective("accuracy", tolerance=0.01),
        Objective("params", tolerance=0.0),
    )


@dataclass(frozen=True)
class Priorities:
    """How "best" is decided: lexicographic with tolerances ("ordered") or a weighted sum."""

    mode: str = "ordered"  # ordered | weighted
    objectives: tuple[Objective, ...] = field(default_factory=_paper_default)
