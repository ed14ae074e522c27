"""One check every designer and the session apply to a spec before it may become a candidate.

Owns :func:`spec_problems`: the Choices (``nas_core.space.validate``), the run's
resolution, and, through ``nas_core.models.validate_full``, the parameter/MAC caps
and shapes that only a built network reveals; in super-network runs also whether
the spec is a sub-network (``nas_core.supernet.space.validate_subnet_spec``).
Every check always runs: there is no fallback that skips the caps.
"""

from __future__ import annotations

import random

from nas_core.designers.base import DesignContext
from nas_core.models import validate_full
from nas_core.space import ArchSpec
from nas_core.supernet.space import (
    SupernetSpaceConfig,
    sample_config,
    smallest,
    to_arch_spec,
    validate_subnet_spec,
)


def spec_problems(spec: ArchSpec, ctx: DesignContext) -> list[str]:
    """Every reason ``spec`` cannot be trained (or, in super-network runs, measured) in this run."""
    problems = validate_full(spec, ctx.choices, ctx.input_shape, ctx.n_classes)
    if not problems and ctx.evaluation == "supernet":
        problems = supernet_problems(spec)
    return problems


def supernet_problems(spec: ArchSpec) -> list[str]:
    """Why ``spec`` is not a sub-network of the super-network (empty when it is)."""
    return validate_subnet_spec(spec)


def supernet_spec(rng: random.Random | None = None) -> ArchSpec:
    """A sub-network as a spec: the smallest one, or a random one when ``rng`` is given."""
    space = SupernetSpaceConfig()
    config = smallest(space) if rng is None else sample_config(space, rng)
    return to_arch_spec(config, space)
