"""AppTest for every page: renders with an empty store and a populated one; main actions work."""

from __future__ import annotations

import pathlib
import random

import pytest
from streamlit.testing.v1 import AppTest

from nas_core import studio
from nas_core.records import Proposal
from nas_core.space import Choices, default_spec, mutate
from tests.factories import make_metrics

PAGES = ["pages/home.py", "pages/data.py", "pages/setup.py", "pages/search.py", "pages/results.py",
         "pages/export.py"]


@pytest.fixture
def env(tmp_path, monkeypatch, tiny_dataset):
    monkeypatch.setenv("EQUINAS_DB", str(tmp_path / "app.db"))
    monkeypatch.setenv("EQUINAS_DEFAULT_DATASET", str(tiny_dataset))
    monkeypatch.setenv("EQUINAS_UPLOADS_DIR", str(tmp_path / "uploads"))
    monkeypatch.setenv("EQUINAS_FAST", "1")
    return tmp_path


ROOT = pathlib.Path(__file__).resolve().parents[2]


def _run(page: str, **query) -> AppTest:
    """Run ``page`` inside the real navigation of app.py (so st.switch_page works)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    if page != "pages/home.py":
        at.switch_page(page).run()
    return at


def _no_error(at: AppTest) -> None:
    """Neither an exception nor an st.error on the page (a page that shows an error is broken)."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.fixture
def populated(env):
    """A heuristic run with measured candidates at different costs, one waiting proposal."""
    store = studio.open_store()
    run_id = studio.create_run(store, studio.default_config(name="populated"))
    rng = random.Random(0)
    sess = studio.session(store, run_id)
    spec = default_spec()
    for i in range(5):
        spec = mutate(spec, Choices.default(), rng)
        c = store.add_candidate(run_id, 1, Proposal(spec=spec, origin="heuristic", rationale=f"edit {i}"),
                                status="done")
        store.set_metrics(c.id, make_metrics(acc=0.6 + 0.03 * i, unfairness=0.08 - 0.01 * i,
                                             params=10_000 * (i + 1)))
    store.start_iteration(run_id)
    waiting = sess.propose("test")
    store.close()
    return {"run_id": run_id, "waiting": waiting[0].id}


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_with_an_empty_store(env, page):
    at = _run(page)
    _no_error(at)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_with_a_populated_store(populated, page):
    at = _run(page, run=str(populated["run_id"]))
    _no_error(at)


def test_home_lists_runs_and_worker_status(populated):
    at = _run("pages/home.py")
    df = at.dataframe[0].value
    assert "populated" in set(df["name"])
    assert any("worker" in w.value for w in at.sidebar.warning)


def test_search_shows_the_waiting_proposal_and_approve_queues_it(populated):
    cid = populated["waiting"]
    at = _run("pages/search.py", run=str(populated["run_id"]))
    assert at.button(key=f"approve_{cid}")
    at.button(key=f"approve_{cid}").click().run()
    _no_error(at)
    store = studio.open_store()
    assert store.get_candidate(cid).status == "queued"
    assert len(store.list_jobs(candidate_id=cid)) == 1


def test_search_reject_needs_a_reason_and_stores_it(populated):
    cid = populated["waiting"]
    at = _run("pages/search.py", run=str(populated["run_id"]))
    at.button(key=f"reject_{cid}").click().run()
    assert any("Write a reason" in e.value for e in at.error)
    at.text_area(key=f"reason_{cid}").input("too many parameters for the phone").run()
    at.button(key=f"reject_{cid}").click().run()
    _no_error(at)
    store = studio.open_store()
    assert store.get_candidate(cid).status == "rejected"
    assert "too many parameters for the phone" in studio.session(store, populated["run_id"]).next_prompt().text


def test_search_edit_refuses_an_invalid_spec(populated):
    cid = populated["waiting"]
    at = _run("pages/search.py", run=str(populated["run_id"]))
    at.text_area(key=f"edit_text_{cid}").input('{"blocks": [{"type": "conv", "kernel": 4}]}').run()
    assert any("kernel" in e.value for e in at.error)
    assert at.button(key=f"edit_{cid}").disabled


def test_results_shows_leaderboard_and_pareto(populated):
    at = _run("pages/results.py", run=str(populated["run_id"]))
    _no_error(at)
    lb = at.dataframe[0].value
    assert len(lb) == 5
    assert at.get("plotly_chart")


