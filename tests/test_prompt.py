"""The FL-NAS prompt: defaults follow Algorithm 2, placeholders fill, unknown ones are refused before sending."""

from __future__ import annotations

import pytest

from nas_core.designers.base import DesignContext
from nas_core.designers.llm.prompt import (
    ANSWER_FORMAT,
    PLACEHOLDERS,
    PromptError,
    PromptParts,
    build_context,
    placeholders_in,
    render,
    render_for,
)
from nas_core.runconfig import RunConfig, RunConfigError, parse_constraint
from nas_core.settings import Env
from nas_core.space import Choices, default_spec
from tests.designers.fakes import make_candidate, make_metrics


def ctx(**kw) -> DesignContext:
    return DesignContext(choices=Choices.default(), input_shape=(3, 64, 64), n_classes=8, **kw)


def test_default_prompt_follows_algorithm_2():
    p = render_for(ctx(dataset_summary="ISIC 2019, 8 classes", env=Env(latency_budget_s=0.01)))
    assert p.system == "You are an expert in the field of neural architecture search."
    assert p.user.startswith("You need to follow the format in Template to generate a DNN architecture")
    assert "process the images of this data set for an image classification task: ISIC 2019, 8 classes" in p.user
    assert "improve the fairness without decreasing the accuracy" in p.user
    assert "latency budget=0.01 s/image" in p.user
    assert "blocks[].kernel: [3, 5, 7]" in p.user and "number of blocks: 2 to 8" in p.user
    assert "none yet; this is the first design" in p.user and "not measured yet" in p.user
    assert p.user.endswith(ANSWER_FORMAT)
    assert p.messages()[0]["role"] == "system" and p.text.startswith("[system]\n")
    assert not [n for n in placeholders_in(p.user) if n in PLACEHOLDERS]  # everything was filled


def test_best_spec_metrics_history_and_feedback_are_filled():
    spec2 = default_spec().__class__(stem=default_spec().stem, blocks=default_spec().blocks[:2],
                                     head=default_spec().head)
    hist = (
        make_candidate(1, make_metrics(acc=0.6, unfairness=0.1), spec=default_spec()),
        make_candidate(2, make_metrics(acc=0.61, unfairness=0.02), spec=spec2),
        make_candidate(3, None, status="rejected", spec=default_spec().__class__()),
    )
    c = build_context(ctx(history=hist, feedback=("rejected #3: too small",)), history_k=2)
    assert c.best_id == 2  # fairer within the accuracy guard
    assert '"out_channels": 64' in c.best_spec and len(spec2.blocks) == 2
    assert c.best_metrics == hist[1].metrics.to_text() and "Unfairness Score: 0.0200" in c.best_metrics
    assert c.history.count("\n- #") == 1 and "#1" not in c.history and "#3 (heuristic, rejected)" in c.history
    assert c.feedback == "- rejected #3: too small"


def test_custom_parts_literal_braces_and_escapes():
    parts = PromptParts(app="Role for {dataset}", task='Example {"a": 1} and {{template}}', const="{priorities}")
    p = render(parts, build_context(ctx(dataset_summary="DS")))
    assert p.system == "Role for DS"
    assert 'Example {"a": 1} and {template}' in p.user
    assert "Objectives in order of priority: 1. unfairness" in p.user


def test_unknown_placeholders_listed_with_the_known_ones():
    parts = PromptParts(app="{role}", const="{best_metrics} {histroy}")
    with pytest.raises(PromptError) as err:
        render(parts, build_context(ctx()))
    msg = str(err.value)
    assert "{role} in PromptApp" in msg and "{histroy} in PromptConst" in msg
    assert "{best_metrics}" in msg.split("Known placeholders:")[1]  # the known list
    with pytest.raises(PromptError, match="unknown part"):
        PromptParts.from_dict({"system": "x"})


def test_run_config_round_trip_and_messages():
    cfg = RunConfig(engine="linas", objectives=("accuracy", "eodd"), constraints=(("params", "<=", 1e6),))
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(RunConfigError, match="engine 'gpt' is unknown; use one of heuristic, llm"):
        RunConfig(engine="gpt")
    with pytest.raises(RunConfigError, match="needs at least two objectives"):
        RunConfig(engine="nsga2", objectives=("accuracy",))
    with pytest.raises(RunConfigError, match="unknown field"):
        RunConfig.from_dict({"engin": "llm"})
    with pytest.raises(RunConfigError, match="constraint metric 'acc' is unknown"):
        RunConfig(constraints=(("acc", ">=", 0.5),))
    assert parse_constraint("params<=5e5") == ("params", "<=", 500000.0)
    with pytest.raises(RunConfigError, match="must look like"):
        parse_constraint("params 5")
    with pytest.raises(Exception, match="must not contain secrets"):
        RunConfig.from_dict({"llm": {"model": "m", "api_key": "sk-x"}})
