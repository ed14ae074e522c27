"""Models: build a network from a spec, the baselines registry, costs and export.

Public API (re-exported here): :func:`build_model`, :class:`SpecNet`,
:func:`count_params`, :func:`count_macs`, :func:`model_size_mb`,
:func:`check_budget`, :func:`validate_full`, :class:`ModelError`.
Baselines live in :mod:`nas_core.models.baselines`, export in
:mod:`nas_core.models.export` (imported on demand: they pull in torchvision / onnx).
"""

from nas_core.models.builder import (
    ModelError,
    build_model,
    check_budget,
    count_macs,
    count_params,
    model_size_mb,
    spec_costs,
    validate_full,
)
from nas_core.models.layers import SpecNet

__all__ = [
    "ModelError",
    "SpecNet",
    "build_model",
    "check_budget",
    "count_macs",
    "count_params",
    "model_size_mb",
    "spec_costs",
    "validate_full",
]