def test_setup_creates_a_run(env):
    at = _run("pages/setup.py")
    at.text_input(key="cfg_name").input("from setup").run()
    at.button(key="create_run").click().run()
    _no_error(at)
    store = studio.open_store()
    assert [r.name for r in store.list_runs()] == ["from setup"]


def test_setup_sets_the_llm_runs_constrained_decoding(env):
    at = _run("pages/setup.py")
    assert at.selectbox(key="cfg_decoding").value == "auto"
    assert at.selectbox(key="cfg_decoding").options[0].startswith("auto")
    at.text_input(key="cfg_name").input("llm json_object").run()
    at.selectbox(key="cfg_engine").set_value("llm").run()
    at.selectbox(key="cfg_decoding").set_value("json_object").run()
    at.button(key="create_run").click().run()
    _no_error(at)
    store = studio.open_store()
    (run,) = store.list_runs()
    assert run.config["engine"] == "llm" and run.config["llm"]["decoding"] == "json_object"


def test_setup_sets_the_training_arithmetic(env):
    at = _run("pages/setup.py")
    assert at.selectbox(key="cfg_precision").value == "fp32"
    at.text_input(key="cfg_name").input("bf16 run").run()
    at.selectbox(key="cfg_precision").set_value("auto").run()
    at.button(key="create_run").click().run()
    _no_error(at)
    (run,) = studio.open_store().list_runs()
    assert run.config["train"]["precision"] == "auto"


def test_setup_reports_bad_choices_json(env):
    at = _run("pages/setup.py")
    at.text_area(key="cfg_choices").input("{not json").run()
    assert any("not valid JSON" in e.value for e in at.error)


def test_export_offers_a_model_card(populated):
    at = _run("pages/export.py", run=str(populated["run_id"]))
    at.button(key="export_prepare").click().run()
    _no_error(at)
    assert at.get("download_button")


def test_home_demo_run_creates_a_proposal(env):
    at = _run("pages/home.py")
    at.button(key="demo_run").click().run()
    store = studio.open_store()
    runs = store.list_runs()
    assert len(runs) == 1 and runs[0].engine == "heuristic"
    assert [c.status for c in store.list_candidates(runs[0].id)] == ["proposed"]


def test_setup_queues_a_super_network_training(env):
    at = _run("pages/setup.py")
    at.radio(key="cfg_eval").set_value("supernet").run()
    _no_error(at)
    assert any("No super-network trained yet" in i.value for i in at.info)
    at.number_input(key="sn_epochs").set_value(2).run()
    at.button(key="sn_train").click().run()
    _no_error(at)
    store = studio.open_store()
    (job,) = store.list_jobs(status="queued")
    assert job.kind == "supernet_train" and job.payload["settings"]["max_epochs"] == 2


def test_search_approve_all_queues_the_rest_and_says_why_one_was_not(env):
    """Another tab approves one of three proposals after this page was drawn: Approve all (whose
    list is the one the page showed) queues the other two and names the one it could not queue."""
    store = studio.open_store()
    run_id = studio.create_run(store, studio.default_config(name="approve all"))
    it = store.start_iteration(run_id).number
    rng = random.Random(1)
    spec, ids = default_spec(), []
    for i in range(3):
        spec = mutate(spec, Choices.default(), rng)
        ids.append(store.add_candidate(run_id, it, Proposal(spec=spec, origin="heuristic", rationale=f"p{i}")).id)
    store.close()
    at = _run("pages/search.py", run=str(run_id))
    assert at.button(key="approve_all").label == "Approve all 3"
    other = studio.open_store()
    studio.session(other, run_id).approve(ids[0], "other tab")
    other.close()
    at.button(key="approve_all").click().run()
    assert not at.exception
    texts = [w.value for w in at.warning] + [e.value for e in at.error]
    assert any("2 candidate(s) queued for evaluation; 1 could not be" in t for t in texts), texts
    assert any(f"#{ids[0]}" in t and "already approved" in t for t in texts), texts
    store = studio.open_store()
    assert [store.get_candidate(c).status for c in ids] == ["queued"] * 3
    assert sum(len(store.list_jobs(candidate_id=c)) for c in ids) == 3  # one job each, none twice
