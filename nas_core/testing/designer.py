"""The contract every Designer passes: :class:`DesignerTestCase`, one test method per rule.

Rules: a designer has a ``name`` and satisfies the :class:`~nas_core.designers.base.Designer`
protocol; it proposes something on an empty history (the first iteration); it returns at most
``ctx.n`` proposals; each is a :class:`~nas_core.records.Proposal` naming its origin, valid under
the run's Choices and caps (:func:`~nas_core.designers.validation.spec_problems`); none is already
in the run and no two are alike; it reads a history with measured candidates; it moves on once its
own proposals are in the run; when it claims ``deterministic = True`` the same context gives the
same proposals.

A subclass implements :meth:`DesignerTestCase.make_designer` (a fresh designer per call) and may
override :meth:`DesignerTestCase.context_overrides` (e.g. two objectives for NSGA-II). Proposals
of each context are computed once per class (designers such as LINAS fit predictors per call).
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from nas_core.designers.base import DesignContext, Designer
from nas_core.designers.validation import spec_problems
from nas_core.records import Candidate, Proposal
from nas_core.space import Choices, default_spec, mutate
from nas_core.testing.records import make_candidate, make_metrics

INPUT_SHAPE = (3, 32, 32)


def base_context(**kw: Any) -> DesignContext:
    """A small run: default Choices with tight caps (5 blocks, 2 M parameters), 32 px images, 3 classes."""
    choices = kw.pop("choices", None) or Choices.from_dict({"max_blocks": 5, "max_params": 2_000_000})
    return DesignContext(choices=choices, input_shape=INPUT_SHAPE, n_classes=3, **kw)


def measured_history(n: int = 4, seed: int = 0) -> tuple[Candidate, ...]:
    """``n`` measured candidates around the default spec, plus one rejected proposal."""
    rng = random.Random(seed)
    ctx = base_context()
    specs = [default_spec()]
    while len(specs) < n + 1:
        s = mutate(specs[-1], ctx.choices, rng)
        if s.key not in {x.key for x in specs} and not spec_problems(s, ctx):
            specs.append(s)
    cands = [
        make_candidate(i + 1, make_metrics(acc=0.6 + 0.03 * i, unfairness=0.1 - 0.01 * i, params=50_000 + i,
                                           train_acc=0.9, val_acc=0.6 + 0.03 * i,
                                           groups={"sex:male": 0.7, "sex:female": 0.5}),
                       spec=s, iteration=i)
        for i, s in enumerate(specs[:n])
    ]
    cands.append(make_candidate(n + 1, None, spec=specs[n], status="rejected", iteration=n))
    return tuple(cands)


def proposal_problems(props: Any, ctx: DesignContext) -> list[str]:
    """Every way a returned list breaks the contract (empty when it keeps it)."""
    if not isinstance(props, list):
        return [f"propose returned {type(props).__name__}, expected a list"]
    out = []
    if len(props) > ctx.n:
        out.append(f"{len(props)} proposals for n={ctx.n}")
    keys = []
    for p in props:
        if not isinstance(p, Proposal):
            out.append(f"a proposal is a {type(p).__name__}, expected a Proposal")
            continue
        keys.append(p.spec.key)
        if not p.origin:
            out.append("a proposal does not name its origin")
        out += [f"{p.spec.key}: {problem}" for problem in spec_problems(p.spec, ctx)]
        if p.spec.key in ctx.known_keys:
            out.append(f"proposed {p.spec.key}, which the run already has")
    if len(set(keys)) != len(keys):
        out.append("duplicate proposals in one round")
    return out


def check_proposals(props: Any, ctx: DesignContext) -> None:
    """Assert that ``props`` keeps the contract for ``ctx``."""
    problems = proposal_problems(props, ctx)
    assert not problems, "; ".join(problems)


class DesignerTestCase:
    """Subclass as ``TestMyDesigner(DesignerTestCase)`` and implement :meth:`make_designer`."""

    def make_designer(self) -> Designer:
        """A fresh designer (called once per context)."""
        raise NotImplementedError("implement make_designer() to return a new designer")

    def context_overrides(self) -> dict[str, Any]:
        """Fields every context of the suite gets (e.g. ``{"objectives": ("accuracy", "params")}``)."""
        return {}

    # --- the contexts and their proposals -------------------------------------------------
    def context(self, which: str) -> DesignContext:
        """One of the suite's contexts: ``empty``, ``measured``, ``own`` (after its own), ``one``."""
        kw = self.context_overrides()
        if which == "empty":
            return base_context(n=2, seed=3, **kw)
        if which == "measured":
            return base_context(n=3, seed=3, iteration=5, history=measured_history(), **kw)
        if which == "own":
            ctx, props = self.proposals("measured")
            own = tuple(make_candidate(100 + i, None, spec=p.spec, status="proposed", iteration=6)
                        for i, p in enumerate(props))
            return base_context(n=2, seed=3, iteration=6, history=ctx.history + own, **kw)
        if which == "one":
            return base_context(n=1, seed=1, iteration=1, history=measured_history(2, seed=1), **kw)
        raise ValueError(f"unknown context {which!r}")

    def proposals(self, which: str) -> tuple[DesignContext, list[Proposal]]:
        """The context ``which`` and what a fresh designer proposed for it (computed once per class)."""
        cls = type(self)
        cache = cls.__dict__.get("_proposals_cache")
        if cache is None:
            cache = {}
            cls._proposals_cache = cache
        if which not in cache:
            ctx = self.context(which)
            cache[which] = (ctx, self.make_designer().propose(ctx))
        return cache[which]

    def all_proposals(self) -> list[tuple[DesignContext, list[Proposal]]]:
        """Every context with its proposals."""
        return [self.proposals(w) for w in ("empty", "measured", "own", "one")]

    # --- one method per rule ----------------------------------------------------------------
    def test_has_a_name_and_is_a_designer(self) -> None:
        d = self.make_designer()
        assert isinstance(d, Designer), f"{type(d).__name__} lacks name or propose()"
        assert isinstance(d.name, str) and d.name, "a designer has a non-empty name"

    def test_proposes_on_an_empty_history(self) -> None:
        ctx, props = self.proposals("empty")
        assert props, "a designer proposes something on an empty history"

    def test_returns_a_list_of_at_most_n_proposals(self) -> None:
        for ctx, props in self.all_proposals():
            assert isinstance(props, list), f"propose returned {type(props).__name__}"
            assert len(props) <= ctx.n, f"{len(props)} proposals for n={ctx.n}"
            assert all(isinstance(p, Proposal) for p in props)

    def test_every_proposal_names_its_origin(self) -> None:
        for _, props in self.all_proposals():
            assert all(p.origin for p in props), "a proposal names its origin"

    def test_every_proposal_is_valid_under_the_choices_and_caps(self) -> None:
        for ctx, props in self.all_proposals():
            for p in props:
                problems = spec_problems(p.spec, ctx)
                assert not problems, f"{p.spec.key}: {problems}"

    def test_never_proposes_what_the_run_has(self) -> None:
        for ctx, props in self.all_proposals():
            again = [p.spec.key for p in props if p.spec.key in ctx.known_keys]
            assert not again, f"proposed architectures the run already has: {again}"

    def test_no_two_proposals_alike(self) -> None:
        for _, props in self.all_proposals():
            keys = [p.spec.key for p in props]
            assert len(set(keys)) == len(keys), "duplicate proposals in one round"

    def test_reads_a_measured_history(self) -> None:
        ctx, props = self.proposals("measured")
        check_proposals(props, ctx)
        assert props, "a designer proposes something after measured candidates"

    def test_moves_on_after_its_own_proposals(self) -> None:
        ctx, props = self.proposals("own")
        check_proposals(props, ctx)

    def test_same_context_same_proposals_when_deterministic(self) -> None:
        if not getattr(self.make_designer(), "deterministic", False):
            pytest.skip("the designer does not claim deterministic = True")
        ctx = self.context("one")
        a = [p.spec.key for p in self.make_designer().propose(ctx)]
        b = [p.spec.key for p in self.make_designer().propose(ctx)]
        assert a == b, "a deterministic designer gave different proposals for the same context"
