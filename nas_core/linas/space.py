"""Search-space and objective plug-ins for LINAS and the baselines.

Re-exports the plug-in base of :mod:`nas_core.searchspace` (which lies below linas and the
super-network, so neither imports the other for it) and owns the rest of what engines run on:

- :class:`Gene`: one integer gene, ``0..n-1``, ordered (``int``) or unordered (``cat``).
- :class:`SearchSpace`: a list of genes with ``encode`` / ``decode`` / canonical ``key`` /
  ``sample`` and optional exact objectives (known without training, e.g. parameters).
- :class:`ObjectiveSource`: evaluates a batch of configs to objective values (the expensive part).
- :class:`CnnSpace`: the CNN Template of :mod:`nas_core.space` as a plug-in.
- :class:`Objectives`: the objective names, their directions and the constraints of one search,
  validated before anything runs.

Decisions:
- Dedup runs on :meth:`SearchSpace.ids`, a vectorized canonical identity of gene rows; two rows
  have equal ids exactly when their configs have equal keys. Engines never compare raw genes.
- Engines work in minimization form: a "max" objective enters as its negative.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas_core import space as sp
from nas_core.errors import UserError
from nas_core.records import OBJECTIVES
from nas_core.searchspace import Gene, ObjectiveSource, SearchSpace, sample_new

__all__ = ["CnnSpace", "Constraint", "Gene", "ObjectiveSource", "Objectives", "SearchError", "SearchSpace",
           "check_algorithm", "sample_new"]

log = logging.getLogger(__name__)


class SearchError(UserError, ValueError):
    """A search was asked for something it cannot do (bad objectives, constraint, budget...)."""


@dataclass(frozen=True)
class Constraint:
    """``metric op bound`` with op ``<=`` or ``>=``; a config is feasible when it holds."""

    metric: str
    op: str
    bound: float

    def violation(self, values: np.ndarray) -> np.ndarray:
        """Amount by which ``values`` break the constraint (<= 0 means satisfied)."""
        return values - self.bound if self.op == "<=" else self.bound - values


#: Inner algorithms and the numbers of objectives each accepts.
ALGORITHMS: dict[str, tuple[int, int]] = {
    "nsga2": (2, 2),
    "agemoea": (2, 2),
    "unsga3": (2, 99),
    "moead": (2, 99),
    "ctaea": (2, 99),
}


@dataclass(frozen=True)
class Objectives:
    """The objectives of a search, their directions and the constraints, validated.

    Build with :meth:`create`; it raises :class:`SearchError` before anything runs.
    """

    names: tuple[str, ...]
    directions: tuple[str, ...]  # "max" | "min", one per name
    constraints: tuple[Constraint, ...] = ()

    @classmethod
    def create(
        cls,
        names: Sequence[str],
        directions: Mapping[str, str] | None = None,
        constraints: Sequence[tuple[str, str, float] | Constraint] = (),
        known: Sequence[str] | None = None,
        algorithm: str = "auto",
    ) -> Objectives:
        """Validate and build.

        Args:
            names: objective names, at least two.
            directions: name -> "max"/"min"; names missing here use
                :data:`nas_core.records.OBJECTIVES`.
            constraints: (metric, "<=" | ">=", bound) triples.
            known: every metric the source can measure (objectives and constraint metrics
                must be among them); None = names of ``directions`` plus OBJECTIVES.
            algorithm: inner/outer algorithm name (see :data:`ALGORITHMS`) or "auto".

        Raises:
            SearchError: naming what is wrong and what is allowed.
        """
        names = tuple(names)
        dirs = dict(directions or {})
        known_set = set(known) if known is not None else set(OBJECTIVES) | set(dirs)
        if len(names) < 2:
            raise SearchError(
                f"multi-objective search needs at least two objectives, got {list(names)}; "
                f"add one of: {', '.join(sorted(known_set - set(names)))}"
            )
        if len(set(names)) != len(names):
            raise SearchError(f"objectives repeat a name: {list(names)}; list each once")
        unknown = [n for n in names if n not in known_set]
        if unknown:
            raise SearchError(f"unknown objective(s) {unknown}; known: {', '.join(sorted(known_set))}")
        resolved = []
        for n in names:
            d = dirs.get(n) or (OBJECTIVES[n][0] if n in OBJECTIVES else None)
            if d not in ("max", "min"):
                raise SearchError(f"objective {n!r} needs a direction 'max' or 'min', got {d!r}")
            resolved.append(d)
        cons = []
        for c in constraints:
            c = c if isinstance(c, Constraint) else Constraint(str(c[0]), str(c[1]), float(c[2]))
            if c.metric not in known_set:
                raise SearchError(
                    f"constraint on unknown metric {c.metric!r}; known: {', '.join(sorted(known_set))}"
                )
            if c.op not in ("<=", ">="):
                raise SearchError(f"constraint operator must be '<=' or '>=', got {c.op!r}")
            cons.append(c)
        check_algorithm(algorithm, len(names), bool(cons))
        return cls(names=names, directions=tuple(resolved), constraints=tuple(cons))

    @property
    def metrics(self) -> tuple[str, ...]:
        """Objective names, then any constraint metric that is not an objective."""
        extra = [c.metric for c in self.constraints if c.metric not in self.names]
        return self.names + tuple(dict.fromkeys(extra))

    @property
    def signs(self) -> np.ndarray:
        """+1 for "min", -1 for "max": multiply values by this to minimize."""
        return np.array([1.0 if d == "min" else -1.0 for d in self.directions])

    def to_min(self, values: Mapping[str, np.ndarray] | np.ndarray) -> np.ndarray:
        """Objective values (dict of arrays, or an (n, m) array in name order) in minimization form."""
        if isinstance(values, Mapping):
            arr = np.column_stack([np.asarray(values[n], dtype=float) for n in self.names])
        else:
            arr = np.asarray(values, dtype=float)
        return arr * self.signs

    def violation(self, values: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """Total constraint violation per row (0 where feasible)."""
        cv = np.zeros(n)
        for c in self.constraints:
            cv += np.maximum(c.violation(np.asarray(values[c.metric], dtype=float)), 0.0)
        return cv


def check_algorithm(algorithm: str, n_obj: int, constrained: bool) -> str:
    """Resolve "auto" and check the algorithm can take ``n_obj`` objectives.

    Raises:
        SearchError: unknown algorithm, or one that cannot take that many objectives.
    """
    if algorithm == "auto":
        return "nsga2" if n_obj == 2 else "unsga3"
    if algorithm not in ALGORITHMS:
        raise SearchError(f"unknown algorithm {algorithm!r}; known: auto, {', '.join(ALGORITHMS)}")
    lo, hi = ALGORITHMS[algorithm]
    if not lo <= n_obj <= hi:
        more = "unsga3, moead or ctaea" if n_obj > hi else "at least two objectives"
        raise SearchError(f"{algorithm} cannot take {n_obj} objectives; use {more}")
    if algorithm == "agemoea":
        import importlib.util

        if importlib.util.find_spec("numba") is None:  # pymoo's AGE-MOEA refuses to load without it
            raise SearchError("agemoea needs the numba package, which is not installed; use nsga2")
    if algorithm == "moead" and constrained:
        raise SearchError("moead does not support constraints; use ctaea or unsga3")
    return algorithm


class CnnSpace(SearchSpace):
    """The CNN Template (:mod:`nas_core.space`) as a search-space plug-in.

    Genes are :func:`nas_core.space.encode` of a spec: a depth gene, the stem, ``max_blocks``
    block slots and the head. Parameters and MACs are computed exactly by building the model
    (``nas_core.models``), cached by key; that is too slow for every inner-search visit, so
    the inner search predicts them and the final picks are re-ranked on exact values.

    Args:
        choices: the run's Choices.
        input_shape: (channels, height, width) of the training images.
        n_classes: number of classes.
    """

    exact_is_cheap = False

    def __init__(self, choices: Any, input_shape: tuple[int, int, int], n_classes: int):
        self._sp = sp
        self.choices = choices
        self.input_shape = tuple(input_shape)
        self.n_classes = int(n_classes)
        kinds = {"type": "cat", "norm": "cat", "act": "cat", "se": "cat", "pool": "cat"}
        genes = [Gene("depth", choices.max_blocks - choices.min_blocks + 1)]
        genes += [Gene(f"stem.{f}", len(choices.allowed("stem", f))) for f in sp.STEM_FIELDS]
        for i in range(choices.max_blocks):
            genes += [
                Gene(f"blocks[{i}].{f}", len(choices.allowed("block", f)), kinds.get(f, "int"))
                for f in sp.BLOCK_FIELDS
            ]
        genes += [Gene(f"head.{f}", len(choices.allowed("head", f))) for f in sp.HEAD_FIELDS]
        self.genes = tuple(genes)
        self._nb = len(sp.BLOCK_FIELDS)
        self._b0 = 1 + len(sp.STEM_FIELDS)
        self._mb = "mbconv" in choices.type and choices.type.index("mbconv")
        self._has_mb = "mbconv" in choices.type
        self._exact_cache: dict[str, tuple[float, float]] = {}
        self.exact_names = self._probe_models()

    def _probe_models(self) -> tuple[str, ...]:
        # find_spec, not import: importing the model builder pulls in torch (seconds), which is
        # only worth paying when params/MACs are actually objectives
        import importlib.util

        if importlib.util.find_spec("nas_core.models") is None:
            log.info("nas_core.models not available: params/MACs are predicted, not exact")
            return ()
        return ("params", "macs")

    def cap_errors(self, spec: Any) -> list[str]:
        """Why ``spec``'s network breaks the Choices' parameter/MAC caps (empty: fits, or no builder)."""
        if not self.exact_names or (self.choices.max_params is None and self.choices.max_macs is None):
            return []
        from nas_core.models import check_budget

        return check_budget(spec, self.choices, self.input_shape, self.n_classes)

    def encode(self, config: Any) -> np.ndarray:
        """Genes of an ArchSpec (raises SpecError if it breaks the Choices)."""
        return np.array(self._sp.encode(config, self.choices), dtype=np.int64)

    def decode(self, x: Sequence[int]) -> Any:
        """The ArchSpec of a gene row."""
        return self._sp.decode([int(v) for v in x], self.choices)

    def key(self, config: Any) -> str:
        """The spec's canonical key (:func:`nas_core.space.canonical_key`)."""
        return config.key

    def canonical(self, X: np.ndarray) -> np.ndarray:
        """Zero the block slots past the depth and ``expand`` of non-mbconv blocks."""
        X = np.array(X, dtype=np.int64, copy=True)
        depth = self.choices.min_blocks + X[:, 0]
        expand_col = self._sp.BLOCK_FIELDS.index("expand")
        for i in range(self.choices.max_blocks):
            s = self._b0 + i * self._nb
            X[depth <= i, s : s + self._nb] = 0
            not_mb = X[:, s] != self._mb if self._has_mb else np.ones(len(X), dtype=bool)
            X[not_mb, s + expand_col] = 0
        return X

    def active(self, X: np.ndarray) -> np.ndarray:
        """(n, n_var) mask of genes that mean something: block slots within the depth, and
        ``expand`` only in mbconv blocks (what :meth:`canonical` zeroes is inactive)."""
        X = np.asarray(X, dtype=np.int64)
        act = np.ones(X.shape, dtype=bool)
        depth = self.choices.min_blocks + X[:, 0]
        expand_col = self._sp.BLOCK_FIELDS.index("expand")
        for i in range(self.choices.max_blocks):
            s = self._b0 + i * self._nb
            act[:, s : s + self._nb] &= (depth > i)[:, None]
            is_mb = X[:, s] == self._mb if self._has_mb else np.zeros(len(X), dtype=bool)
            act[:, s + expand_col] &= is_mb
        return act

    def ids(self, X: np.ndarray) -> np.ndarray:
        """Canonical rows as bytes: a canonical row determines the normalized spec and its key."""
        C = np.ascontiguousarray(self.canonical(X))
        return np.array([r.tobytes() for r in C], dtype=object)

    def is_valid(self, X: np.ndarray) -> np.ndarray:
        """Rows whose feature map never has to shrink below 1x1 (validate's input-size rule)."""
        X = np.asarray(X, dtype=np.int64)
        ch = self.choices
        size = np.full(len(X), int(self.input_shape[1]))
        stem_stride = np.array(ch.stem_stride)[X[:, 3]]
        size = -(-size // stem_stride)
        ok = np.ones(len(X), dtype=bool)
        depth = ch.min_blocks + X[:, 0]
        fields = self._sp.BLOCK_FIELDS
        stride = np.array(ch.stride)
        pool_none = np.array([p == "none" for p in ch.pool])
        for i in range(ch.max_blocks):
            s = self._b0 + i * self._nb
            active = depth > i
            st = stride[X[:, s + fields.index("stride")]]
            pooled = ~pool_none[X[:, s + fields.index("pool")]]
            ok &= ~(active & (size <= 1) & ((st > 1) | pooled))
            size = np.where(active, -(-size // st), size)
            size = np.where(active & pooled, -(-size // 2), size)
        return ok

    def exact_objectives(self, configs: Sequence[Any]) -> dict[str, np.ndarray]:
        """Exact parameters and MACs (``nas_core.models.spec_costs``: arithmetic, no model built)."""
        if not self.exact_names:
            return {}
        from nas_core.models import spec_costs

        params, macs = [], []
        for spec in configs:
            k = spec.key
            if k not in self._exact_cache:
                p, m = spec_costs(spec, self.input_shape, self.n_classes)
                self._exact_cache[k] = (float(p), float(m))
            p, m = self._exact_cache[k]
            params.append(p)
            macs.append(m)
        return {"params": np.array(params), "macs": np.array(macs)}
