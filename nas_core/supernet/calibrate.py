"""How well the super-network ranks: estimates against sub-networks trained from scratch.

Owns the ground truth of the super-network's honesty figure and the code both the
benchmark (``benchmarks/bench_supernet.py``) and ``supernet calibrate`` use:

- :func:`calibration_subnets`: a deterministic list of sub-networks spread from the
  smallest to the largest (every depth, width, kernel and expand ratio appears),
- :func:`train_truth`: one sub-network trained from scratch with the run's settings and
  one initialization seed on the run's fixed split (accuracy, Unfairness, group accuracies),
- :class:`TruthCache`: those results on disk, keyed by sub-network, settings, seed and data
  set hash, so a rerun trains only what is new,
- :func:`estimate`: the super-network's estimate of the same figures,
- :func:`rank_figures`: Kendall tau and Spearman of estimate vs seed-averaged truth, next to
  the seed-vs-seed noise ceiling, and the per-group accuracy error,
- :func:`calibrate`: all of it for a trained checkpoint, stored in its metadata
  (``kendall_tau``, ``kendall_n`` and ``calibration``) so ``supernet status`` and the app show it.

Decisions:
- Two seeds change only the initialization and batch order; the split stays the run's (the
  PreparedData is shared), so the seed-vs-seed tau is training noise alone: the ceiling no
  estimator can beat on these sub-networks.
- Estimates are measured on the validation split (as while searching); the truth is the test
  accuracy from scratch. Per-group error compares both on the test split.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import random
import resource
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas_core.settings import Env, TrainSettings
from nas_core.store import Store
from nas_core.supernet.space import (
    SubnetConfig,
    SupernetSpaceConfig,
    count_subnet_macs,
    largest,
    sample_config,
    smallest,
    to_arch_spec,
)

log = logging.getLogger(__name__)

#: Version of the truth records; bump when train_truth's recipe changes so old entries are not reused.
TRUTH_VERSION = 1


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (user + system)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def calibration_subnets(space: SupernetSpaceConfig, n: int, seed: int = 0, n_classes: int = 8) -> list[SubnetConfig]:
    """``n`` distinct sub-networks from the smallest to the largest, always the same for a seed.

    The smallest and the largest, then one random sub-network per MACs quantile of a large
    uniform sample, so small, medium and large networks are equally represented and every
    kernel/expand value appears.
    """
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    rng = random.Random(seed)
    pool: dict[str, SubnetConfig] = {}
    for _ in range(max(40 * n, 400)):
        cfg = sample_config(space, rng)
        pool.setdefault(cfg.key, cfg)
    ends = [smallest(space), largest(space)]
    for cfg in ends:
        pool.pop(cfg.key, None)
    ranked = sorted(pool.values(), key=lambda c: (count_subnet_macs(c, space, n_classes, 64), c.key))
    picked = list(ends)
    need = n - len(picked)
    if need > 0 and ranked:
        for i in range(need):
            j = round((i + 0.5) * len(ranked) / need - 0.5)
            cand = ranked[min(max(j, 0), len(ranked) - 1)]
            if all(cand.key != p.key for p in picked):
                picked.append(cand)
    return picked[:n]


@functools.cache
def _recipe_fingerprint() -> str:
    """A hash of the evaluator's training loop: a changed recipe must not reuse old truths.

    Computed once per process: ``inspect.getsource`` reads the file as it is now, so an edit elsewhere in
    evaluator.py during a long benchmark shifted the lines it returned and re-keyed results mid-run."""
    import inspect

    from nas_core import evaluator

    parts = [inspect.getsource(getattr(evaluator, name)) for name in ("train_model", "train_epoch")
             if hasattr(evaluator, name)]
    return hashlib.sha256("".join(parts).encode()).hexdigest()[:8]


def _settings_key(train: TrainSettings) -> str:
    d = train.to_dict()
    d.pop("seed", None)  # the split seed is part of the data hash key, the init seed is separate
    d.pop("n_bootstrap", None)
    text = json.dumps({"v": TRUTH_VERSION, "recipe": _recipe_fingerprint(), **d}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def truth_key(config: SubnetConfig, train: TrainSettings, seed: int, dataset_hash: str, split_seed: int) -> str:
    """The cache key of one from-scratch result."""
    return f"{dataset_hash[:16]}-s{split_seed}-{_settings_key(train)}-{config.key}-i{seed}"


class TruthCache:
    """From-scratch results on disk (one JSON file, rewritten atomically after every entry)."""

    def __init__(self, path: str | os.PathLike[str] | None):
        self.path = Path(path) if path else None
        self.data: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                log.warning("ignoring unreadable truth cache %s: %s", self.path, exc)

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached record or None."""
        return self.data.get(key)

    def put(self, key: str, record: Mapping[str, Any]) -> None:
        """Store and write through."""
        self.data[key] = dict(record)
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".truth.", suffix=".tmp", dir=self.path.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump(self.data, fh)
        os.replace(tmp, self.path)


