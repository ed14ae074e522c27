"""Every registered implementation passes its contract suite (:mod:`nas_core.testing`).

Designers: one :class:`DesignerTestCase` per engine in the registry (a plug-in engine registered
before collection is picked up too). Spaces: the CNN Template, the super-network, NAS-Bench-Graph
(cora) and the plug-in example of :mod:`nas_core.linas`. Executors: local here; Ray's contract class runs
in ``tests/test_ray_executor.py`` on that module's Ray instance (one Ray start for all the Ray tests).
Also the registry's own rules: one list of names for the run config, the CLI and the Setup page,
and one random designer for the app and the benchmark.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from nas_core import engines, studio
from nas_core.cli import build_parser
from nas_core.designers.llm.client import LlmSettings
from nas_core.designers.validation import spec_problems
from nas_core.executors import LocalExecutor
from nas_core.linas import Gene, SearchSpace
from nas_core.linas import engines as linas_engines
from nas_core.linas.space import CnnSpace, Objectives
from nas_core.linas.tabular import TabularBenchmark
from nas_core.records import Proposal
from nas_core.runconfig import RunConfig, RunConfigError
from nas_core.session import make_designer
from nas_core.space import Choices, sample
from nas_core.supernet.space import SupernetSpace
from nas_core.testing import DesignerTestCase, ExecutorTestCase, SearchSpaceTestCase, base_context
from tests.llm_server import FakeLlmServer, reply

# ---------------------------------------------------------------------------------------- designers


def _objectives(name: str) -> tuple[str, ...]:
    info = engines.get_engine(name)
    return ("accuracy", "params") if info.max_objectives == 2 else ("accuracy", "unfairness", "params")


def _llm_script(n: int = 40) -> list:
    """Valid, distinct answers of the kind a real model gives (a spec inside prose)."""
    rng, ctx, out, seen = random.Random(7), base_context(), [], set()
    while len(out) < n:
        s = sample(ctx.choices, rng)
        if s.key in seen or spec_problems(s, ctx):
            continue
        seen.add(s.key)
        out.append(reply("Here you go:\n" + json.dumps({"architecture": s.to_dict(), "rationale": "r"})))
    return out


class _RegisteredDesigner(DesignerTestCase):
    engine = ""
    api_key: str | None = None

    def config(self) -> RunConfig:
        return RunConfig(engine=self.engine, objectives=_objectives(self.engine))

    def make_designer(self):
        return engines.make_designer(self.config(), api_key=self.api_key)

    def context_overrides(self):
        return {"objectives": _objectives(self.engine)}


class _LlmDesigner(_RegisteredDesigner):
    """The LLM engine against a scripted OpenAI-compatible server."""

    api_key = "k"
    server: FakeLlmServer | None = None

    @classmethod
    def setup_class(cls) -> None:
        cls.server = FakeLlmServer(_llm_script()).__enter__()

    @classmethod
    def teardown_class(cls) -> None:
        cls.server.__exit__(None, None, None)

    def config(self) -> RunConfig:
        llm = LlmSettings(base_url=self.server.base_url, model="fake", timeout_s=5, max_retries=3)
        return RunConfig(engine=self.engine, llm=llm)


for _name in engines.engine_names():
    _base = _LlmDesigner if _name == "llm" else _RegisteredDesigner
    globals()[f"TestDesigner_{_name}"] = type(f"TestDesigner_{_name}", (_base,), {"engine": _name})


def test_every_registered_engine_has_a_contract_class():
    classes = {n[len("TestDesigner_"):] for n in globals() if n.startswith("TestDesigner_")}
    assert classes == set(engines.engine_names()) and len(classes) >= 5


# ------------------------------------------------------------------------------------------- spaces


class TestCnnSpace(SearchSpaceTestCase):
    def make_space(self):
        return CnnSpace(Choices.from_dict({"max_blocks": 5, "max_params": 2_000_000}), (3, 32, 32), 3)


class TestSupernetSpace(SearchSpaceTestCase):
    def make_space(self):
        return SupernetSpace(n_classes=3, image_size=32)


class TestNasBenchGraphSpace(SearchSpaceTestCase):
    def make_space(self):
        return TabularBenchmark("cora")


class Mine(SearchSpace):
    """The plug-in example of nas_core.linas's docstring, as written there."""

    genes = (Gene("width", 8), Gene("depth", 6), Gene("act", 3, "cat"))

    def encode(self, c):
        return np.array(c)

    def decode(self, x):
        return tuple(int(v) for v in x)

    def key(self, c):
        return "-".join(map(str, c))


class TestPluginExampleSpace(SearchSpaceTestCase):
    def make_space(self):
        return Mine()


def test_a_broken_space_fails_the_suite():
    class Broken(Mine):
        def key(self, c):  # ignores the last gene: two configs share a key, ids (default) agree...
            return "-".join(map(str, c[:2]))

        def ids(self, X):  # ...but these ids do not
            return np.array(["-".join(map(str, x)) for x in np.asarray(X)], dtype=object)

    class Case(SearchSpaceTestCase):
        n_samples = 60

        def make_space(self):
            return Broken()

    with pytest.raises(AssertionError, match="ids and keys disagree"):
        Case().test_ids_agree_with_keys()


