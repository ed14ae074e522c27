"""Fine-tuning a chosen sub-network into an ordinary, honestly measured candidate.

Owns :func:`finetune`: extract the sub-network with its inherited weights, train it a
few more epochs with the run's settings (the evaluator's own loop, early stopping and
best weights), and measure it like any candidate: the result is a normal
:class:`~nas_core.records.Metrics` on the test split with ``estimate=False``. With
``from_scratch=True`` the same network starts from a fresh initialization instead,
for the comparison the weight-sharing premise invites. The returned model is a
standalone ``build_model`` network, so export works as for any other candidate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas_core.evaluator import evaluate_model, train_model
from nas_core.metrics.hardware import resolve_device
from nas_core.models import build_model
from nas_core.models.export import save_state
from nas_core.records import Metrics
from nas_core.settings import Env, TrainSettings
from nas_core.supernet.checkpoint import check_usable
from nas_core.supernet.network import extract_subnet
from nas_core.supernet.space import SubnetConfig, check_config, to_arch_spec
from nas_core.supernet.train import load_trained

#: Fine-tuning starts from trained weights: a tenth of the run's learning rate keeps them.
FINETUNE_LR_FACTOR = 0.1


def finetune(
    supernet_ckpt: str | Path,
    config: SubnetConfig,
    prepared: Any,
    settings: TrainSettings | None = None,
    *,
    env: Env | None = None,
    from_scratch: bool = False,
    lr_factor: float | None = None,
    device: str | None = None,
    progress: Callable[[Any], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    weights_out: str | Path | None = None,
    split: str = "test",
    measure_costs: bool = True,
) -> tuple[nn.Module, Metrics]:
    """Fine-tune (or train from scratch) one sub-network and measure it as a normal candidate.

    Args:
        supernet_ckpt: the trained super-network's checkpoint.
        config: the sub-network.
        prepared: the PreparedData the super-network was trained on (same split; checked).
        settings: the run's training settings (epochs, patience, optimizer, batch size ...).
        env: where hardware costs are measured.
        from_scratch: start from a fresh, seeded initialization instead of the inherited weights.
        lr_factor: learning-rate multiplier (default 0.1 when fine-tuning, 1.0 from scratch).
        device: "cpu", "cuda" or None (CUDA when available).
        progress: receives the evaluator's EpochProgress after every epoch.
        should_stop: polled before every batch (raises the evaluator's Cancelled).
        weights_out: save the best weights (a state_dict) here.
        split: the split measured: "test" (the candidate's result) or "val" (a fine-tuned *estimate*
            for ranking, as the benchmark's short fine-tune uses it; the test split stays unseen).
        measure_costs: False skips latency and memory (params, MACs and size are still measured).

    Returns:
        ``(model, metrics)``: the trained standalone network and its test-split Metrics.

    Raises:
        CheckpointError: the checkpoint is not trained, or for another data set/resolution/split.
        SubnetError: ``config`` is not a sub-network.
    """
    settings = settings or TrainSettings(image_size=int(prepared.image_size))
    net, meta = load_trained(supernet_ckpt)
    check_usable(
        meta,
        dataset_hash=prepared.dataset_hash,
        image_size=int(prepared.image_size),
        seed=int(getattr(prepared.split, "seed", meta.seed)),
        path=str(supernet_ckpt),
    )
    space = meta.space_config
    config = check_config(config, space)
    if from_scratch:
        torch.manual_seed(settings.seed)
        model = build_model(
            to_arch_spec(config, space), (3, meta.image_size, meta.image_size), meta.n_classes
        )
    else:
        model = extract_subnet(net, config)
    factor = lr_factor if lr_factor is not None else (1.0 if from_scratch else FINETUNE_LR_FACTOR)
    run_settings = dataclasses.replace(settings, lr=settings.lr * factor)
    dev = resolve_device(device or "auto")
    torch.manual_seed(settings.seed)
    training = train_model(model, prepared, run_settings, dev, progress, should_stop)
    if weights_out is not None:
        save_state(model, weights_out)
    metrics = evaluate_model(
        model,
        prepared,
        env or Env(),
        training=training,
        split=split,
        device=dev,
        n_bootstrap=settings.n_bootstrap,
        seed=settings.seed,
        estimate=split != "test",
        measure_costs=measure_costs,
    )
    return model, metrics
