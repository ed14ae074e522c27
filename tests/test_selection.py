"""GetBestMetrics, ranking and Pareto helpers on constructed candidates (ties, tolerances, missing metrics)."""

from __future__ import annotations

import dataclasses

import pytest

from nas_core.errors import UserError
from nas_core.selection import (
    Objective,
    Priorities,
    best_candidate,
    candidate_front,
    hypervolume_points,
    hypervolume_scale,
    non_dominated,
    pareto_front,
    rank_candidates,
    weighted_scores,
)
from tests.designers.fakes import make_candidate, make_metrics


def cand(cid, acc=0.7, unf=0.05, params=100_000, **kw):
    return make_candidate(cid, make_metrics(acc, unf, params, **kw))


def test_no_measured_candidate_gives_none():
    assert best_candidate([]) is None
    assert best_candidate([make_candidate(1, None)]) is None


def test_paper_default_prefers_fairer_within_accuracy_guard():
    # 2 is fairer and loses only 1 accuracy point (guard 2 points) -> wins.
    a, b = cand(1, acc=0.80, unf=0.10), cand(2, acc=0.79, unf=0.02)
    assert best_candidate([a, b]).id == 2


def test_accuracy_guard_blocks_trivial_fair_model():
    # 2 is perfectly fair but 30 points worse: the guard removes it.
    a, b = cand(1, acc=0.80, unf=0.10), cand(2, acc=0.50, unf=0.0)
    assert best_candidate([a, b]).id == 1


def test_tolerance_makes_ties_and_next_objective_decides():
    # unfairness differs by 0.003 < 0.005 tolerance -> tie; accuracy within 0.01 -> tie; params decide.
    a = cand(1, acc=0.800, unf=0.020, params=500_000)
    b = cand(2, acc=0.795, unf=0.023, params=100_000)
    assert best_candidate([a, b]).id == 2
    # without tolerance unfairness alone decides
    strict = Priorities(objectives=(Objective("unfairness"), Objective("accuracy"), Objective("params")))
    assert best_candidate([a, b], strict).id == 1


def test_exact_tie_goes_to_oldest():
    a, b = cand(5), cand(3)
    assert best_candidate([a, b]).id == 3


def test_raw_values_break_ties_left_by_tolerances():
    # same params; both within all tolerances; raw unfairness (first objective) decides.
    a, b = cand(1, acc=0.8, unf=0.021), cand(2, acc=0.8, unf=0.020)
    assert best_candidate([a, b]).id == 2


def test_missing_metric_loses_to_known_value_but_is_skipped_when_nobody_has_it():
    a, b = cand(1, acc=0.8, unf=None), cand(2, acc=0.79, unf=0.2)
    assert best_candidate([a, b]).id == 2
    c, d = cand(3, acc=0.8, unf=None), cand(4, acc=0.7, unf=None)
    assert best_candidate([c, d]).id == 3  # unfairness skipped; accuracy guard then accuracy


def test_worst_group_accuracy_objective():
    p = Priorities(objectives=(Objective("worst_group_accuracy"),))
    a = cand(1, acc=0.9, groups={"sex:m": 0.95, "sex:f": 0.60})
    b = cand(2, acc=0.8, groups={"sex:m": 0.80, "sex:f": 0.78})
    assert best_candidate([a, b], p).id == 2


def test_min_objective_latency():
    p = Priorities(objectives=(Objective("latency"),))
    assert best_candidate([cand(1, latency=0.01), cand(2, latency=0.002), cand(3, latency=None)], p).id == 2


def test_weighted_mode_normalizes_and_counts_missing_as_worst():
    p = Priorities(mode="weighted", objectives=(Objective("accuracy", weight=1), Objective("params", weight=1)))
    a = cand(1, acc=0.9, params=1_000_000)  # acc 1, params 0 -> 0.5
    b = cand(2, acc=0.8, params=100_000)  # acc 0.5, params 1 -> 0.75
    c = cand(3, acc=0.7, params=550_000)  # acc 0, params 0.5 -> 0.25
    scores = weighted_scores([a, b, c], p)
    assert scores == pytest.approx({1: 0.5, 2: 0.75, 3: 0.25})
    assert best_candidate([a, b, c], p).id == 2
    assert [x.id for x in rank_candidates([a, b, c], p)] == [2, 1, 3]
    p2 = Priorities(mode="weighted", objectives=(Objective("unfairness"), Objective("accuracy")))
    d, e = cand(4, acc=0.8, unf=None), cand(5, acc=0.8, unf=0.3)
    assert best_candidate([d, e], p2).id == 5


def test_weighted_all_equal_tie_goes_to_oldest():
    p = Priorities(mode="weighted", objectives=(Objective("accuracy"),))
    assert best_candidate([cand(9), cand(4)], p).id == 4


def test_rank_is_permutation_and_starts_with_best():
    cs = [cand(i, acc=0.7 + 0.01 * i, unf=0.1 - 0.01 * i) for i in range(1, 6)] + [make_candidate(9, None)]
    ranked = rank_candidates(cs)
    assert sorted(c.id for c in ranked) == [1, 2, 3, 4, 5]
    assert ranked[0].id == best_candidate(cs).id == 5


