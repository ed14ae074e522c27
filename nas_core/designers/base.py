"""The Designer protocol: the one interface every engine implements.

A designer reads a :class:`DesignContext` (the run's Choices, everything measured
so far, the human's feedback, the priorities) and returns proposals. It never
touches the store, never trains, never blocks on a person: the session
(:mod:`nas_core.session`) owns the loop and the approval gate. Every designer
passes the shared contract suite :class:`nas_core.testing.DesignerTestCase`; register a new
one with :func:`nas_core.engines.register_engine`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from nas_core.records import Candidate, Proposal
from nas_core.selection import Priorities
from nas_core.settings import Env
from nas_core.space import Choices


@dataclass(frozen=True)
class DesignContext:
    """Everything a designer may read to propose the next candidates."""

    choices: Choices  # the run's search space
    input_shape: tuple[int, int, int]  # (channels, height, width) of training images
    n_classes: int
    history: tuple[Candidate, ...] = ()  # every candidate of the run so far, any status
    n: int = 1  # how many proposals are wanted this iteration
    iteration: int = 0  # 0-based iteration number
    seed: int = 0  # run seed; designers derive their randomness from (seed, iteration)
    priorities: Priorities = field(default_factory=Priorities)
    objectives: tuple[str, ...] = ("accuracy", "unfairness", "params")  # multi-objective engines
    constraints: tuple[tuple[str, str, float], ...] = ()  # (metric, "<=" or ">=", bound)
    env: Env = field(default_factory=Env)
    feedback: tuple[str, ...] = ()  # human feedback (rejection reasons, notes), oldest first
    dataset_summary: str = ""  # one paragraph about the data set, for prompts
    evaluation: str = "scratch"  # scratch | supernet: in supernet runs a proposal must be a sub-network

    @property
    def measured(self) -> tuple[Candidate, ...]:
        """Candidates with metrics, oldest first."""
        return tuple(c for c in self.history if c.metrics is not None)

    @property
    def known_keys(self) -> frozenset[str]:
        """Canonical keys already in the run (a designer must not propose them again)."""
        return frozenset(c.key for c in self.history)


@runtime_checkable
class Designer(Protocol):
    """Proposes candidates. Implementations are small classes with a ``name``."""

    name: str

    def propose(self, ctx: DesignContext) -> list[Proposal]:
        """Return up to ``ctx.n`` proposals, valid under ``ctx.choices``, not in ``ctx.known_keys``.

        Raises:
            nas_core.errors.UserError: when it cannot propose (e.g. the LLM endpoint failed
                after its retries); the message says why and what to do.
        """
        ...
