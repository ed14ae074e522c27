"""A MobileNetV3-style search space with a seeded accuracy surrogate and a latency look-up table.

Owns :class:`MobileNetV3Space` (registered as ``mbv3`` for ``bench-search --space mbv3:SEED``):
the large-space benchmark of issue 12, written only against the public plug-in API
(:class:`~nas_core.linas.space.SearchSpace` + an ``evaluate`` method), so it is also a worked
example of a space with inactive genes.

Genes (46, all ordered): the input resolution (128..224 in steps of 16), five stage depths
(2, 3 or 4 layers) and, for each of the 20 layer slots, a kernel size (3, 5, 7) and an expand
ratio (3, 4, 6). Layers past a stage's depth are inactive: :meth:`canonical` zeroes their genes
and :meth:`active` says which genes mean something. Distinct networks:
``7 * (3**4 + 3**6 + 3**8) ** 5`` (about 1.5e20).

Objectives (both "measured", i.e. predicted by LINAS):

- ``accuracy`` (max): a deterministic surrogate drawn from ``seed``. Each active layer adds a
  capacity that grows with its expand ratio and kernel (per-layer random weights); a stage's
  capacity saturates (``log1p``), so depth and width interact; stage values scale with the
  resolution by a per-stage power (width x resolution); a receptive-field term penalizes
  shallow, small-kernel networks at high resolution (depth x kernel x resolution); a small fixed
  random MLP on the features adds rugged, non-additive structure. Squashed to about 0.55-0.80.
- ``latency`` (min, milliseconds): a per-layer look-up table indexed by (layer slot, resolution,
  kernel, expand); every entry follows from the layer's input size (resolution / strides so far),
  channels, MACs and memory traffic, with a seeded jitter per entry as a measured table would
  have. Latency = stem + head (by resolution) + the active layers' entries.

Reference front: :meth:`reference_front` runs several long vectorized NSGA-II searches on the
surrogate itself (cheap: no predictors) and keeps the non-dominated union, cached on disk under
``$NAS_CORE_CACHE`` (default ``~/.cache/nas_core``) per seed and objective pair.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nas_core.linas.fastmoo import nsga2_search
from nas_core.linas.hypervolume import non_dominated
from nas_core.linas.space import Gene, SearchError, SearchSpace

log = logging.getLogger(__name__)

RESOLUTIONS = (128, 144, 160, 176, 192, 208, 224)
DEPTHS = (2, 3, 4)
KERNELS = (3, 5, 7)
EXPANDS = (3, 4, 6)
N_STAGES = 5
MAX_DEPTH = 4
WIDTHS = (24, 40, 80, 112, 160)  # output channels per stage (MobileNetV3-Large / OFA)
STRIDES = (2, 2, 2, 1, 2)  # stride of each stage's first layer
STEM_CHANNELS = 16
STEM_STRIDE = 2
METRICS = {"accuracy": "max", "latency": "min"}
_CACHE_VERSION = 1  # bump when the surrogate or the reference search changes


@dataclass(frozen=True)
class MbV3Config:
    """One network: resolution, and per stage the kernel and expand of each active layer."""

    resolution: int
    kernels: tuple[tuple[int, ...], ...]  # per stage, one per active layer
    expands: tuple[tuple[int, ...], ...]

    @property
    def depths(self) -> tuple[int, ...]:
        """Layers per stage."""
        return tuple(len(k) for k in self.kernels)


class MobileNetV3Space(SearchSpace):
    """MobileNetV3-style space and objective source (accuracy surrogate + latency table).

    Args:
        seed: draws the surrogate's weights and the table's jitter; different seeds are
            different benchmark instances of the same space.
    """

    choice_noise = 0.3  # spread of the per-layer choice gains (0: width and kernel always pay)
    mlp_amp = 0.3  # weight of the random MLP term

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        genes = [Gene("resolution", len(RESOLUTIONS))]
        genes += [Gene(f"stage{s}.depth", len(DEPTHS)) for s in range(N_STAGES)]
        for s in range(N_STAGES):
            for i in range(MAX_DEPTH):
                genes += [Gene(f"stage{s}.layer{i}.kernel", 3), Gene(f"stage{s}.layer{i}.expand", 3)]
        self.genes = tuple(genes)
        self._layer0 = 1 + N_STAGES  # first layer gene
        n_layers = N_STAGES * MAX_DEPTH
        self._stage_of = np.repeat(np.arange(N_STAGES), MAX_DEPTH)  # per layer slot
        self._pos_of = np.tile(np.arange(MAX_DEPTH), N_STAGES)
        self._kcol = self._layer0 + 2 * np.arange(n_layers)
        self._ecol = self._kcol + 1
        rng = np.random.default_rng([12, self.seed])
        self._init_accuracy(rng)
        self._init_latency(rng)

    # --- plug-in API -------------------------------------------------------------------
    def encode(self, config: MbV3Config) -> np.ndarray:
        """Canonical genes of a config (inactive layer genes 0).

        Raises:
            SearchError: a value that is not one of the space's choices.
        """
        try:
            x = np.zeros(self.n_var, dtype=np.int64)
            x[0] = RESOLUTIONS.index(config.resolution)
            if len(config.kernels) != N_STAGES or len(config.expands) != N_STAGES:
                raise ValueError("five stages")
            for s, (ks, es) in enumerate(zip(config.kernels, config.expands)):
                if len(ks) != len(es):
                    raise ValueError("kernels and expands differ in length")
                x[1 + s] = DEPTHS.index(len(ks))
                for i, (k, e) in enumerate(zip(ks, es)):
                    x[self._kcol[s * MAX_DEPTH + i]] = KERNELS.index(k)
                    x[self._ecol[s * MAX_DEPTH + i]] = EXPANDS.index(e)
        except ValueError as exc:
            raise SearchError(
                f"not a MobileNetV3-space config ({exc}): resolution in {RESOLUTIONS}, five stages of "
                f"{DEPTHS} layers, kernels in {KERNELS}, expands in {EXPANDS}"
            ) from exc
        return x

    def decode(self, x: Sequence[int]) -> MbV3Config:
        """The config of a gene row (inactive genes ignored)."""
        x = np.asarray(x, dtype=np.int64)
        ks, es = [], []
        for s in range(N_STAGES):
            d = DEPTHS[int(x[1 + s])]
            slots = range(s * MAX_DEPTH, s * MAX_DEPTH + d)
            ks.append(tuple(KERNELS[int(x[self._kcol[j]])] for j in slots))
            es.append(tuple(EXPANDS[int(x[self._ecol[j]])] for j in slots))
        return MbV3Config(RESOLUTIONS[int(x[0])], tuple(ks), tuple(es))

    def key(self, config: MbV3Config) -> str:
        """Readable canonical key, e.g. ``r192|k35/e46|...`` (one group per stage)."""
        parts = [f"r{config.resolution}"]
        for ks, es in zip(config.kernels, config.expands):
            parts.append("k" + "".join(map(str, ks)) + "/e" + "".join(map(str, es)))
        return "|".join(parts)

    def layer_active(self, X: np.ndarray) -> np.ndarray:
        """(n, 20) mask of active layer slots."""
        X = np.asarray(X, dtype=np.int64)
        depth = np.asarray(DEPTHS)[X[:, 1 : 1 + N_STAGES]]  # (n, 5)
        return self._pos_of[None, :] < depth[:, self._stage_of]

    def active(self, X: np.ndarray) -> np.ndarray:
        """(n, n_var) mask of genes that mean something in each row."""
        X = np.asarray(X, dtype=np.int64)
        act = np.ones(X.shape, dtype=bool)
        la = self.layer_active(X)
        act[:, self._kcol] = la
        act[:, self._ecol] = la
        return act

    def canonical(self, X: np.ndarray) -> np.ndarray:
        """Rows with the genes of inactive layers zeroed."""
        X = np.array(X, dtype=np.int64, copy=True).reshape(-1, self.n_var)
        return np.where(self.active(X), X, 0)

    def ids(self, X: np.ndarray) -> np.ndarray:
        """Canonical rows as fixed-length byte strings (vectorized; +1 so no byte is NUL)."""
        C = np.ascontiguousarray(self.canonical(X).astype(np.uint8) + 1)
        return C.view(f"S{self.n_var}").ravel()

    # --- objectives --------------------------------------------------------------------
    def evaluate(self, configs: Sequence[MbV3Config]) -> list[dict[str, float]]:
        """Accuracy and latency of every config (the 'measurement')."""
        X = np.array([self.encode(c) for c in configs], dtype=np.int64).reshape(-1, self.n_var)
        vals = self.values(X)
        return [{n: float(vals[n][i]) for n in METRICS} for i in range(len(X))]

    def values(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Vectorized objectives of gene rows."""
        X = self.canonical(X)
        return {"accuracy": self._accuracy(X), "latency": self._latency(X)}

    def _init_accuracy(self, rng: np.random.Generator) -> None:
        n_layers = N_STAGES * MAX_DEPTH
        # layer capacity: base (later positions in a stage matter less) x expand power x kernel gain
        self._alpha = rng.lognormal(0.0, 0.35, n_layers) * (0.8 ** self._pos_of)
        self._p = rng.uniform(0.6, 1.4, N_STAGES)[self._stage_of]  # how much width pays per stage
        self._kgain = rng.uniform(0.05, 0.5, n_layers)  # gain of a 7x7 over a 3x3
        # per layer and (kernel, expand): how well that choice pays off there (not monotone, so
        # every layer's genes must be set right, as in real spaces)
        self._choice_gain = rng.lognormal(0.0, self.choice_noise, (n_layers, len(KERNELS), len(EXPANDS)))
        self._tau = rng.uniform(0.8, 1.6, N_STAGES)  # saturation of a stage's capacity
        self._beta = rng.dirichlet(np.full(N_STAGES, 4.0)) * N_STAGES
        self._gamma = rng.uniform(0.2, 0.9, N_STAGES)  # resolution sensitivity per stage
        self._rf_need = rng.uniform(0.9, 1.4)  # receptive field wanted, in units of the resolution
        self._rf_weight = rng.uniform(0.6, 1.2)
        h = 16
        self._W1 = rng.normal(0, 1.0, (self.n_var + n_layers, h)) / np.sqrt(self.n_var / 2)
        self._b1 = rng.normal(0, 0.5, h)
        self._w2 = rng.normal(0, 1.0, h) / np.sqrt(h)
        self._center, self._scale = 0.0, 1.0
        Z = self._raw_score(self.canonical(rng.integers(0, self.upper + 1, size=(4096, self.n_var))))
        self._center = float(np.mean(Z))
        self._scale = float(np.std(Z)) or 1.0

    def _raw_score(self, X: np.ndarray) -> np.ndarray:
        la = self.layer_active(X)
        res = np.asarray(RESOLUTIONS, dtype=float)[X[:, 0]]
        k = np.asarray(KERNELS, dtype=float)[X[:, self._kcol]]
        e = np.asarray(EXPANDS, dtype=float)[X[:, self._ecol]]
        gain = self._choice_gain[np.arange(la.shape[1])[None, :], X[:, self._kcol], X[:, self._ecol]]
        u = self._alpha * (e / 6.0) ** self._p * (1.0 + self._kgain * (k - 3.0) / 4.0) * gain * la
        C = np.zeros((len(X), N_STAGES))
        np.add.at(C.T, self._stage_of, u.T)  # stage capacities
        rho = res / 224.0
        S = (self._beta * np.log1p(C / self._tau) * rho[:, None] ** self._gamma[None, :]).sum(axis=1)
        # receptive field: each active layer widens it by (k - 1) x the stride product so far
        stride_before = np.cumprod([STEM_STRIDE, *STRIDES])[self._stage_of] // 1.0
        rf = 1.0 + ((k - 1.0) * stride_before * la).sum(axis=1)
        S -= self._rf_weight * np.maximum(0.0, 1.0 - rf / (self._rf_need * res)) ** 2
        f = np.hstack([X / np.maximum(self.upper, 1), la.astype(float)])
        S += self.mlp_amp * np.tanh(f @ self._W1 + self._b1) @ self._w2
        return S

    def _accuracy(self, X: np.ndarray) -> np.ndarray:
        z = (self._raw_score(X) - self._center) / self._scale
        # nearly linear in the score: the best networks are rare tail events, not a flat plateau
        return 0.68 + 0.16 * np.tanh(z / 5.0)

    def _init_latency(self, rng: np.random.Generator) -> None:
        n_layers = N_STAGES * MAX_DEPTH
        res = np.asarray(RESOLUTIONS, dtype=float)
        lut = np.zeros((n_layers, len(RESOLUTIONS), len(KERNELS), len(EXPANDS)))
        k = np.asarray(KERNELS, dtype=float)[:, None]
        e = np.asarray(EXPANDS, dtype=float)[None, :]
        dw_cost = np.array([1.0, 1.2, 1.5])[:, None]  # larger depthwise kernels run less efficiently
        for j in range(n_layers):
            s, i = int(self._stage_of[j]), int(self._pos_of[j])
            stride = STRIDES[s] if i == 0 else 1
            c_in = (STEM_CHANNELS if s == 0 else WIDTHS[s - 1]) if i == 0 else WIDTHS[s]
            c_out = WIDTHS[s]
            down = STEM_STRIDE * int(np.prod(STRIDES[:s]))  # stride before this stage
            for r, R in enumerate(res):
                h_in = np.ceil(R / down)
                h_out = np.ceil(h_in / stride)
                mid = c_in * e
                macs = h_in**2 * c_in * mid + h_out**2 * mid * k**2 * dw_cost + h_out**2 * mid * c_out
                mem = h_in**2 * (c_in + mid) + h_out**2 * (mid + c_out)
                lut[j, r] = 1e-3 * (macs / 2.0e4 + mem / 4.0e3) + 0.012
        self._lut = lut * rng.lognormal(0.0, 0.06, lut.shape)
        self._stem = 1e-3 * (res / 2) ** 2 * 3 * STEM_CHANNELS * 9 / 2.0e4 + 0.02
        self._head = 1e-3 * (res / 64) ** 2 * 960 * 160 / 2.0e4 + 0.3

    def _latency(self, X: np.ndarray) -> np.ndarray:
        la = self.layer_active(X)
        r = X[:, 0]
        slots = np.arange(N_STAGES * MAX_DEPTH)[None, :]
        per = self._lut[slots, r[:, None], X[:, self._kcol], X[:, self._ecol]]
        return self._stem[r] + self._head[r] + (per * la).sum(axis=1)

    # --- reference front ---------------------------------------------------------------
    def reference_front(self, names: Sequence[str] = ("accuracy", "latency")) -> np.ndarray:
        """Non-dominated union of long NSGA-II runs on the true objectives (minimization form).

        Cached on disk per seed; computing it takes about 20 CPU seconds.
        """
        names = tuple(names)
        bad = [n for n in names if n not in METRICS]
        if bad:
            raise SearchError(f"unknown objective(s) {bad} of the mbv3 space; known: {', '.join(METRICS)}")
        path = _cache_dir() / f"mbv3_v{_CACHE_VERSION}_seed{self.seed}_{self.fingerprint()}_{'_'.join(names)}.npy"
        if path.exists():
            return np.load(path)

        signs = np.array([1.0 if METRICS[n] == "min" else -1.0 for n in names])

        def evaluate(X: np.ndarray):
            v = self.values(X)
            return np.column_stack([v[n] for n in names]) * signs, np.zeros(len(X))

        fronts = []
        for run in range(3):
            rng = np.random.default_rng([99, self.seed, run])
            W = self.random_genes(rng, 200)
            _, F, _ = nsga2_search(self, evaluate, W, 120_000, 200, 0.9, 1.0 / self.n_var, rng)
            fronts.append(non_dominated(F))
        front = non_dominated(np.vstack(fronts))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, front)
        os.replace(tmp, path)
        return front

    def fingerprint(self) -> str:
        """8 hex digits of the objectives on a fixed probe: a changed surrogate never reuses a cache."""
        import hashlib

        probe = self.canonical(np.random.default_rng(5).integers(0, self.upper + 1, size=(64, self.n_var)))
        v = self.values(probe)
        data = np.round(np.concatenate([v["accuracy"], v["latency"]]), 9).tobytes()
        return hashlib.sha256(data).hexdigest()[:8]

    def true_front(self, names: Sequence[str]) -> np.ndarray:
        """Alias of :meth:`reference_front` (the name the tabular benchmarks use)."""
        return self.reference_front(names)


def _cache_dir() -> Path:
    return Path(os.environ.get("NAS_CORE_CACHE") or Path.home() / ".cache" / "nas_core") / "linas"
