"""The session's multi-objective designers: LINAS, NSGA-II on real evaluations, random search.

Owns :class:`LinasDesigner`, :class:`Nsga2Designer` and :class:`RandomSearchDesigner`, which
implement the Designer protocol (:mod:`nas_core.designers.base`) on the CNN Template through
:class:`~nas_core.linas.space.CnnSpace`. Each call reads the run's history, turns the measured
candidates into :class:`~nas_core.linas.engines.Observation` records (iteration = batch),
and asks the shared engine for exactly ``ctx.n`` new specs (never one already in the run).

Objectives come from ``ctx.objectives`` (names of :data:`nas_core.records.OBJECTIVES`, with
their directions), constraints from ``ctx.constraints``. The first iteration (nothing measured)
is a random population of ``ctx.n``. LINAS puts its predicted values in ``Proposal.predicted``
and keeps the iteration's :class:`~nas_core.linas.predictors.PredictorReport` in
``last_report`` (``last_report.to_extra()`` is ready for ``Candidate.extra``). ``on_progress``,
when set, receives 0..1 during the inner search (for ``st.progress``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from nas_core.designers.base import DesignContext
from nas_core.linas.engines import (
    Batch,
    LinasEngine,
    LinasSettings,
    Nsga2Engine,
    Nsga2Settings,
    Observation,
    RandomEngine,
)
from nas_core.linas.predictors import PredictorReport
from nas_core.linas.space import CnnSpace, Constraint, Objectives, SearchError
from nas_core.records import OBJECTIVES, Proposal
from nas_core.space import SpecError

log = logging.getLogger(__name__)


def objectives_of(ctx: DesignContext, algorithm: str = "auto") -> Objectives:
    """The validated objectives and constraints of a design context.

    Raises:
        SearchError: fewer than two objectives, unknown names, a constraint on an unknown
            metric, or an algorithm that cannot take that many objectives.
    """
    return Objectives.create(
        ctx.objectives, constraints=ctx.constraints, known=list(OBJECTIVES), algorithm=algorithm
    )


def _space_of(ctx: DesignContext) -> Any:
    """The search space of the run: the CNN Template, or the super-network's sub-networks."""
    if getattr(ctx, "evaluation", "scratch") == "supernet":
        from nas_core.supernet.space import SubnetSpecSpace

        return SubnetSpecSpace(n_classes=ctx.n_classes, image_size=ctx.input_shape[-1])
    return CnnSpace(ctx.choices, ctx.input_shape, ctx.n_classes)


def observations_of(ctx: DesignContext, space: CnnSpace, objectives: Objectives) -> tuple[Observation, ...]:
    """Measured candidates as observations; those missing a needed metric are left out."""
    out = []
    for c in ctx.measured:
        vals = {m: c.metrics.value(m) for m in objectives.metrics}
        if any(v is None for v in vals.values()):
            continue
        try:
            genes = space.encode(c.spec)
        except SpecError:
            # an edited spec outside this run's Choices cannot be encoded; it stays known by key
            continue
        out.append(
            Observation(
                key=c.key, genes=tuple(int(g) for g in genes), values=tuple(vals.items()), batch=c.iteration
            )
        )
    return tuple(out)


