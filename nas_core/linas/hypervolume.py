"""Hypervolume of the measured front, comparable across engines and runs.

Owns :class:`HypervolumeTracker`: pymoo's HV indicator with a reference point, ideal and nadir
fixed once per comparison, fed one evaluation at a time so the trace has a value after every
evaluation, and :func:`non_dominated` for fronts. Points are in minimization form throughout
(multiply "max" objectives by -1 first; :meth:`nas_core.linas.space.Objectives.to_min` does it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def non_dominated(F: np.ndarray) -> np.ndarray:
    """The distinct non-dominated rows of ``F`` (minimization)."""
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    F = np.unique(np.asarray(F, dtype=float), axis=0)
    if len(F) == 0:
        return F
    front = NonDominatedSorting().do(F, only_non_dominated_front=True)
    return F[front]


class HypervolumeTracker:
    """Hypervolume after every evaluation, with fixed normalization.

    Each point is normalized as ``(f - ideal) / (nadir - ideal)`` and the hypervolume is taken
    against ``ref_point`` in that normalized space, so runs with the same three vectors compare.

    Args:
        ref_point: reference point in normalized space (e.g. ``[1.1, 1.1]``).
        ideal: per-objective best value (minimization form).
        nadir: per-objective worst value that still matters (minimization form).
    """

    def __init__(self, ref_point: Sequence[float], ideal: Sequence[float], nadir: Sequence[float]):
        from pymoo.indicators.hv import HV

        self.ref_point = np.asarray(ref_point, dtype=float)
        self.ideal = np.asarray(ideal, dtype=float)
        self.nadir = np.asarray(nadir, dtype=float)
        if not (len(self.ref_point) == len(self.ideal) == len(self.nadir)):
            raise ValueError("ref_point, ideal and nadir need one value per objective")
        span = self.nadir - self.ideal
        if np.any(span <= 0):
            raise ValueError(
                f"nadir must be worse than ideal in every objective: {self.ideal} vs {self.nadir}"
            )
        # zero_to_one: pymoo only applies ideal/nadir when asked to
        self._hv = HV(
            ref_point=self.ref_point,
            ideal=self.ideal,
            nadir=self.nadir,
            norm_ref_point=False,
            zero_to_one=True,
        )
        self._front = np.zeros((0, len(self.ideal)))
        self._value = 0.0
        self.trace: list[float] = []  # hypervolume after evaluation 1, 2, ...

    @classmethod
    def from_front(cls, front: np.ndarray, margin: float = 0.1) -> HypervolumeTracker:
        """Normalize by a known front's ideal/nadir; reference point at ``1 + margin``."""
        front = np.asarray(front, dtype=float)
        return cls([1.0 + margin] * front.shape[1], front.min(axis=0), front.max(axis=0))

    def compute(self, F: np.ndarray) -> float:
        """Hypervolume of the points ``F`` (minimization form); 0.0 for none."""
        F = np.asarray(F, dtype=float).reshape(-1, len(self.ideal))
        if len(F) == 0:
            return 0.0
        return float(self._hv(F))

    def update(self, f: Sequence[float] | None) -> float:
        """Add one evaluation (None: infeasible or failed, HV unchanged) and return the HV."""
        if f is not None:
            f = np.asarray(f, dtype=float)
            dominated = np.any(np.all(self._front <= f, axis=1))
            if not dominated:
                keep = ~np.all(f <= self._front, axis=1)
                self._front = np.vstack([self._front[keep], f])
                # a new non-dominated point never loses volume; max() drops 1-ulp recomputation noise
                self._value = max(self._value, self.compute(self._front))
        self.trace.append(self._value)
        return self._value

    @property
    def value(self) -> float:
        """Current hypervolume."""
        return self._value

    @property
    def front(self) -> np.ndarray:
        """Current non-dominated points (minimization form)."""
        return self._front.copy()

    def evaluations_to_reach(self, target: float) -> int | None:
        """The first evaluation count whose hypervolume is at least ``target`` (None: never)."""
        for i, v in enumerate(self.trace):
            if v >= target:
                return i + 1
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings (to store beside a trace)."""
        return {
            "ref_point": self.ref_point.tolist(),
            "ideal": self.ideal.tolist(),
            "nadir": self.nadir.tolist(),
        }
