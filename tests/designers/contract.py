"""The contract every Designer passes (Optuna-style: one suite, every implementation).

Use :func:`designer_contract_checks` from a parametrized test: it runs every
check against a factory that builds a fresh designer. The checks:

- the designer has a ``name`` and satisfies the ``Designer`` protocol;
- it returns at most ``ctx.n`` proposals, each a :class:`Proposal` whose spec is
  valid under the run's Choices and caps, none in ``ctx.known_keys``, no two alike;
- it handles an empty history (the first iteration);
- it reads a history with measured candidates (and avoids all of their keys);
- when it claims ``deterministic = True``, the same context gives the same proposals.
"""

from __future__ import annotations

from collections.abc import Callable

from nas_core.designers.base import DesignContext, Designer
from nas_core.designers.validation import spec_problems
from nas_core.records import Proposal
from nas_core.space import Choices, default_spec, mutate
from tests.designers.fakes import make_candidate, make_metrics

INPUT_SHAPE = (3, 32, 32)


def _base_context(**kw) -> DesignContext:
    """A small run: default Choices (tight caps), 32 px images, 3 classes."""
    choices = kw.pop("choices", None) or Choices.from_dict({"max_blocks": 5, "max_params": 2_000_000})
    return DesignContext(choices=choices, input_shape=INPUT_SHAPE, n_classes=3, **kw)


base_context = _base_context


def measured_history(n: int = 4, seed: int = 0):
    """``n`` measured candidates around the default spec, plus one rejected proposal."""
    import random

    rng = random.Random(seed)
    ch = base_context().choices
    specs = [default_spec()]
    while len(specs) < n + 1:
        s = mutate(specs[-1], ch, rng)
        if s.key not in {x.key for x in specs} and not spec_problems(s, base_context()):
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


def check_proposals(props: list[Proposal], ctx: DesignContext) -> None:
    """Everything a returned list must satisfy."""
    assert isinstance(props, list)
    assert len(props) <= ctx.n, f"{len(props)} proposals for n={ctx.n}"
    keys = [p.spec.key for p in props]
    assert len(set(keys)) == len(keys), "duplicate proposals in one round"
    for p in props:
        assert isinstance(p, Proposal)
        assert p.origin, "a proposal names its origin"
        problems = spec_problems(p.spec, ctx)
        assert not problems, problems
        assert p.spec.key not in ctx.known_keys, "proposed an architecture the run already has"


def designer_contract_checks(make: Callable[[], object], **ctx_kw) -> None:
    """Run every contract check against designers built by ``make`` (``ctx_kw`` goes into every context)."""

    def base_context(**kw) -> DesignContext:
        return _base_context(**{**ctx_kw, **kw})

    d = make()
    assert isinstance(d, Designer) and isinstance(d.name, str) and d.name

    empty = base_context(n=2, seed=3)
    props = make().propose(empty)
    check_proposals(props, empty)
    assert props, "a designer proposes something on an empty history"

    hist = base_context(n=3, seed=3, iteration=5, history=measured_history())
    props = make().propose(hist)
    check_proposals(props, hist)

    # Known keys: everything the designer just proposed is now in the run; it must move on.
    more = tuple(
        make_candidate(100 + i, None, spec=p.spec, status="proposed", iteration=6) for i, p in enumerate(props)
    )
    hist2 = base_context(n=2, seed=3, iteration=6, history=hist.history + more)
    check_proposals(make().propose(hist2), hist2)

    one = base_context(n=1, seed=1, iteration=1, history=measured_history(2, seed=1))
    check_proposals(make().propose(one), one)

    if getattr(d, "deterministic", False):
        a = [p.spec.key for p in make().propose(hist)]
        b = [p.spec.key for p in make().propose(hist)]
        assert a == b, "a deterministic designer gave different proposals for the same context"
