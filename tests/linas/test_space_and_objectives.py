"""Encoding, canonical ids, validity and the bad-input checks of the plug-in API."""

import random

import numpy as np
import pytest

from nas_core.linas import CnnSpace, Objectives, SearchError, run_search
from nas_core.space import Choices, sample
from tests.linas.synthetic import DIRS, GridSource, GridSpace


def test_cnn_space_round_trip_and_canonical_ids():
    choices = Choices()
    space = CnnSpace(choices, (3, 32, 32), 8)
    assert space.n_var == choices.n_genes
    rng = random.Random(0)
    for _ in range(20):
        spec = sample(choices, rng)
        x = space.encode(spec)
        assert space.decode(x) == spec
        assert space.key(space.decode(x)) == spec.key
        # scrambling inactive genes (slots past the depth) keeps the id and the key
        y = x.copy()
        depth = choices.min_blocks + x[0]
        if depth < choices.max_blocks:
            start = 1 + 3 + depth * 10
            y[start:] = np.minimum(y[start:] + 1, space.upper[start:])
            y[-2:] = x[-2:]  # the head genes are active
            assert space.ids(y[None, :])[0] == space.ids(x[None, :])[0]
            assert space.decode(y).key == spec.key


def test_cnn_space_validity_matches_validate():
    from nas_core.space import validate

    choices = Choices()
    space = CnnSpace(choices, (3, 8, 8), 4)
    X = space.random_genes(np.random.default_rng(1), 300)
    mask = space.is_valid(X)
    expected = np.array([not validate(space.decode(x), choices, 8) for x in X])
    assert mask.tolist() == expected.tolist()
    assert 0 < mask.sum() < len(X)  # both kinds occur at 8 px


def test_features_one_hot_categorical_and_scaled_ordinal():
    space = GridSpace()
    F = space.features(np.array([[5, 0, 3, 2]]))
    # a, b, c scaled to [0, 1]; d one-hot over its 3 values
    assert F.tolist() == [[1.0, 0.0, 1.0, 0.0, 0.0, 1.0]]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"names": ["error"]}, "at least two objectives"),
        ({"names": ["error", "nope"]}, "unknown objective"),
        ({"names": ["error", "cost"], "constraints": [("watts", "<=", 3)]}, "unknown metric 'watts'"),
        ({"names": ["error", "cost", "latency"], "algorithm": "nsga2"}, "nsga2 cannot take 3 objectives"),
        ({"names": ["error", "cost"], "constraints": [("cost", "<", 3)]}, "operator"),
    ],
)
def test_bad_objectives_are_refused_with_a_clear_message(kwargs, message):
    with pytest.raises(SearchError, match=message):
        Objectives.create(directions=DIRS, known=list(DIRS), **kwargs)


def test_budget_below_population_refused_before_anything_runs():
    source = GridSource()
    with pytest.raises(SearchError, match="smaller than the initial population"):
        run_search(
            GridSpace(),
            source,
            "linas",
            budget=5,
            population=10,
            seed=0,
            objectives=["error", "cost"],
            directions=DIRS,
        )
    assert source.calls == 0


def test_known_metric_directions_come_from_records():
    obj = Objectives.create(["accuracy", "params"])
    assert obj.directions == ("max", "min")
    assert obj.to_min(np.array([[0.9, 100.0]])).tolist() == [[-0.9, 100.0]]


def test_the_package_docstring_example_runs(capsys, monkeypatch):
    import nas_core.linas as linas
    from nas_core.linas import engines

    # same code path, a smaller inner search so the test stays quick
    real = engines.make_engine
    monkeypatch.setattr(engines, "make_engine", lambda name: real(name, inner_evaluations=1000))

    block = linas.__doc__.split("::\n\n", 1)[1]
    code = "\n".join(line[4:] for line in block.splitlines() if line.startswith("    ") or not line.strip())
    exec(compile(code, "nas_core.linas docstring", "exec"), {})
    out = capsys.readouterr().out
    assert out.startswith("120 ")  # the whole budget, on the user's own space and objectives