def test_bad_priorities_are_user_errors():
    with pytest.raises(UserError, match="unknown objective 'acc'.*accuracy"):
        Objective("acc")
    with pytest.raises(UserError, match="mode"):
        Priorities(mode="fancy")
    with pytest.raises(UserError, match="tolerance"):
        Objective("accuracy", tolerance=-1)
    with pytest.raises(UserError, match="twice"):
        Priorities(objectives=(Objective("accuracy"), Objective("accuracy")))
    with pytest.raises(UserError, match="unknown objective field"):
        Priorities.from_dict({"mode": "ordered", "objectives": [{"name": "accuracy", "tol": 1}]})


def test_priorities_round_trip_and_describe():
    p = Priorities()
    assert Priorities.from_dict(p.to_dict()) == p
    assert Priorities.from_dict({"objectives": ["eodd", "accuracy"]}).objectives[0].name == "eodd"
    text = p.describe()
    assert "1. unfairness (minimize" in text and "3. params" in text


def test_non_dominated_and_front():
    pts = [(0.9, 10), (0.8, 5), (0.8, 12), (0.9, 10), (0.7, None)]
    flags = non_dominated(pts, ["max", "min"])
    assert flags == [True, True, False, True, False]
    assert pareto_front(pts, ["max", "min"]) == [0, 1, 3]
    assert pareto_front([], ["max"]) == []
    with pytest.raises(ValueError):
        non_dominated([(1, 2)], ["max"])


def test_candidate_front():
    cs = [cand(1, acc=0.9, params=10), cand(2, acc=0.8, params=5), cand(3, acc=0.7, params=7)]
    assert [c.id for c in candidate_front(cs, ["accuracy", "params"])] == [1, 2]


def test_rank_limit_returns_the_same_head_as_the_full_ranking():
    import random

    from tests.factories import make_candidate, make_metrics

    rng = random.Random(1)
    cands = [make_candidate(i, make_metrics(acc=rng.random(), unfairness=rng.random() * 0.1,
                                            params=rng.randint(1, 10**6))) for i in range(60)]
    for prio in (Priorities(), Priorities(mode="weighted")):
        full = rank_candidates(cands, prio)
        assert [c.id for c in rank_candidates(cands, prio, limit=3)] == [c.id for c in full[:3]]


def test_non_dominated_equals_the_definition_on_random_points_with_ties_and_gaps():
    import random

    from nas_core.selection import non_dominated

    def brute(pts, dirs):
        rows = [[(-1e300 if v is None else (v if d == "max" else -v)) for v, d in zip(p, dirs)] for p in pts]
        return [not any(all(y >= x for x, y in zip(a, b)) and any(y > x for x, y in zip(a, b))
                        for j, b in enumerate(rows) if j != i) for i, a in enumerate(rows)]

    rng = random.Random(0)
    for k in (2, 3, 4):
        for _ in range(40):
            pts = [[rng.choice([0.1, 0.2, None, rng.random()]) for _ in range(k)] for _ in range(rng.randint(1, 50))]
            dirs = [rng.choice(["max", "min"]) for _ in range(k)]
            assert non_dominated(pts, dirs) == brute(pts, dirs)


def test_hypervolume_scale_is_shared_in_minimization_form_with_a_margin():
    # accuracy (max) and params (min) over two runs' points together
    scale = hypervolume_scale([(0.6, 300.0), (0.8, 100.0), (0.7, 100.0)], ["max", "min"])
    assert scale.signs == (-1.0, 1.0)
    assert scale.ideal == pytest.approx((-0.8, 100.0)) and scale.nadir == pytest.approx((-0.6, 300.0))
    assert scale.ref == pytest.approx((1.1, 1.1))
    assert scale.minimized((0.7, 200)) == pytest.approx((-0.7, 200.0))
    # an objective every point ties on still spans 1 (the tracker refuses a zero span)
    flat = hypervolume_scale([(0.5, 10.0), (0.7, 10.0)], ["max", "min"], margin=0.2)
    assert flat.nadir[1] == 11.0 and flat.ref == pytest.approx((1.2, 1.2))
    assert hypervolume_scale([], ["max", "min"]) is None
    with pytest.raises(ValueError, match="'min' or 'max'"):
        hypervolume_scale([(1.0,)], ["up"])
    with pytest.raises(ValueError, match="2 values"):
        hypervolume_scale([(1.0,)], ["max", "min"])


def test_hypervolume_points_are_measured_searched_candidates_oldest_first():
    base = dataclasses.replace(cand(1, acc=0.9), origin="baseline")
    pts = hypervolume_points([cand(5, acc=0.6, params=50), make_candidate(4, None), base, cand(3, acc=0.7)],
                             ["accuracy", "params"])
    assert pts == [(0.7, 100_000.0), (0.6, 50.0)]
