import re

from nas_core.records import Metrics
from nas_core.report import CardContext, model_card_html, model_card_markdown
from tests.factories import make_candidate, make_metrics

CTX = CardContext(run_name="demo", dataset_name="synthetic ISIC", dataset_summary="4,000 images.",
                  training="adam, lr 0.001", env="cpu, 2 threads, batch 2")


def test_markdown_card_has_every_section_and_the_numbers():
    m = make_metrics(acc=0.72, unfairness=0.04)
    md = model_card_markdown(make_candidate(metrics=m), CTX)
    for heading in ("## Architecture", "## Data", "## Accuracy per group", "## Fairness", "## Hardware"):
        assert heading in md
    assert "72.0%" in md and "Unfairness 0.0400 [0.0200, 0.0800]" in md
    assert "| age | young | 12 |" in md and "too few samples to trust" in md
    assert "excluded from fairness metrics" in md  # the unknown group
    assert "super-network estimate" not in md.lower()


def test_estimate_is_labelled():
    md = model_card_markdown(make_candidate(metrics=make_metrics(estimate=True)), CTX)
    assert "Super-network estimate" in md


def test_html_card_is_self_contained_and_escaped():
    c = make_candidate(metrics=make_metrics())
    c = type(c)(**{**c.__dict__, "rationale": "<script>alert(1)</script>"})
    page = model_card_html(c, CTX)
    assert "<svg" in page and "<table>" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert not re.search(r"(src|href)=\"?http", page)


def test_card_needs_metrics():
    import pytest

    with pytest.raises(ValueError, match="no metrics yet"):
        model_card_markdown(make_candidate(metrics=None, status="queued"), CTX)


def test_metrics_round_trip_through_dict():
    m = make_metrics()
    assert Metrics.from_dict(m.to_dict()) == m
