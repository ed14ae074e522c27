"""One check every designer and the session apply to a spec before it may become a candidate.

Owns :func:`spec_problems`: the Choices (``nas_core.space.validate``), the run's
resolution, and, through ``nas_core.models.validate_full``, the parameter/MAC caps
and shapes that only a built network reveals.
"""

from __future__ import annotations

from nas_core.designers.base import DesignContext
from nas_core.space import ArchSpec, validate


def spec_problems(spec: ArchSpec, ctx: DesignContext) -> list[str]:
    """Every reason ``spec`` cannot be trained in this run; empty when it can."""
    try:
        from nas_core.models import validate_full
    except ImportError:  # models not importable (no torch): the Choices are still checked
        return validate(spec, ctx.choices, ctx.input_shape[-1])
    return validate_full(spec, ctx.choices, ctx.input_shape, ctx.n_classes)
