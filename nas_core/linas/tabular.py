"""NAS-Bench-Graph as a tabular search space and objective source, for the search-efficiency benchmark.

Owns :class:`TabularBenchmark`: the 26,206 distinct GNN architectures of one NAS-Bench-Graph
data set (PyPI ``nas-bench-graph==1.4.0``, a dev dependency) with their measured accuracy,
latency and parameter count, and the true Pareto front of the full table.

What the package needs: nothing but numpy and pickle. Its wheel ships the "light" tables
(one 2 MB pickle per data set, a dict from the architecture hash to ``valid_perf``, ``perf``,
``latency`` and ``para``), so nothing is downloaded at run time and no graph library is needed.

Genes: the link pattern (one of 9) and the operation of each of the 4 nodes (one of 9), all
unordered. Many gene rows are the same network (isomorphic DAGs, skip placement);
NAS-Bench-Graph's own ``Arch.valid_hash`` canonicalizes them, so the key is that hash. All
9 * 9**4 rows are hashed once into a look-up table (about 0.3 s) so ids are vectorized; the
9 rows whose hash has no table entry are invalid.

Objectives: ``accuracy`` (test accuracy, ``perf``), ``val_accuracy`` (``valid_perf``),
``latency`` (seconds) and ``params`` (millions). Parameters follow from the architecture without
training, so they are exact objectives; latency is measured in the table and is treated as an
expensive objective (predicted by LINAS), which keeps the comparison with NSGA-II honest.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nas_core.linas.hypervolume import non_dominated
from nas_core.linas.space import Gene, SearchError, SearchSpace

DATASETS = ("cora", "citeseer", "pubmed", "arxiv", "computers", "cs", "photo", "physics")
METRICS = {"accuracy": "max", "val_accuracy": "max", "latency": "min", "params": "min"}
_FIELDS = {"accuracy": "perf", "val_accuracy": "valid_perf", "latency": "latency", "params": "para"}


@dataclass(frozen=True)
class GraphArch:
    """One NAS-Bench-Graph architecture: the link pattern and the four node operations."""

    link: tuple[int, int, int, int]
    ops: tuple[str, str, str, str]


def _package():
    try:
        import nas_bench_graph
    except ImportError as exc:  # a user running the benchmark without dev requirements
        raise SearchError(
            "the NAS-Bench-Graph tables are not installed; run "
            "`.venv/bin/pip install -r requirements-dev.txt` (nas-bench-graph==1.4.0)"
        ) from exc
    return nas_bench_graph


@functools.lru_cache(maxsize=1)
def _hash_table() -> np.ndarray:
    """valid_hash of every gene row (link index, 4 op indices), by mixed-radix index."""
    nbg = _package()
    links, ops = nbg.link_list, nbg.gnn_list
    out = np.empty(len(links) * len(ops) ** 4, dtype=np.int64)
    i = 0
    for lk in range(len(links)):
        for o in itertools.product(range(len(ops)), repeat=4):
            out[i] = nbg.Arch(list(links[lk]), [ops[j] for j in o]).valid_hash()
            i += 1
    return out


@functools.lru_cache(maxsize=16)
def _table(dataset: str) -> dict[str, np.ndarray]:
    nbg = _package()
    bench = nbg.light_read(dataset)
    hashes = np.array(sorted(bench), dtype=np.int64)
    cols = {"hash": hashes}
    for name, field in _FIELDS.items():
        cols[name] = np.array([float(bench[h][field]) for h in hashes])
    return cols


class TabularBenchmark(SearchSpace):
    """A NAS-Bench-Graph data set as both a :class:`SearchSpace` and an ObjectiveSource.

    Args:
        dataset: one of :data:`DATASETS` (cora, citeseer, pubmed, ...).

    Raises:
        SearchError: unknown data set, or the package is not installed.
    """

    exact_names = ("params",)
    exact_is_cheap = True

    def __init__(self, dataset: str = "cora"):
        if dataset not in DATASETS:
            raise SearchError(f"unknown NAS-Bench-Graph data set {dataset!r}; known: {', '.join(DATASETS)}")
        nbg = _package()
        self.dataset = dataset
        self._links = [tuple(lk) for lk in nbg.link_list]
        self._ops = list(nbg.gnn_list)
        self.genes = (Gene("link", len(self._links), "cat"),) + tuple(
            Gene(f"op{i}", len(self._ops), "cat") for i in range(4)
        )
        self._radix = np.array(
            [len(self._ops) ** 4, len(self._ops) ** 3, len(self._ops) ** 2, len(self._ops), 1]
        )
        cols = _table(dataset)
        self._cols = cols
        hashes = _hash_table()
        # row position of every hash in the table; -1 where the table has no entry
        pos = np.searchsorted(cols["hash"], hashes)
        pos = np.clip(pos, 0, len(cols["hash"]) - 1)
        self._row_of = np.where(cols["hash"][pos] == hashes, pos, -1)
        self._hash_of = hashes

    @property
    def size(self) -> int:
        """Number of distinct architectures in the table."""
        return len(self._cols["hash"])

    def _index(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.int64) @ self._radix

    def encode(self, config: GraphArch) -> np.ndarray:
        """Genes of an architecture."""
        return np.array([self._links.index(tuple(config.link))] + [self._ops.index(o) for o in config.ops])

    def decode(self, x: Sequence[int]) -> GraphArch:
        """The architecture of a gene row."""
        x = [int(v) for v in x]
        return GraphArch(link=self._links[x[0]], ops=tuple(self._ops[v] for v in x[1:5]))

    def key(self, config: GraphArch) -> str:
        """NAS-Bench-Graph's canonical hash (isomorphic architectures share it)."""
        return str(int(self._hash_of[self._index(self.encode(config)[None, :])[0]]))

    def ids(self, X: np.ndarray) -> np.ndarray:
        """Canonical hashes, vectorized."""
        return self._hash_of[self._index(X)]

    def is_valid(self, X: np.ndarray) -> np.ndarray:
        """Rows whose architecture is in the table."""
        return self._row_of[self._index(X)] >= 0

    def values(self, X: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Table values of ``names`` for gene rows (all rows must be valid)."""
        rows = self._row_of[self._index(X)]
        if np.any(rows < 0):
            raise SearchError("an architecture outside NAS-Bench-Graph was evaluated")
        return {n: self._cols[n][rows] for n in names}

    def exact_array(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Parameter counts (millions); 0 for invalid rows, which the search marks infeasible."""
        rows = self._row_of[self._index(X)]
        return {"params": np.where(rows >= 0, self._cols["params"][np.maximum(rows, 0)], 0.0)}

    def exact_objectives(self, configs: Sequence[GraphArch]) -> dict[str, np.ndarray]:
        """Parameter counts of ``configs``."""
        return self.exact_array(np.array([self.encode(c) for c in configs]).reshape(-1, 5))

    def evaluate(self, configs: Sequence[GraphArch]) -> list[dict[str, float]]:
        """Look up every metric of ``configs`` (the 'expensive' measurement)."""
        X = np.array([self.encode(c) for c in configs]).reshape(-1, 5)
        vals = self.values(X, list(METRICS))
        return [{n: float(vals[n][i]) for n in METRICS} for i in range(len(X))]

    def all_values(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Every metric over the whole table (one entry per distinct architecture)."""
        return {n: self._cols[n] for n in names}

    def true_front(self, names: Sequence[str]) -> np.ndarray:
        """The non-dominated points of the full table, minimization form, in ``names`` order."""
        signs = np.array([1.0 if METRICS[n] == "min" else -1.0 for n in names])
        F = np.column_stack([self._cols[n] for n in names]) * signs
        return non_dominated(F)
