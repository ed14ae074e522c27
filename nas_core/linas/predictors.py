"""Objective predictors for LINAS: ridge, SVR and stacked ridge+SVR, chosen by Kendall tau.

Owns the predictors (scikit-learn habit: ``fit`` returns self, learned state ends in ``_``,
``predict`` takes a whole feature matrix at once), the cross-validated choice between them per
objective (:func:`select_predictor`), their out-of-sample quality (:func:`kendall_tau`,
:func:`mape`) and the frozen :class:`PredictorReport` a session stores per iteration (the seed's
Figure 3: can the predictions be trusted?).

Targets are standardized before fitting (SVR's epsilon and C then mean the same thing for
accuracy in [0, 1] and latency in milliseconds).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

PREDICTOR_NAMES = ("ridge", "svr", "stacked")
TRANSFORMS = ("auto", "rank", "rank_clamped", "none")
# ``auto`` fits normal scores of the ranks above this |skewness| of the measured targets. Random
# samples of NAS-Bench-Graph's accuracy have skewness -5.1 (cora), -2.9 (citeseer), -2.6 (pubmed):
# a tail of broken architectures; the MobileNetV3-style surrogates -0.02 to 0.24, where the rank
# transform cost evaluations (mbv3:1, 10 seeds: 394 -> 264 evaluations to 0.90 without it) and on
# cora standardized values cost them (114 -> 234 to 0.98).
SKEW_LIMIT = 1.0


class _Standardized:
    """Shared target scaling; subclasses implement ``_fit`` / ``_predict`` on scaled targets.

    Attributes:
        transform: ``rank`` (fit normal scores of the ranks, map back by the training quantiles,
            extended linearly past the measured extremes), ``rank_clamped`` (the same, clamped at
            the measured extremes), ``none`` (standardized values) or ``auto`` (``rank`` when the
            measured targets have a long tail, ``|skewness| > SKEW_LIMIT``, else ``none``).
        log_target: None: fit logs of positive targets whose max/min > 5; True: of every
            positive target; False: never.
    """

    transform = "rank_clamped"
    log_target: bool | None = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> Any:
        """Fit on features ``X`` (n, d) and targets ``y`` (n,); returns self."""
        y = np.asarray(y, dtype=float)
        # positive, skewed targets (latency, parameters) are multiplicative in the genes: fit logs
        if self.log_target is None:
            self.log_ = bool(len(y) and y.min() > 0 and y.max() / y.min() > 5)
        else:
            self.log_ = bool(self.log_target and len(y) and y.min() > 0)
        self.quantiles_ = None
        rank = self.transform != "none"
        if self.transform == "auto":
            rank = abs(skewness(y)) > SKEW_LIMIT
        if self.log_:
            y = np.log(y)
        elif len(y) >= 4 and rank:
            # other targets (accuracy) are fitted as normal scores of their ranks: a tail of broken
            # architectures would otherwise dominate the fit and flatten the top, where the front is
            # (halved the evaluations LINAS needed on NAS-Bench-Graph cora)
            ranks = np.argsort(np.argsort(y, kind="stable"), kind="stable")
            z = _normal_scores(ranks, len(y))
            self.quantiles_ = (np.sort(z), np.sort(y))
            y = z
        self.mean_ = float(y.mean())
        self.scale_ = float(y.std()) or 1.0
        self._fit(np.asarray(X, dtype=float), (y - self.mean_) / self.scale_)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions for every row of ``X``."""
        z = self._predict(np.asarray(X, dtype=float)) * self.scale_ + self.mean_
        if self.log_:
            return np.exp(z)
        if self.quantiles_ is not None:
            return _from_scores(z, *self.quantiles_, extrapolate=self.transform != "rank_clamped")
        return z

    def _fit_predict(self, X: np.ndarray, y: np.ndarray, Xt: np.ndarray) -> np.ndarray:
        return self.fit(X, y).predict(Xt)

    def _fit(self, X: np.ndarray, z: np.ndarray) -> None:
        raise NotImplementedError

    def _predict(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class RidgePredictor(_Standardized):
    """Linear ridge regression on the gene features.

    Args:
        alpha: L2 strength (1.0: features are in [0, 1], targets standardized).
    """

    name = "ridge"

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def _fit(self, X: np.ndarray, z: np.ndarray) -> None:
        from sklearn.linear_model import Ridge

        self.model_ = Ridge(alpha=self.alpha).fit(X, z)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        # the fitted linear map itself: sklearn's per-call input validation cost more than the
        # product on the inner search's small batches
        return X @ self.coef_ + self.intercept_

    @property
    def coef_(self) -> np.ndarray:
        return self.model_.coef_

    @property
    def intercept_(self) -> float:
        return float(self.model_.intercept_)


class SvrPredictor(_Standardized):
    """Support-vector regression with an RBF kernel (the seed's accuracy predictor).

    Args:
        C: regularization (10: targets are standardized, so errors are in units of std).
        epsilon: insensitive tube in standardized units.
        gamma: RBF width; "scale" adapts to the feature variance.
    """

    name = "svr"

    def __init__(self, C: float = 10.0, epsilon: float = 0.05, gamma: str | float = "scale"):
        self.C = C
        self.epsilon = epsilon
        self.gamma = gamma

    def _fit(self, X: np.ndarray, z: np.ndarray) -> None:
        from sklearn.svm import SVR

        if self.gamma == "scale":  # scikit-learn's rule
            var = float(X.var()) if X.size else 0.0
            self.gamma_ = 1.0 / (X.shape[1] * var) if var > 0 else 1.0
        elif self.gamma == "auto":
            self.gamma_ = 1.0 / X.shape[1]
        else:
            self.gamma_ = float(self.gamma)
        # the RBF kernel by BLAS, handed to libsvm precomputed (it evaluates the kernel one pair
        # at a time: a quarter of the fit); the same model as kernel="rbf" up to rounding
        self.model_ = SVR(C=self.C, epsilon=self.epsilon, kernel="precomputed").fit(_rbf(X, X, self.gamma_), z)
        self.sv_ = X[self.model_.support_]
        self.dual_ = self.model_.dual_coef_[0]
        self.b_ = float(self.model_.intercept_[0])

    def _predict(self, X: np.ndarray) -> np.ndarray:
        if len(self.sv_) == 0:
            return np.full(len(X), self.b_)
        return _rbf(X, self.sv_, self.gamma_) @ self.dual_ + self.b_


def _rbf(A: np.ndarray, B: np.ndarray, gamma: float) -> np.ndarray:
    d2 = (A * A).sum(axis=1)[:, None] + (B * B).sum(axis=1)[None, :] - 2.0 * (A @ B.T)
    return np.exp(-gamma * np.maximum(d2, 0.0))


class StackedPredictor(_Standardized):
    """Ridge and SVR whose out-of-fold predictions feed a final ridge (the seed's stacked predictor).

    Args:
        folds: folds for the out-of-fold predictions the final ridge learns from.
        seed: fold shuffling seed.
    """

    name = "stacked"

    def __init__(self, folds: int = 3, seed: int = 0):
        self.folds = folds
        self.seed = seed

    def _fit(self, X: np.ndarray, z: np.ndarray) -> None:
        from sklearn.linear_model import Ridge

        n = len(z)
        oof = np.zeros((n, 2))
        k = min(self.folds, n)
        # the targets are already transformed: the old default transformed them once more (and
        # clamped); the extrapolating transforms fit the base learners on them as they are
        inner = "rank_clamped" if self.transform == "rank_clamped" else "none"

        def base(cls):
            b = cls()
            b.transform, b.log_target = inner, (None if inner == "rank_clamped" else False)
            return b

        if k >= 2:
            for tr, te in _folds(n, k, self.seed):
                oof[te, 0] = base(RidgePredictor)._fit_predict(X[tr], z[tr], X[te])
                oof[te, 1] = base(SvrPredictor)._fit_predict(X[tr], z[tr], X[te])
        self.base_ = (base(RidgePredictor).fit(X, z), base(SvrPredictor).fit(X, z))
        if k < 2:
            oof = np.column_stack([b.predict(X) for b in self.base_])
        self.final_ = Ridge(alpha=1e-3).fit(oof, z)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        f = self.final_
        return np.column_stack([b.predict(X) for b in self.base_]) @ f.coef_ + float(f.intercept_)


def skewness(y: np.ndarray) -> float:
    """Sample skewness (the biased moment estimator, as ``scipy.stats.skew``); 0 for constants."""
    y = np.asarray(y, dtype=float)
    if len(y) < 3:
        return 0.0
    d = y - y.mean()
    m2 = float(np.mean(d * d))
    return float(np.mean(d**3) / m2**1.5) if m2 > 0 else 0.0


def _normal_scores(ranks: np.ndarray, n: int) -> np.ndarray:
    from scipy.stats import norm

    return norm.ppf((ranks + 0.5) / n)


def _from_scores(z: np.ndarray, zs: np.ndarray, ys: np.ndarray, extrapolate: bool = False) -> np.ndarray:
    """Map normal scores back to target units by the training quantiles.

    ``extrapolate=False`` clamps at the measured extremes (then a config predicted better than
    the best measured one ties with it, so the picks can never extend the front's ends);
    ``True`` extends each end by the slope of its outer tenth of the training points.
    """
    y = np.interp(z, zs, ys)
    if not extrapolate or len(zs) < 4:
        return y
    k = max(2, len(zs) // 10)
    lo = (ys[k - 1] - ys[0]) / max(zs[k - 1] - zs[0], 1e-12)
    hi = (ys[-1] - ys[-k]) / max(zs[-1] - zs[-k], 1e-12)
    y = np.where(z < zs[0], ys[0] + (z - zs[0]) * lo, y)
    return np.where(z > zs[-1], ys[-1] + (z - zs[-1]) * hi, y)


def make_predictor(
    name: str, seed: int = 0, transform: str = "rank_clamped", log_target: bool | None = None
) -> _Standardized:
    """A fresh predictor by name (one of :data:`PREDICTOR_NAMES`) with its target transform."""
    if name == "ridge":
        p: _Standardized = RidgePredictor()
    elif name == "svr":
        p = SvrPredictor()
    elif name == "stacked":
        p = StackedPredictor(seed=seed)
    else:
        raise ValueError(f"unknown predictor {name!r}; known: {', '.join(PREDICTOR_NAMES)}")
    if transform not in TRANSFORMS:
        raise ValueError(f"unknown target transform {transform!r}; known: {', '.join(TRANSFORMS)}")
    p.transform, p.log_target = transform, log_target
    return p


def _folds(n: int, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    idx = np.random.default_rng(seed).permutation(n)
    parts = np.array_split(idx, k)
    return [(np.concatenate([p for j, p in enumerate(parts) if j != i]), parts[i]) for i in range(k)]


def kendall_tau(y: np.ndarray, yhat: np.ndarray) -> float | None:
    """Kendall rank correlation (tau-b); None when undefined (fewer than 2 points, constants)."""
    from scipy.stats import kendalltau

    y, yhat = np.asarray(y, dtype=float), np.asarray(yhat, dtype=float)
    if len(y) < 2 or np.all(y == y[0]) or np.all(yhat == yhat[0]):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tau = kendalltau(y, yhat).statistic
    return None if not np.isfinite(tau) else float(tau)


def mape(y: np.ndarray, yhat: np.ndarray) -> float | None:
    """Mean absolute percentage error, as a fraction (0.05 = 5%); None for no points."""
    y, yhat = np.asarray(y, dtype=float), np.asarray(yhat, dtype=float)
    if len(y) == 0:
        return None
    denom = np.maximum(np.abs(y), 1e-12)
    return float(np.mean(np.abs(y - yhat) / denom))


def cv_kendall(name: str, X: np.ndarray, y: np.ndarray, folds: int = 3, seed: int = 0) -> float | None:
    """Mean held-out Kendall tau of predictor ``name`` over ``folds`` folds."""
    n = len(y)
    if n < 2 * folds:
        return None
    taus = []
    for tr, te in _folds(n, folds, seed):
        tau = kendall_tau(y[te], make_predictor(name, seed).fit(X[tr], y[tr]).predict(X[te]))
        if tau is not None:
            taus.append(tau)
    return float(np.mean(taus)) if taus else None


def select_predictor(
    X: np.ndarray, y: np.ndarray, names: tuple[str, ...] = PREDICTOR_NAMES, folds: int = 3, seed: int = 0
) -> tuple[str, dict[str, float | None]]:
    """The predictor with the best cross-validated Kendall tau, and every candidate's tau.

    With too few points to cross-validate, ridge (the most stable) is chosen.
    """
    scores = {n: cv_kendall(n, X, y, folds, seed) for n in names}
    ranked = [n for n in names if scores[n] is not None]
    best = max(ranked, key=lambda n: scores[n]) if ranked else ("ridge" if "ridge" in names else names[0])
    return best, scores


@dataclass(frozen=True)
class PredictorScore:
    """How one predictor did for one objective in one iteration."""

    objective: str
    predictor: str  # ridge | svr | stacked
    cv_tau: float | None  # cross-validated Kendall tau on the training data (used to choose)
    oos_tau: float | None  # Kendall tau on the newest measured batch, before fitting on it
    oos_mape: float | None  # MAPE (fraction) on that batch
    chosen: bool  # the predictor LINAS used for this objective this iteration


@dataclass(frozen=True)
class PredictorReport:
    """Every predictor's quality in one LINAS iteration.

    Out-of-sample figures compare the predictions of predictors fitted on everything measured
    before the newest batch with that batch's measured values (``n_test`` points), so they are
    what a person should expect from the current proposals.
    """

    iteration: int
    n_train: int  # measured candidates the chosen predictors were fitted on
    n_test: int  # size of the newest batch used for the out-of-sample figures (0: none yet)
    scores: tuple[PredictorScore, ...] = ()
    seconds: float = 0.0  # time of predictor fitting and the inner search

    def chosen(self, objective: str) -> str | None:
        """Name of the predictor used for ``objective``."""
        for s in self.scores:
            if s.objective == objective and s.chosen:
                return s.predictor
        return None

    def to_extra(self) -> tuple[tuple[str, Any], ...]:
        """Flat (key, value) pairs for ``Candidate.extra``."""
        out: list[tuple[str, Any]] = [("linas.n_train", self.n_train), ("linas.n_test", self.n_test)]
        for s in self.scores:
            p = f"linas.{s.objective}.{s.predictor}"
            out += [(f"{p}.cv_tau", s.cv_tau), (f"{p}.oos_tau", s.oos_tau), (f"{p}.oos_mape", s.oos_mape)]
            if s.chosen:
                out.append((f"linas.{s.objective}.predictor", s.predictor))
        return tuple(out)

    def summary(self) -> str:
        """One line per objective: chosen predictor and its quality."""
        lines = []
        for obj in dict.fromkeys(s.objective for s in self.scores):
            row = [s for s in self.scores if s.objective == obj]
            ch = next((s for s in row if s.chosen), row[0])

            def f(v: float | None, pct: bool = False) -> str:
                return "n/a" if v is None else (f"{100 * v:.1f}%" if pct else f"{v:.2f}")

            lines.append(
                f"{obj}: {ch.predictor} (cv tau {f(ch.cv_tau)}, out-of-sample tau {f(ch.oos_tau)}, "
                f"MAPE {f(ch.oos_mape, True)} on {self.n_test})"
            )
        return "; ".join(lines)
