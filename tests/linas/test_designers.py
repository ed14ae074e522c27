"""The session designers on a fake history (no training): contract, dedup, predictions, bad input."""

import random

import pytest

from nas_core import models
from nas_core.designers.base import DesignContext, Designer
from nas_core.linas import LinasSettings, SearchError
from nas_core.linas.designers import LinasDesigner, Nsga2Designer, RandomSearchDesigner
from nas_core.records import Candidate, FairnessReport, HardwareMetrics, Metrics
from nas_core.space import Choices, sample, validate

CHOICES = Choices()
SHAPE = (3, 32, 32)
OBJ = ("accuracy", "unfairness")
FAST = LinasSettings(population=20, inner_evaluations=600)


def _metrics(spec):
    # a smooth fake: wider and deeper -> more accurate and less fair
    width = sum(b.out_channels for b in spec.blocks) / 1000
    acc = 0.5 + 0.4 * min(width, 1.0)
    unfair = 0.02 + 0.05 * len(spec.blocks) / CHOICES.max_blocks + 0.01 * spec.stem.kernel
    fr = FairnessReport(overall_accuracy=acc, n=100, unfairness=unfair, eodd=0.1, eopp1=0.1, eopp2=0.1)
    hw = HardwareMetrics(params=int(width * 1e6), macs=1000, size_mb=1.0, latency_image_s=0.001 * width)
    return Metrics(0.5, acc, 0.6, acc, acc, acc, (), fr, hw)


def _history(n_iter, per_iter, seed=0):
    rng = random.Random(seed)
    out, keys = [], set()
    while len(out) < n_iter * per_iter:
        spec = sample(CHOICES, rng)
        if validate(spec, CHOICES, SHAPE[1]) or spec.key in keys:
            continue
        keys.add(spec.key)
        i = len(out)
        out.append(
            Candidate(
                id=i,
                run_id=1,
                iteration=i // per_iter,
                spec=spec,
                key=spec.key,
                origin="random",
                status="done",
                metrics=_metrics(spec),
            )
        )
    return tuple(out)


def _ctx(history=(), n=6, objectives=OBJ, constraints=(), iteration=None):
    it = iteration if iteration is not None else (max((c.iteration for c in history), default=-1) + 1)
    return DesignContext(
        choices=CHOICES,
        input_shape=SHAPE,
        n_classes=8,
        history=history,
        n=n,
        iteration=it,
        seed=3,
        objectives=objectives,
        constraints=constraints,
    )


@pytest.mark.parametrize("designer", [LinasDesigner(FAST), Nsga2Designer(), RandomSearchDesigner()])
def test_first_iteration_is_a_random_population_of_n(designer):
    assert isinstance(designer, Designer)
    props = designer.propose(_ctx(n=7))
    assert len(props) == 7
    assert len({p.spec.key for p in props}) == 7
    assert all(not validate(p.spec, CHOICES, SHAPE[1]) for p in props)
    assert all(p.origin == designer.name for p in props)


@pytest.mark.parametrize("designer", [LinasDesigner(FAST), Nsga2Designer(), RandomSearchDesigner()])
def test_never_repeats_a_known_candidate_and_proposes_exactly_n(designer):
    hist = _history(3, 8)
    # a rejected proposal without metrics is known too
    rejected = Candidate(
        id=99,
        run_id=1,
        iteration=2,
        spec=sample(CHOICES, random.Random(7)),
        key="",
        origin="human",
        status="rejected",
    )
    rejected = Candidate(**{**rejected.__dict__, "key": rejected.spec.key})
    ctx = _ctx(hist + (rejected,), n=9)
    props = designer.propose(ctx)
    assert len(props) == 9
    keys = [p.spec.key for p in props]
    assert len(set(keys)) == 9 and not set(keys) & ctx.known_keys
    assert all(not validate(p.spec, CHOICES, SHAPE[1]) for p in props)


def test_linas_predicts_every_objective_and_reports_predictor_quality():
    d = LinasDesigner(FAST)
    seen = []
    d.on_progress = seen.append
    props = d.propose(_ctx(_history(3, 8), n=5))
    # objectives, plus the params/MACs caps as constraints (exact values) when the model builder is there
    assert all(set(OBJ) <= dict(p.predicted).keys() for p in props)
    assert len(props) == 5
    rep = d.last_report
    assert rep is not None and rep.iteration == 3 and rep.n_train == 24 and rep.n_test == 8
    assert set(OBJ) <= {s.objective for s in rep.scores}
    assert "out-of-sample tau" in props[0].rationale
    assert seen and seen[-1] == 1.0 and all(0 <= v <= 1 for v in seen)


def test_three_objectives_go_to_unsga3_in_linas_but_not_to_nsga2():
    ctx = _ctx(_history(2, 8), n=4, objectives=("accuracy", "unfairness", "latency"))
    assert len(LinasDesigner(FAST).propose(ctx)) == 4
    with pytest.raises(SearchError, match="nsga2 cannot take 3 objectives"):
        Nsga2Designer().propose(ctx)


@pytest.mark.parametrize(
    "objectives, constraints, message",
    [
        (("accuracy",), (), "at least two objectives"),
        (("accuracy", "bogus"), (), "unknown objective"),
        (OBJ, (("watts", "<=", 1.0),), "unknown metric 'watts'"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(objectives, constraints, message):
    with pytest.raises(SearchError, match=message):
        LinasDesigner(FAST).propose(_ctx(n=3, objectives=objectives, constraints=constraints))


def test_params_are_computed_exactly_not_predicted():
    d = LinasDesigner(LinasSettings(population=12, inner_evaluations=240))
    props = d.propose(_ctx(_history(2, 8), n=2, objectives=("accuracy", "params")))
    assert len(props) == 2
    for p in props:
        built = models.build_model(p.spec, SHAPE, 8)
        assert dict(p.predicted)["params"] == models.count_params(built)
    # params is still predicted inside the inner search (building 20,000 models is too slow), then
    # the shortlist is re-ranked on exact values
    assert {s.objective for s in d.last_report.scores} == {"accuracy", "params", "macs"}  # macs: the cap


def test_proposals_respect_the_parameter_cap():
    tight = Choices(max_params=60_000, max_macs=None)
    ctx = DesignContext(choices=tight, input_shape=SHAPE, n_classes=8, n=6, seed=1, objectives=OBJ)
    props = RandomSearchDesigner().propose(ctx)
    assert len(props) == 6
    assert all(models.spec_costs(p.spec, SHAPE, 8)[0] <= 60_000 for p in props)
