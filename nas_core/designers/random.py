"""The random designer: valid random specs that the run has not seen (a baseline for every engine).

Owns :class:`RandomDesigner`. Deterministic for a (seed, iteration) pair. In
super-network runs it samples sub-networks of the super-network.
"""

from __future__ import annotations

import random

from nas_core.designers.base import DesignContext
from nas_core.designers.validation import spec_problems, supernet_spec
from nas_core.records import Proposal
from nas_core.space import sample

# How many samples to draw per wanted proposal before giving up (a tiny or exhausted space).
_TRIES_PER_PROPOSAL = 200


class RandomDesigner:
    """Uniform random specs inside the Choices that build under the caps and are not in the run."""

    name = "random"
    deterministic = True

    def propose(self, ctx: DesignContext) -> list[Proposal]:
        """Up to ``ctx.n`` random, valid, new specs (fewer only when the space seems exhausted)."""
        rng = random.Random(f"random:{ctx.seed}:{ctx.iteration}")
        known = set(ctx.known_keys)
        out: list[Proposal] = []
        for _ in range(ctx.n * _TRIES_PER_PROPOSAL):
            if len(out) >= ctx.n:
                break
            spec = (supernet_spec(rng) if ctx.evaluation == "supernet" else None) or sample(ctx.choices, rng)
            if spec.key in known or spec_problems(spec, ctx):
                continue
            known.add(spec.key)
            out.append(Proposal(spec=spec, origin=self.name, rationale="uniform random sample of the Choices"))
        return out