def summarize(m: Any) -> dict[str, Any]:
    """Accuracy, Unfairness and per-group accuracies (groups of >= 10 known images) of a Metrics record."""
    groups = {
        f"{g.attribute}={g.group}": g.accuracy
        for g in m.fairness.groups
        if g.group != "unknown" and g.accuracy is not None and g.n >= 10
    }
    return {"accuracy": float(m.test_acc), "unfairness": m.fairness.unfairness, "groups": groups}


def train_truth(
    config: SubnetConfig,
    space: SupernetSpaceConfig,
    prepared: Any,
    train: TrainSettings,
    seed: int,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Train one sub-network from scratch (init seed ``seed``, the run's split) and measure it on test."""
    import torch

    from nas_core.evaluator import evaluate_model, train_model
    from nas_core.models import build_model

    settings = dataclasses.replace(train, seed=seed)
    torch.manual_seed(seed)
    shape = (int(prepared.images.shape[1]), int(prepared.image_size), int(prepared.image_size))
    model = build_model(to_arch_spec(config, space), shape, len(prepared.class_names))
    c0, t0 = cpu_seconds(), time.perf_counter()
    result = train_model(model, prepared, settings, torch.device("cpu"), should_stop=should_stop)
    m = evaluate_model(model, prepared, Env(), training=result, split="test", n_bootstrap=0, seed=seed,
                       measure_costs=False)
    return {
        **summarize(m),
        "epochs": result.epochs,
        "cpu_seconds": cpu_seconds() - c0,
        "seconds": time.perf_counter() - t0,
        "macs": float(m.hardware.macs),
    }


def estimate(net: Any, config: SubnetConfig, prepared: Any, *, calib_batches: int | None = None) -> dict[str, Any]:
    """The super-network's estimate: accuracy and Unfairness on validation, group accuracies on test."""
    from nas_core.supernet.measure import DEFAULT_CALIB_BATCHES, measure_subnet

    n = calib_batches or DEFAULT_CALIB_BATCHES
    val = measure_subnet(net, config, prepared, Env(), split="val", calib_batches=n, n_bootstrap=0,
                         measure_costs=False)
    test = measure_subnet(net, config, prepared, Env(), split="test", calib_batches=n, n_bootstrap=0,
                          measure_costs=False)
    out = summarize(val)
    out["test_accuracy"] = float(test.test_acc)
    out["groups"] = summarize(test)["groups"]
    return out


def _tau(a: Sequence[float], b: Sequence[float]) -> tuple[float | None, float | None]:
    from scipy.stats import kendalltau, spearmanr

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = ~(np.isnan(a) | np.isnan(b))
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return None, None
    return float(kendalltau(a[ok], b[ok]).statistic), float(spearmanr(a[ok], b[ok]).statistic)


def _val(x: Any) -> float:
    return float("nan") if x is None else float(x)


def rank_figures(estimates: Sequence[Mapping[str, Any]], truths: Sequence[Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """Rank agreement of estimates with the seed-averaged truth, and the seed-vs-seed ceiling.

    Args:
        estimates: one :func:`estimate` dict per sub-network (or any dict with accuracy/unfairness).
        truths: per sub-network, its :func:`train_truth` dicts (one per seed; two for a ceiling).

    Returns:
        ``{"n", "accuracy": {tau, spearman, ceiling_tau, ceiling_spearman}, "unfairness": {...},
        "group_error": mean |estimate - truth| of group accuracy on test (points, None without groups),
        "estimate_vs_macs_tau"}``.
    """
    out: dict[str, Any] = {"n": len(estimates)}
    for metric in ("accuracy", "unfairness"):
        est = [_val(e.get(metric)) for e in estimates]
        mean = [float(np.nanmean([_val(t.get(metric)) for t in ts])) if ts else float("nan") for ts in truths]
        tau, rho = _tau(est, mean)
        fig = {"tau": tau, "spearman": rho, "ceiling_tau": None, "ceiling_spearman": None}
        if truths and all(len(ts) >= 2 for ts in truths):
            fig["ceiling_tau"], fig["ceiling_spearman"] = _tau(
                [_val(ts[0].get(metric)) for ts in truths], [_val(ts[1].get(metric)) for ts in truths]
            )
        out[metric] = fig
    errors = []
    for e, ts in zip(estimates, truths):
        for g, acc in (e.get("groups") or {}).items():
            vals = [t["groups"][g] for t in ts if g in (t.get("groups") or {})]
            if vals and acc is not None:
                errors.append(abs(acc - float(np.mean(vals))))
    out["group_error"] = float(np.mean(errors)) if errors else None
    if estimates and all("macs" in t for ts in truths for t in ts[:1]):
        out["estimate_vs_macs_tau"] = _tau([_val(e.get("accuracy")) for e in estimates],
                                           [float(ts[0]["macs"]) for ts in truths])[0]
    return out


def ranking_ok(figs: Mapping[str, Any]) -> dict[str, bool | None]:
    """Issue 13's targets: accuracy tau >= 0.6 (or >= 0.8 of a ceiling below 0.75), Unfairness >= 0.4 (or 0.8 x).

    None where there is no tau or the seed-vs-seed ceiling is <= 0 (nothing can rank there).
    """
    out: dict[str, bool | None] = {}
    for metric, floor in (("accuracy", 0.6), ("unfairness", 0.4)):
        f = figs.get(metric) or {}
        tau, ceil = f.get("tau"), f.get("ceiling_tau")
        if tau is None:
            out[metric] = None
            continue
        if ceil is not None and ceil <= 0:
            out[metric] = None  # the seeds do not agree at all: no estimator can be judged here
            continue
        target = floor
        if ceil is not None and ceil < (0.75 if metric == "accuracy" else 0.5):
            target = min(floor, 0.8 * ceil)
        out[metric] = tau >= target
    return out


@dataclass(frozen=True)
class CalibrationResult:
    """What :func:`calibrate` measured and stored."""

    figures: Mapping[str, Any]
    n: int
    seeds: int
    cpu_seconds: float  # from-scratch training and estimates, this call (cached results cost nothing)
    seconds: float
    trained: int  # from-scratch trainings run by this call

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (what the checkpoint's metadata stores under ``calibration``)."""
        return {**dataclasses.asdict(self), "figures": dict(self.figures)}


def calibrate(
    checkpoint: str | os.PathLike[str],
    prepared: Any,
    train: TrainSettings,
    *,
    n: int = 8,
    seeds: int = 2,
    cache: TruthCache | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    store: Any = None,
) -> CalibrationResult:
    """Train ``n`` sub-networks from scratch (``seeds`` seeds each) and store how well the checkpoint ranks them.

    Writes ``kendall_tau`` (accuracy), ``kendall_n`` and ``calibration`` (every figure, the ceiling
    and the cost) into the checkpoint's metadata, and into the store's registry when ``store`` is given.

    Raises:
        CheckpointError: the checkpoint is unusable for ``prepared``.
        nas_core.evaluator.Cancelled: ``should_stop`` asked to stop (finished trainings stay cached).
    """
    from nas_core.supernet.checkpoint import check_usable, update_meta
    from nas_core.supernet.train import load_trained

    net, meta = load_trained(checkpoint)
    split_seed = int(getattr(prepared.split, "seed", meta.seed))
    check_usable(meta, dataset_hash=prepared.dataset_hash, image_size=int(prepared.image_size),
                 seed=split_seed, path=str(checkpoint))
    space = meta.space_config
    cache = cache or TruthCache(None)
    configs = calibration_subnets(space, n, n_classes=meta.n_classes)
    c0, t0 = cpu_seconds(), time.perf_counter()
    estimates, truths, trained = [], [], 0
    total = len(configs) * seeds
    done = 0
    for i, cfg in enumerate(configs):
        estimates.append(estimate(net, cfg, prepared))
        ts = []
        for s in range(seeds):
            key = truth_key(cfg, train, s, str(prepared.dataset_hash), split_seed)
            rec = cache.get(key)
            if rec is None:
                rec = train_truth(cfg, space, prepared, train, s, should_stop)
                cache.put(key, rec)
                trained += 1
            ts.append(rec)
            done += 1
            if progress is not None:
                elapsed = time.perf_counter() - t0
                left = elapsed / done * (total - done) if trained else 0.0
                progress({"fraction": done / total, "eta_seconds": left,
                          "message": f"sub-network {i + 1}/{len(configs)}, seed {s}: trained from scratch"})
        truths.append(ts)
    figs = rank_figures(estimates, truths)
    result = CalibrationResult(figs, len(configs), seeds, cpu_seconds() - c0, time.perf_counter() - t0, trained)
    meta = update_meta(checkpoint, kendall_tau=figs["accuracy"]["tau"], kendall_n=len(configs),
                       calibration=result.to_dict())
    if store is not None:
        from nas_core.supernet.registry import register

        register(store, checkpoint, meta)
    return result


def truth_cache_for(checkpoint: str | os.PathLike[str]) -> TruthCache:
    """The from-scratch cache next to a checkpoint (``<checkpoint>.truth.json``)."""
    p = Path(checkpoint)
    return TruthCache(p.with_name(p.name + ".truth.json"))


def run_calibration(
    checkpoint: str,
    dataset: str | None = None,
    *,
    n: int = 8,
    seeds: int = 2,
    epochs: int | None = None,
    db: str | None = None,
    store: Any = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> CalibrationResult:
    """Load the checkpoint's data under its own settings, calibrate, register the figures.

    The from-scratch trainings use the run's default training settings at the checkpoint's
    resolution, split seed and subsample (``epochs`` overrides the epoch cap).

    Raises:
        CheckpointError: missing/unfinished checkpoint, or data that does not match it.
    """
    from nas_core.supernet.checkpoint import CheckpointError, read_meta
    from nas_core.supernet.jobs import load_prepared

    meta = read_meta(checkpoint)
    data = dataset or meta.dataset
    if not data:
        raise CheckpointError(f"{checkpoint} does not name its data set; give the data set folder")
    train = TrainSettings(image_size=meta.image_size, seed=meta.seed, subsample=meta.subsample)
    if epochs is not None:
        train = dataclasses.replace(train, max_epochs=int(epochs))
    prepared = load_prepared(str(data), train)
    own = None
    if store is None and db:
        store = own = Store.open(db)
    try:
        return calibrate(checkpoint, prepared, train, n=n, seeds=seeds, cache=truth_cache_for(checkpoint),
                         progress=progress, should_stop=should_stop, store=store)
    finally:
        if own is not None:
            own.close()


def calibrate_job(
    payload: Mapping[str, Any],
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """The ``supernet_calibrate`` job: ``{"checkpoint", "dataset"?, "n"?, "seeds"?, "epochs"?, "db"?}`` in.

    Finished from-scratch trainings are cached next to the checkpoint, so a stopped job that
    is queued again trains only what is left.
    """
    known = {"checkpoint", "dataset", "n", "seeds", "epochs", "db"}
    unknown = set(payload) - known
    if unknown or "checkpoint" not in payload:
        from nas_core.supernet.jobs import PayloadError

        raise PayloadError(f"supernet_calibrate payload needs 'checkpoint' and allows {sorted(known)}; "
                           f"got unknown {sorted(unknown)}")
    result = run_calibration(
        str(payload["checkpoint"]), payload.get("dataset"), n=int(payload.get("n", 8)),
        seeds=int(payload.get("seeds", 2)), epochs=payload.get("epochs"), db=payload.get("db"),
        progress=progress, should_stop=should_stop,
    )
    return result.to_dict()


def describe(calibration: Mapping[str, Any] | None, kendall_tau: float | None = None, kendall_n: int = 0) -> str:
    """One line for people: the measured tau and its noise ceiling, or how to measure them."""
    if not calibration:
        if kendall_tau is not None:
            return f"Kendall tau vs from-scratch {kendall_tau:.2f} over {kendall_n} sub-networks (no noise ceiling)"
        return "ranking not measured yet (python -m nas_core supernet calibrate --checkpoint FILE)"
    f = calibration.get("figures") or {}
    a, u = f.get("accuracy") or {}, f.get("unfairness") or {}

    def num(v: Any) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    cost = float(calibration.get("cpu_seconds") or 0.0)
    return (
        f"Kendall tau vs from-scratch: accuracy {num(a.get('tau'))} (seed-vs-seed ceiling {num(a.get('ceiling_tau'))}), "
        f"Unfairness {num(u.get('tau'))} (ceiling {num(u.get('ceiling_tau'))}) over {calibration.get('n')} "
        f"sub-networks x {calibration.get('seeds')} seeds; cost {cost / 60:.1f} CPU-min"
    )
