"""The search-space plug-in base shared by every engine: genes, spaces and objective sources.

Below both :mod:`nas_core.linas` (the engines) and :mod:`nas_core.supernet` (the super-network's
sub-network space), so neither imports the other for it; :mod:`nas_core.linas` and
:mod:`nas_core.linas.space` re-export every name here (the public plug-in API).

- :class:`Gene`: one integer gene, ``0..n-1``, ordered (``int``) or unordered (``cat``).
- :class:`SearchSpace`: a list of genes with ``encode`` / ``decode`` / canonical ``key`` /
  ``sample`` and optional exact objectives (known without training, e.g. parameters).
- :func:`sample_new`: distinct valid random gene rows not yet seen.
- :class:`ObjectiveSource`: evaluates a batch of configs to objective values (the expensive part).

Decision: dedup runs on :meth:`SearchSpace.ids`, a vectorized canonical identity of gene rows; two rows
have equal ids exactly when their configs have equal keys. Engines never compare raw genes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Gene", "ObjectiveSource", "SearchSpace", "sample_new"]


@dataclass(frozen=True)
class Gene:
    """One integer gene taking values ``0..n-1``."""

    name: str
    n: int  # number of values
    kind: str = "int"  # int: ordered values (e.g. widths); cat: unordered labels (e.g. block type)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"gene {self.name!r} needs at least one value, got n={self.n}")
        if self.kind not in ("int", "cat"):
            raise ValueError(f"gene {self.name!r}: kind must be 'int' or 'cat', got {self.kind!r}")


class SearchSpace:
    """Base class of a search space: a fixed list of integer genes.

    Subclasses set :attr:`genes` and implement :meth:`encode`, :meth:`decode` and :meth:`key`.
    Everything else has a generic default that vectorized subclasses may override.

    Attributes:
        genes: the genes, in encoding order.
        exact_names: objective names :meth:`exact_objectives` computes without training.
        exact_is_cheap: True when :meth:`exact_array` is fast enough for 20,000 configs per
            inner search; otherwise exact values are computed only for the final picks.
    """

    genes: tuple[Gene, ...] = ()
    exact_names: tuple[str, ...] = ()
    exact_is_cheap: bool = False

    # --- required -----------------------------------------------------------------------
    def encode(self, config: Any) -> np.ndarray:
        """Integer genes of ``config`` (canonical: inactive genes zeroed)."""
        raise NotImplementedError

    def decode(self, x: Sequence[int]) -> Any:
        """The config of a gene row (inverse of :meth:`encode` on canonical rows)."""
        raise NotImplementedError

    def key(self, config: Any) -> str:
        """Canonical key: equal for configs that are the same network."""
        raise NotImplementedError

    # --- defaults ---------------------------------------------------------------------
    @property
    def n_var(self) -> int:
        """Number of genes."""
        return len(self.genes)

    @property
    def upper(self) -> np.ndarray:
        """Inclusive upper bound of every gene."""
        return np.array([g.n - 1 for g in self.genes], dtype=np.int64)

    def canonical(self, X: np.ndarray) -> np.ndarray:
        """Rows with inactive genes reset, so equal networks have equal rows where possible."""
        return np.asarray(X, dtype=np.int64)

    def is_valid(self, X: np.ndarray) -> np.ndarray:
        """Boolean mask of rows that are buildable configs (default: all)."""
        return np.ones(len(X), dtype=bool)

    def ids(self, X: np.ndarray) -> np.ndarray:
        """Canonical identity of every row (equal ids exactly when keys are equal)."""
        return np.array([self.key(self.decode(x)) for x in np.asarray(X)], dtype=object)

    def random_genes(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` uniformly random (canonicalized) gene rows; may contain invalid rows."""
        return self.canonical(rng.integers(0, self.upper + 1, size=(n, self.n_var)))

    def sample(self, rng: np.random.Generator, n: int) -> list[Any]:
        """Up to ``n`` distinct valid random configs (fewer only if the space is that small)."""
        X = sample_new(self, rng, n, exclude=frozenset())
        return [self.decode(x) for x in X]

    def exact_objectives(self, configs: Sequence[Any]) -> dict[str, np.ndarray]:
        """Objectives known without training, one array per name in :attr:`exact_names`."""
        return {}

    def exact_array(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """:meth:`exact_objectives` for gene rows."""
        if not self.exact_names:
            return {}
        return self.exact_objectives([self.decode(x) for x in np.asarray(X)])

    def features(self, X: np.ndarray) -> np.ndarray:
        """Predictor features: ordered genes scaled to [0, 1], unordered genes one-hot."""
        X = np.asarray(X, dtype=np.int64)
        cols = []
        for j, g in enumerate(self.genes):
            if g.n <= 1:
                continue
            if g.kind == "cat" and g.n > 2:
                cols.append((X[:, j : j + 1] == np.arange(g.n)[None, :]).astype(np.float64))
            else:
                cols.append((X[:, j : j + 1] / (g.n - 1)).astype(np.float64))
        return np.hstack(cols) if cols else np.zeros((len(X), 0))


def sample_new(
    space: SearchSpace, rng: np.random.Generator, n: int, exclude: frozenset, max_rounds: int = 50
) -> np.ndarray:
    """Up to ``n`` valid random gene rows whose ids are neither in ``exclude`` nor repeated.

    Rejection sampling in vectorized rounds; returns fewer rows only when ``max_rounds``
    rounds found nothing new (the space is exhausted, or nearly).
    """
    out: list[np.ndarray] = []
    seen = set(exclude)
    empty_rounds = 0
    while len(out) < n and empty_rounds < max_rounds:
        X = space.random_genes(rng, max(4 * (n - len(out)), 16))
        X = X[space.is_valid(X)]
        found = 0
        for x, i in zip(X, space.ids(X)):
            if i in seen:
                continue
            seen.add(i)
            out.append(x)
            found += 1
            if len(out) == n:
                break
        empty_rounds = 0 if found else empty_rounds + 1
    return np.array(out, dtype=np.int64).reshape(len(out), space.n_var)


@runtime_checkable
class ObjectiveSource(Protocol):
    """Evaluates configs: the expensive measurement (training, or a table look-up)."""

    def evaluate(self, configs: Sequence[Any]) -> list[dict[str, float]]:
        """One ``{objective name: value}`` dict per config, in order."""
        ...
