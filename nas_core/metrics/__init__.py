"""Measurements of a trained model: fairness across demographic groups and hardware costs.

Owns :mod:`nas_core.metrics.fairness` (DESIGN.md's fairness definitions with bootstrap
intervals), :mod:`nas_core.metrics.hardware` (parameters, MACs, size, latency, throughput,
peak memory, each with its method stated) and the ``fairness`` CLI command.
"""

from nas_core.metrics.fairness import (
    FairnessInputError,
    balanced_accuracy,
    confusion_matrix,
    fairness_report,
    per_class_recall,
)

__all__ = [
    "FairnessInputError",
    "balanced_accuracy",
    "confusion_matrix",
    "fairness_report",
    "per_class_recall",
]