# ---------------------------------------------------------------------------------------- executors


class TestLocalExecutor(ExecutorTestCase):
    def make_executor(self):
        return LocalExecutor(concurrency=2)


# ----------------------------------------------------------------------------------------- registry


def test_one_list_of_engine_names_for_config_cli_and_setup_page():
    names = engines.engine_names()
    assert set(names) >= {"llm", "heuristic", "random", "linas", "nsga2"}
    action = next(a for a in build_parser()._subparsers._group_actions[0].choices["search"]._actions
                  if "--engine" in a.option_strings)
    assert tuple(action.choices) == names
    assert list(studio.engine_labels()) == list(names)
    assert set(linas_engines.ENGINES) <= set(names)  # the store-free engines share the names
    for name in names:
        assert RunConfig(engine=name, objectives=_objectives(name)).engine == name
    with pytest.raises(RunConfigError, match="engine 'gpt' is unknown; use one of heuristic, llm"):
        RunConfig(engine="gpt")


def test_a_plugin_engine_reaches_run_config_cli_setup_page_and_session():
    class Fixed:
        name = "fixed"

        def __init__(self, seed):
            self.seed = seed

        def propose(self, ctx):
            return []

    engines.register_engine("fixed", "Always nothing", lambda config, **_: Fixed(config.seed))
    try:
        assert "fixed" in engines.engine_names() and studio.engine_labels()["fixed"] == "Always nothing"
        assert not studio.engine_proposes_batches("fixed")
        cfg = RunConfig(engine="fixed", seed=4, objectives=("accuracy",))
        assert make_designer(cfg).seed == 4
        assert build_parser().parse_args(["search", "--db", "x.db", "--engine", "fixed"]).engine == "fixed"
        with pytest.raises(engines.EngineError, match="already registered"):
            engines.register_engine("fixed", "again", lambda config, **_: Fixed(0))
    finally:
        engines.unregister_engine("fixed")
    with pytest.raises(RunConfigError, match="engine 'fixed' is unknown"):
        RunConfig(engine="fixed")


@pytest.mark.parametrize("kw, message", [
    ({"name": "", "label": "x", "factory": lambda c: None}, "letters, digits"),
    ({"name": "ok", "label": "x", "factory": "not callable"}, "must be callable"),
    ({"name": "ok", "label": "x", "factory": lambda c: None, "min_objectives": 3, "max_objectives": 2},
     "is empty"),
])
def test_malformed_registrations_are_refused(kw, message):
    with pytest.raises(engines.EngineError, match=message):
        engines.register_engine(**kw)
    assert "ok" not in engines.engine_names()


def test_engine_objective_ranges_give_the_run_config_messages():
    with pytest.raises(RunConfigError, match="the linas engine needs at least two objectives"):
        RunConfig(engine="linas", objectives=("accuracy",))
    with pytest.raises(RunConfigError, match="nsga2 engine takes exactly two objectives, got 3 .*use the linas"):
        RunConfig(engine="nsga2", objectives=("accuracy", "unfairness", "params"))


def test_app_and_benchmark_random_search_draw_the_same_way():
    from nas_core.designers.random import RandomDesigner
    from nas_core.linas.designers import RandomSearchDesigner

    designer = engines.make_designer(RunConfig(engine="random", seed=2))
    assert type(designer) is RandomSearchDesigner and RandomDesigner is RandomSearchDesigner
    ctx = base_context(n=5, seed=2, iteration=3, choices=Choices.from_dict({"max_blocks": 5}))
    props = designer.propose(ctx)
    space = CnnSpace(ctx.choices, ctx.input_shape, ctx.n_classes)
    objectives = Objectives.create(ctx.objectives)
    # the benchmark's engine, same space and same generator seed: the app's picks are its draws
    batch = linas_engines.RandomEngine().propose(space, objectives, (), 2 * ctx.n, np.random.default_rng([2, 3]))
    drawn = [space.decode(g).key for g in batch.genes]
    assert len(props) == 5 and [p.spec.key for p in props] == [k for k in drawn if k in {p.spec.key for p in props}]
    assert {p.spec.key for p in props} <= set(drawn)


def test_random_search_runs_with_a_single_objective():
    designer = engines.make_designer(RunConfig(engine="random", objectives=("accuracy",)))
    props = designer.propose(base_context(n=3, objectives=("accuracy",)))
    assert len(props) == 3 and all(not spec_problems(p.spec, base_context()) for p in props)


def test_a_broken_designer_fails_the_suite():
    class Repeats:
        """Proposes the run's first measured candidate again."""

        name = "repeats"

        def propose(self, ctx):
            return [Proposal(spec=c.spec, origin=self.name) for c in ctx.history[:1]]

    class Case(DesignerTestCase):
        def make_designer(self):
            return Repeats()

    with pytest.raises(AssertionError, match="already has"):
        Case().test_never_proposes_what_the_run_has()
    with pytest.raises(AssertionError, match="empty history"):
        Case().test_proposes_on_an_empty_history()
