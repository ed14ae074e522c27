"""Measuring a sub-network in seconds: slice, recalibrate batch norm, evaluate -> Metrics estimate.

Owns :func:`measure_subnet` and the per-process caches that make it fast in a worker
(the input transform and the calibration batches of a prepared data set).

Steps: the sub-network is extracted as a standalone ``build_model`` network
(:func:`~nas_core.supernet.network.extract_subnet`), its batch-norm statistics are
re-estimated on a fixed, seeded set of training batches (reset, momentum None,
train-mode forward without gradients: the super-network's running statistics mix
every sub-network trained and are wrong for any single one), and the evaluator's
own :func:`~nas_core.evaluator.evaluate_model` measures it on the validation split
(while searching: ``test_acc`` and ``val_acc`` both hold the validation accuracy, and
``val_loss`` stays empty) or the test split (for the final report). The record is the same
:class:`~nas_core.records.Metrics` a trained candidate gets, with ``estimate=True``;
training fields stay empty because nothing was trained for it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any

import numpy as np
import torch

from nas_core.evaluator import InputTransform, TrainResult, evaluate_model
from nas_core.records import Metrics
from nas_core.settings import Env
from nas_core.supernet.network import SuperNet, extract_subnet, recalibrate_bn
from nas_core.supernet.space import SubnetConfig, check_config

log = logging.getLogger(__name__)

#: BN recalibration batches per measurement (x 64 images), chosen by benchmarks/bench_supernet.py.
DEFAULT_CALIB_BATCHES = 4

_lock = threading.Lock()
_transforms: dict[tuple, Any] = {}
_calibration: dict[tuple, list[torch.Tensor]] = {}


def _data_key(prepared: Any) -> tuple:
    # The data set hash covers the rows and the split fractions; with the size and seed it names the data.
    return (str(prepared.dataset_hash), int(prepared.image_size), int(getattr(prepared.split, "seed", 0)))


def input_transform(prepared: Any, stats: Any = None) -> Any:
    """The evaluator's input transform for ``prepared`` (training-split statistics), cached.

    Args:
        prepared: the PreparedData.
        stats: the checkpoint's ``input_stats`` (``{"mean": [...], "std": [...]}``) of the same data and
            split, used instead of recomputing the statistics over every training image (None: compute).
    """
    key = _data_key(prepared)
    with _lock:
        if key not in _transforms:
            if len(_transforms) >= 4:
                _transforms.clear()
            if stats:
                c = int(prepared.images.shape[1])
                mean = torch.tensor(stats["mean"], dtype=torch.float32).view(1, c, 1, 1)
                std = torch.tensor(stats["std"], dtype=torch.float32).view(1, c, 1, 1)
                _transforms[key] = InputTransform(mean, std)
            else:
                _transforms[key] = InputTransform.for_data(prepared, torch.device("cpu"))
        return _transforms[key]


def calibration_batches(prepared: Any, n_batches: int, batch_size: int, seed: int = 0,
                        size: int | None = None) -> list[torch.Tensor]:
    """A fixed, seeded sample of training images as ready float batches, cached per data set.

    Every sub-network of a run is recalibrated on the same images, so their estimates
    differ only by architecture. ``size``: resized to this many pixels (the super-network's
    ``measure_size``); None keeps the data's resolution.
    """
    key = (*_data_key(prepared), n_batches, batch_size, seed, size)
    with _lock:
        if key in _calibration:
            return _calibration[key]
    train = np.asarray(prepared.split.train)
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(train))[: n_batches * batch_size]
    idx = torch.from_numpy(train[np.sort(pick)].astype(np.int64))
    transform = dataclasses.replace(input_transform(prepared), size=size)
    batches = [transform(prepared.images[idx[i : i + batch_size]]) for i in range(0, len(idx), batch_size)]
    batches = [b for b in batches if b.shape[0] > 1]  # train-mode BN needs two samples
    with _lock:
        if len(_calibration) >= 4:
            _calibration.clear()
        _calibration[key] = batches
    return batches


def clear_caches() -> None:
    """Forget cached transforms and calibration batches."""
    with _lock:
        _transforms.clear()
        _calibration.clear()


def measure_subnet(
    net: SuperNet,
    config: SubnetConfig,
    prepared: Any,
    env: Env | None = None,
    *,
    split: str = "val",
    calib_batches: int | None = None,
    calib_batch_size: int = 64,
    recalibrate: bool = True,
    n_bootstrap: int = 200,
    seed: int = 0,
    measure_costs: bool = True,
) -> Metrics:
    """Estimate every metric of one sub-network of a trained super-network.

    Args:
        net: the trained super-network (not modified).
        config: the sub-network.
        prepared: the PreparedData the super-network was trained on (same split).
        env: where hardware costs are measured (default Env()).
        split: "val" while searching, "test" for the final report.
        calib_batches: training batches for BN recalibration (None: DEFAULT_CALIB_BATCHES).
        calib_batch_size: images per calibration batch.
        recalibrate: False keeps the super-network's (stale) statistics; only for comparison.
        n_bootstrap: resamples for the fairness intervals.
        seed: calibration sample and bootstrap seed.
        measure_costs: False skips latency and memory (params, MACs and size are still measured).

    Returns:
        A :class:`Metrics` record with ``estimate=True``.

    Raises:
        SubnetError: when ``config`` is not a sub-network of ``net``.
    """
    t0 = time.perf_counter()
    config = check_config(config, net.space)
    model = extract_subnet(net, config)
    # the resolution the super-network trained at (CheckpointMeta.measure_size); costs stay at the data's
    size = getattr(net, "measure_size", None)
    size = None if size is None or int(size) == int(prepared.image_size) else int(size)
    if recalibrate:
        n = DEFAULT_CALIB_BATCHES if calib_batches is None else int(calib_batches)
        recalibrate_bn(model, calibration_batches(prepared, n, calib_batch_size, seed, size))
    model.eval()
    t1 = time.perf_counter()
    # Nothing was trained: no training numbers. On the validation split the evaluator's own pass
    # gives the validation accuracy, so an empty TrainResult spares it a second pass over the same images.
    none = TrainResult(None, None, None, None, 0, 0, 0.0)  # type: ignore[arg-type]
    metrics = evaluate_model(
        model,
        prepared,
        env or Env(),
        training=none if split == "val" else None,
        split=split,
        device=torch.device("cpu"),
        n_bootstrap=n_bootstrap,
        seed=seed,
        estimate=True,
        measure_costs=measure_costs,
        transform=dataclasses.replace(input_transform(prepared), size=size),
    )
    if split == "val":
        metrics = dataclasses.replace(metrics, val_acc=metrics.test_acc, train_seconds=0.0)
    log.info(
        "measured sub-network %s: slice+calibrate %.2fs, evaluate %.2fs",
        config.key,
        t1 - t0,
        time.perf_counter() - t1,
    )
    return metrics
