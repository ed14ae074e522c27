"""A small synthetic space and objective source for LINAS tests (no training, no tables)."""

import numpy as np

from nas_core.linas import Gene, SearchSpace


class GridSpace(SearchSpace):
    """Three ordered genes and one categorical gene; gene 3 is inactive when gene 0 is 0."""

    genes = (Gene("a", 6), Gene("b", 6), Gene("c", 4), Gene("d", 3, "cat"))
    exact_names = ("cost",)
    exact_is_cheap = True

    def encode(self, config):
        return self.canonical(np.array([config], dtype=np.int64))[0]

    def decode(self, x):
        return tuple(int(v) for v in self.canonical(np.array([x]))[0])

    def key(self, config):
        return "-".join(map(str, self.encode(config)))

    def canonical(self, X):
        X = np.array(X, dtype=np.int64, copy=True)
        X[X[:, 0] == 0, 3] = 0  # gene d means nothing when a == 0
        return X

    def exact_array(self, X):
        X = np.asarray(X, dtype=float)
        return {"cost": X[:, 0] * 2 + X[:, 1] + 0.5 * X[:, 2]}

    def exact_objectives(self, configs):
        return self.exact_array(np.array(configs))


class GridSource:
    """error falls with a and b but saturates; cost grows with them: a real trade-off."""

    def __init__(self):
        self.calls = 0
        self.evaluated = []

    def evaluate(self, configs):
        self.calls += 1
        self.evaluated.extend(configs)
        out = []
        for a, b, c, d in configs:
            err = 1.0 / (1.0 + a + 0.7 * b + 0.3 * c) + 0.05 * (d == 2)
            out.append({"error": err, "cost": a * 2 + b + 0.5 * c, "latency": 0.1 * (a + b) + 0.01 * d})
        return out


DIRS = {"error": "min", "cost": "min", "latency": "min"}


class GridProblem(GridSpace):
    """GridSpace that evaluates itself: a benchmark plug-in for ``--space tests.linas.synthetic:GridProblem``."""

    metrics = {"error": "min", "latency": "min", "cost": "min"}

    def __init__(self, scale: str = "1"):
        self.scale = float(scale)
        self._source = GridSource()

    def evaluate(self, configs):
        return [{k: v * self.scale for k, v in r.items()} for r in self._source.evaluate(configs)]
