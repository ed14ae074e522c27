"""The Jobs view: every queued / running / failed / cancelled job with progress, times and Cancel."""

from __future__ import annotations

import pathlib

import pytest
from streamlit.testing.v1 import AppTest

from nas_core import studio

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_eta_extrapolates_progress_and_prefers_the_jobs_own_estimate():
    assert studio.job_eta(0.25, 60.0) == pytest.approx(180.0)  # a quarter in a minute: three more
    assert studio.job_eta(0.0, 60.0) is None  # no progress, no guess
    assert studio.job_eta(None, 60.0) is None
    assert studio.job_eta(1.0, 60.0) == 0.0
    assert studio.job_eta(0.5, 10.0, reported_eta_s=99.0) == 99.0


def test_duration_text():
    assert studio.duration_text(None) == "—"
    assert studio.duration_text(42.4) == "42 s"
    assert studio.duration_text(185) == "3 min 05 s"
    assert studio.duration_text(7800) == "2 h 10 min"


@pytest.fixture
def jobs_store(tmp_path, monkeypatch, tiny_dataset):
    """A run with one running evaluation (40 % done), one queued, one failed and one super-network job."""
    monkeypatch.setenv("EQUINAS_DB", str(tmp_path / "app.db"))
    monkeypatch.setenv("EQUINAS_DEFAULT_DATASET", str(tiny_dataset))
    monkeypatch.setenv("EQUINAS_FAST", "1")
    store = studio.open_store()
    run_id = studio.create_run(store, studio.default_config(name="jobs", engine="random", per_iteration=3,
                                                            population=3))
    sess = studio.session(store, run_id)
    cands = sess.propose("test")
    assert len(cands) == 3
    for c in cands:
        sess.approve(c.id, "test")
    running = store.claim_job("w1")
    store.set_progress(running.id, {"epoch": 2, "max_epochs": 5}, "w1")
    failing = store.claim_job("w1")
    store.fail_job(failing.id, "CUDA out of memory: use a smaller batch", "w1")
    sn = studio.queue_supernet_training(store, sess.config, 2)
    yield {"store": store, "run_id": run_id, "running": running.id, "failed": failing.id, "supernet": sn,
           "queued": [j.id for j in store.list_jobs(status="queued") if j.kind == "evaluate"][0]}
    store.close()


def test_jobs_frame_lists_every_kind_with_progress_and_errors(jobs_store):
    df = studio.jobs_frame(jobs_store["store"]).set_index("job")
    row = df.loc[jobs_store["running"]]
    assert row["status"] == "running" and row["progress"] == pytest.approx(0.4)
    assert row["eta_s"] is not None and row["eta_s"] >= 0 and row["cancellable"]
    assert "out of memory" in df.loc[jobs_store["failed"], "error"]
    assert df.loc[jobs_store["supernet"], "kind"] == "super-network training"
    assert df.loc[jobs_store["queued"], "status"] == "queued"


def test_jobs_page_shows_jobs_and_cancels_a_queued_one(jobs_store):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/jobs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    text = " ".join(m.value for m in at.markdown)
    assert f"Job {jobs_store['running']}" in text and "super-network training" in text
    failed = at.dataframe[0].value
    assert "out of memory" in " ".join(failed["Error"])
    at.button(key=f"cancel_job_{jobs_store['queued']}").click().run()
    assert not at.exception
    store = studio.open_store()
    assert store.get_job(jobs_store["queued"]).status == "cancelled"
    at.button(key=f"cancel_job_{jobs_store['running']}").click().run()
    assert store.get_job(jobs_store["running"]).cancel_requested
    assert any("cancelled" in s.value for s in at.success)


def test_jobs_page_polls_fast_only_while_jobs_are_open(jobs_store, monkeypatch):
    """Every 3 s while something is queued or running; every 30 s when nothing is (an open Jobs page of an
    idle app used to rerun every 3 s for as long as it stayed open)."""
    import ui.live

    assert (ui.live.LIVE_S, ui.live.IDLE_S) == (3, 30)
    assert ui.live._live_jobs is not ui.live._idle_jobs
    drawn: list[str] = []
    live, idle = ui.live._live_jobs, ui.live._idle_jobs
    monkeypatch.setattr(ui.live, "_live_jobs", lambda draw: (drawn.append("live"), live(draw)))
    monkeypatch.setattr(ui.live, "_idle_jobs", lambda draw: (drawn.append("idle"), idle(draw)))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/jobs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert drawn == ["live"]
    store = jobs_store["store"]
    for job_id in studio.open_job_ids(store):  # cancel the queued ones, end the running one
        job = store.cancel_job(job_id, "test")
        if job.status == "running":
            store.finish_cancelled(job_id, "w1")
    assert studio.open_job_ids(store) == ()
    drawn.clear()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert drawn == ["idle"]
    assert f"Job {jobs_store['failed']}" not in " ".join(m.value for m in at.markdown)  # ended: in the table
    assert "out of memory" in " ".join(at.dataframe[0].value["Error"])


def test_the_jobs_fragments_hand_over_to_a_full_rerun_when_jobs_start_or_end(monkeypatch):
    import ui.live

    class Rerun(Exception):
        pass

    def rerun(scope="app"):
        raise Rerun(scope)

    monkeypatch.setattr(ui.live.st, "rerun", rerun)
    ui.live._live_jobs.__wrapped__(lambda: True)  # still open: redrawn in place
    ui.live._idle_jobs.__wrapped__(lambda: False)  # still nothing open
    with pytest.raises(Rerun, match="app"):
        ui.live._live_jobs.__wrapped__(lambda: False)  # the last one ended: poll slowly
    with pytest.raises(Rerun, match="app"):
        ui.live._idle_jobs.__wrapped__(lambda: True)  # a job was queued: poll fast
