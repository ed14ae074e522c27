"""Results for clinicians: class-mix table, per-class recall, honest baseline states, iteration plot."""

from __future__ import annotations

import pathlib
import random

import pytest
from streamlit.testing.v1 import AppTest

from nas_core import studio
from nas_core.records import Proposal
from nas_core.space import Choices, default_spec, mutate
from tests.factories import make_metrics

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def run(tmp_path, monkeypatch, tiny_dataset):
    monkeypatch.setenv("EQUINAS_DB", str(tmp_path / "app.db"))
    monkeypatch.setenv("EQUINAS_DEFAULT_DATASET", str(tiny_dataset))
    monkeypatch.setenv("EQUINAS_FAST", "1")
    store = studio.open_store()
    run_id = studio.create_run(store, studio.default_config(name="clinic"))
    spec = default_spec()
    rng = random.Random(0)
    for i in range(3):
        spec = mutate(spec, Choices.default(), rng)
        c = store.add_candidate(run_id, 1, Proposal(spec=spec, origin="heuristic", rationale="x"), status="done")
        store.set_metrics(c.id, make_metrics(acc=0.6 + 0.05 * i, unfairness=0.05))
    yield {"store": store, "run_id": run_id}
    store.close()


def _results(run_id: int) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["run"] = str(run_id)
    at.run()
    at.switch_page("pages/results.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_results_show_the_class_mix_split_per_group(run):
    at = _results(run["run_id"])
    frames = [d.value for d in at.dataframe]
    mix = [f for f in frames if "model_gap" in f.columns]
    assert mix, "no class-mix table"
    assert {"balanced_accuracy", "expected_from_class_mix", "class_mix_effect"} <= set(mix[0].columns)
    assert any("Class mix or model" in s.value for s in at.subheader)
    assert any("Over the search" in s.value for s in at.subheader)


def test_queued_and_cancelled_baselines_are_shown_honestly(run):
    store, run_id = run["store"], run["run_id"]
    sess = studio.session(store, run_id)
    baselines = sess.ensure_baselines("test")
    assert baselines
    job = store.list_jobs(candidate_id=baselines[0].id)[-1]
    store.cancel_job(job.id, "test")
    at = _results(run_id)
    infos = " ".join(i.value for i in at.info)
    assert "have not been trained" not in infos
    assert "queued" in infos
    assert any(f"{baselines[0].baseline} was cancelled" in w.value for w in at.warning)


def test_iteration_frame_tracks_the_best_so_far(run):
    df = studio.iteration_frame(run["store"], run["run_id"], "accuracy")
    assert list(df["evaluation"]) == [1, 2, 3]
    assert list(df["best so far"]) == sorted(df["best so far"])
    assert set(df["kind"]) == {"measured"}


def test_notes_on_the_run_and_a_candidate_are_kept_and_never_prompted(run):
    store, run_id = run["store"], run["run_id"]
    cid = store.list_candidates(run_id)[0].id
    at = _results(run_id)
    at.text_area(key="note_text").input("old-age gap looks like class mix").run()
    at.button(key="add_note").click().run()
    at.selectbox(key="note_on").set_value(cid).run()
    at.text_area(key="note_text").input("check this one's BCC recall").run()
    at.button(key="add_note").click().run()
    assert not at.exception
    fresh = studio.open_store()
    notes = fresh.list_notes(run_id)
    assert [(n.candidate_id, n.text) for n in notes] == [(None, "old-age gap looks like class mix"),
                                                        (cid, "check this one's BCC recall")]
    assert "BCC recall" not in " ".join(studio.session(fresh, run_id).feedback())
    at.button(key="add_note").click().run()  # empty note: a message, nothing stored
    assert any("empty" in e.value for e in at.error)
    assert len(fresh.list_notes(run_id)) == 2
