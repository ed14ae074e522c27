"""The heuristic designer's rules: each diagnosis leads to the edit a practitioner would make, explained."""

from __future__ import annotations

import dataclasses

from nas_core.designers.heuristic import HeuristicDesigner
from nas_core.designers.random import RandomDesigner
from nas_core.selection import Objective, Priorities
from nas_core.settings import Env
from nas_core.space import default_spec
from tests.designers.contract import base_context, check_proposals
from tests.designers.fakes import make_candidate, make_metrics

SPEC = default_spec()  # conv 32/64/128 with max pools, head dropout 0.2


def hist(**metric_kw):
    return (make_candidate(1, make_metrics(**metric_kw), spec=SPEC),)


def test_first_iteration_proposes_the_default_spec_then_variants():
    ctx = base_context(n=3)
    props = HeuristicDesigner().propose(ctx)
    check_proposals(props, ctx)
    assert props[0].spec == SPEC and "nothing is measured yet" in props[0].rationale
    assert len(props) == 3


def test_weak_group_gets_more_capacity():
    ctx = base_context(history=hist(acc=0.8, groups={"sex:male": 0.85, "sex:female": 0.65}, train_acc=0.82))
    p = HeuristicDesigner().propose(ctx)[0]
    assert "weakest group sex=female" in p.rationale and "widen block 2 from 128 to 160" in p.rationale
    assert p.spec.blocks[2].out_channels == 160


def test_overfitting_gets_dropout():
    ctx = base_context(history=hist(acc=0.7, groups={}, train_acc=0.95, val_acc=0.7))
    p = HeuristicDesigner().propose(ctx)[0]
    assert "overfits" in p.rationale and "raise head dropout from 0.2 to 0.3" in p.rationale
    assert p.spec.head.dropout == 0.3


def test_underfitting_gets_capacity():
    ctx = base_context(history=hist(acc=0.5, groups={}, train_acc=0.5, val_acc=0.5))
    p = HeuristicDesigner().propose(ctx)[0]
    assert "underfits" in p.rationale and p.spec.blocks[2].out_channels == 160


def test_over_latency_budget_goes_depthwise_and_smaller():
    ctx = base_context(n=3, env=Env(latency_budget_s=0.0005),
                       history=hist(acc=0.8, groups={}, train_acc=0.8, latency=0.002))
    props = HeuristicDesigner().propose(ctx)
    assert "over the budget" in props[0].rationale and props[0].spec.blocks[2].type == "dwsep"
    assert "narrow block 2 from 128 to 96" in props[1].rationale
    check_proposals(props, ctx)


def test_params_constraint_counts_as_budget():
    ctx = base_context(constraints=(("params", "<=", 1000.0),),
                       history=hist(acc=0.8, groups={}, train_acc=0.8, params=50_000))
    p = HeuristicDesigner().propose(ctx)[0]
    assert "breaks the constraint params <= 1000" in p.rationale


def test_edits_the_best_by_priorities():
    wide = dataclasses.replace(SPEC, head=dataclasses.replace(SPEC.head, hidden=64))
    history = (make_candidate(1, make_metrics(acc=0.9, groups={}, train_acc=0.9), spec=SPEC),
               make_candidate(2, make_metrics(acc=0.7, groups={}, train_acc=0.7), spec=wide))
    by_acc = HeuristicDesigner().propose(base_context(history=history))[0]
    assert "best candidate #1" in by_acc.rationale
    prio = Priorities(objectives=(Objective("accuracy", weight=1),), mode="weighted")
    worst_first = Priorities(objectives=(Objective("params"),))
    assert "#1" in HeuristicDesigner().propose(base_context(history=history, priorities=prio))[0].rationale
    # equal params -> tie -> oldest (#1); make #2 smaller by params to flip it
    history2 = (history[0], make_candidate(2, make_metrics(acc=0.7, groups={}, params=10, train_acc=0.7), spec=wide))
    p = HeuristicDesigner().propose(base_context(history=history2, priorities=worst_first))[0]
    assert "best candidate #2" in p.rationale


def test_when_every_rule_is_tried_it_explores_deterministically():
    ctx = base_context(n=2, seed=5, iteration=3, history=hist(acc=0.8, groups={}, train_acc=0.8))
    first = HeuristicDesigner().propose(dataclasses.replace(ctx, n=30))
    tried = tuple(make_candidate(10 + i, None, spec=p.spec) for i, p in enumerate(first))
    ctx2 = dataclasses.replace(ctx, history=ctx.history + tried)
    a, b = HeuristicDesigner().propose(ctx2), HeuristicDesigner().propose(ctx2)
    assert [p.spec.key for p in a] == [p.spec.key for p in b] and len(a) == 2
    assert all("seeded random edit" in p.rationale for p in a)
    check_proposals(a, ctx2)


def test_random_designer_varies_with_iteration_and_respects_n():
    a = RandomDesigner().propose(base_context(n=4, iteration=0))
    b = RandomDesigner().propose(base_context(n=4, iteration=1))
    assert len(a) == 4 and {p.spec.key for p in a} != {p.spec.key for p in b}
    check_proposals(a, base_context(n=4))


def test_supernet_runs_get_sub_networks_from_heuristic_and_random():
    from nas_core.supernet.space import choices_for_supernet, validate_subnet_spec

    for designer in (HeuristicDesigner(), RandomDesigner()):
        ctx = base_context(n=3, evaluation="supernet", choices=choices_for_supernet())
        props = designer.propose(ctx)
        assert props and all(validate_subnet_spec(p.spec) == [] for p in props), designer.name
        check_proposals(props, ctx)