class _EngineDesigner:
    """Shared plumbing: context -> space/objectives/history -> engine batch -> proposals."""

    name = "engine"
    algorithm = "auto"

    def __init__(self) -> None:
        self.on_progress: Callable[[float], None] | None = None
        self.last_report: PredictorReport | None = None

    def _engine(self):
        raise NotImplementedError

    def _run(self, engine, space, objectives, history, n, rng, exclude) -> Batch:
        return engine.propose(space, objectives, history, n, rng, exclude, self.on_progress)

    def propose(self, ctx: DesignContext) -> list[Proposal]:
        """Up to ``ctx.n`` new, valid proposals (fewer only if the space is exhausted)."""
        objectives = self._objectives(ctx)
        if ctx.n < 1:
            return []
        space = _space_of(ctx)
        caps = []
        if space.exact_names:
            # the run's caps are constraints, so the search steers clear of models it cannot propose
            if ctx.choices.max_params is not None:
                caps.append(Constraint("params", "<=", float(ctx.choices.max_params)))
            if ctx.choices.max_macs is not None:
                caps.append(Constraint("macs", "<=", float(ctx.choices.max_macs)))
        objectives = dataclasses.replace(objectives, constraints=objectives.constraints + tuple(caps))
        history = observations_of(ctx, space, objectives)
        exclude = set()
        for c in ctx.history:
            try:
                exclude.add(space.ids(space.encode(c.spec)[None, :])[0])
            except SpecError:
                continue
        rng = np.random.default_rng([int(ctx.seed), int(ctx.iteration)])
        known = set(ctx.known_keys)
        out: list[Proposal] = []
        self.last_report = None
        # a spec over the run's parameter/MAC cap is invalid (DESIGN.md): drop it and ask again;
        # after two engine rounds the rest is topped up at random (cheap), so a tight cap cannot stall
        for round_ in range(50):
            engine = self._engine() if round_ < 2 else RandomEngine()
            # engine rounds ask for spares (the next-best picks) so caps rarely force random ones
            need = ctx.n - len(out)
            ask = 2 * need if round_ < 2 and space.exact_names else need
            batch = self._run(engine, space, objectives, history, ask, rng, frozenset(exclude))
            if self.last_report is None:
                self.last_report = batch.report
            rationale = self._rationale(batch)
            for i, genes in enumerate(batch.genes):
                if len(out) >= ctx.n:
                    break
                spec = space.decode(genes)
                exclude.add(space.ids(np.asarray(genes)[None, :])[0])
                if spec.key in known or space.cap_errors(spec):
                    continue
                known.add(spec.key)
                predicted = batch.predicted[i] if batch.predicted else ()
                out.append(Proposal(spec=spec, origin=self.name, rationale=rationale, predicted=predicted))
            if len(out) >= ctx.n or batch.exhausted:
                break
        return out

    def _rationale(self, batch: Batch) -> str:
        return ""

    def _objectives(self, ctx: DesignContext) -> Objectives:
        return objectives_of(ctx, self.algorithm)


class RandomSearchDesigner(_EngineDesigner):
    """Random search without replacement: the one random designer of the app and the benchmark.

    Draws with :class:`~nas_core.linas.engines.RandomEngine` (uniform over the space's valid gene
    rows, as ``benchmarks/bench_search.py`` does) from a generator seeded with (seed, iteration).
    It reads no objective, so runs with fewer than two objectives use it too.
    """

    name = "random"
    deterministic = True

    def _objectives(self, ctx: DesignContext) -> Objectives:
        if len(ctx.objectives) >= 2:
            return objectives_of(ctx, self.algorithm)
        names = tuple(ctx.objectives)
        return Objectives(
            names=names,
            directions=tuple(OBJECTIVES[n][0] for n in names),
            constraints=tuple(Constraint(str(m), str(op), float(b)) for m, op, b in ctx.constraints),
        )

    def _engine(self):
        return RandomEngine()

    def _rationale(self, batch: Batch) -> str:
        return "uniformly random architecture not measured before"


class Nsga2Designer(_EngineDesigner):
    """NSGA-II on real evaluations: each iteration proposes one generation's offspring.

    Args:
        settings: population, crossover and mutation (seed 001 Table 5 defaults).
    """

    name = "nsga2"
    algorithm = "nsga2"

    def __init__(self, settings: Nsga2Settings | None = None):
        super().__init__()
        self.settings = settings or Nsga2Settings()

    def propose(self, ctx: DesignContext) -> list[Proposal]:
        """See :meth:`_EngineDesigner.propose`; NSGA-II takes exactly two objectives."""
        if len(ctx.objectives) > 2:
            raise SearchError(
                f"nsga2 cannot take {len(ctx.objectives)} objectives; choose two, or use the linas engine "
                "(U-NSGA-III inside) for three or more"
            )
        return super().propose(ctx)

    def _engine(self):
        return Nsga2Engine(self.settings)

    def _rationale(self, batch: Batch) -> str:
        return "NSGA-II offspring of the best measured architectures (rank and crowding)"


class LinasDesigner(_EngineDesigner):
    """LINAS: predictors fitted on the history, an inner pymoo search, the best predicted new specs.

    Args:
        settings: inner population, predictor evaluations, algorithm, predictors (seed defaults).
    """

    name = "linas"

    def __init__(self, settings: LinasSettings | None = None):
        super().__init__()
        self.settings = settings or LinasSettings()
        self.algorithm = self.settings.algorithm

    def _engine(self):
        return LinasEngine(self.settings)

    def _run(self, engine, space, objectives, history, n, rng, exclude) -> Batch:
        if not isinstance(engine, LinasEngine):
            return super()._run(engine, space, objectives, history, n, rng, exclude)
        iteration = max((o.batch for o in history), default=-1) + 1
        return engine.propose(
            space, objectives, history, n, rng, exclude, self.on_progress, iteration=iteration
        )

    def _rationale(self, batch: Batch) -> str:
        if batch.report is None:
            return "random initial population (too few measured candidates to fit predictors)"
        return "best predicted by LINAS; " + batch.report.summary()
