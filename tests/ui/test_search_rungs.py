"""AppTest: the Search page shows each candidate's rung and its preliminary result; Promote / Stop work;
the Results page shows the seed spread beside the bootstrap interval."""

from __future__ import annotations

import pathlib

import pytest
from streamlit.testing.v1 import AppTest

from nas_core import studio
from nas_core.records import Proposal
from nas_core.rungs import HalvingSettings, Rung
from nas_core.settings import TrainSettings
from nas_core.store import rungs as rows
from nas_core.worker import Worker
from tests.test_rungs import FAKE, spec

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def halving_run(tmp_path, monkeypatch, tiny_dataset):
    monkeypatch.setenv("EQUINAS_DB", str(tmp_path / "app.db"))
    monkeypatch.setenv("EQUINAS_DEFAULT_DATASET", str(tiny_dataset))
    monkeypatch.setenv("EQUINAS_FAST", "1")
    store = studio.open_store()
    cfg = studio.default_config(name="halving", train=TrainSettings(image_size=32, max_epochs=2, n_bootstrap=10),
                                halving=HalvingSettings(rungs=(Rung(1, 32),)))  # 1 epoch: cheaper than the 2
    run_id = studio.create_run(store, cfg)
    sess = studio.session(store, run_id)
    ids = []
    for width in (50, 40):  # the first always continues, the second (worse) is stopped by the pruner
        c = store.add_candidate(run_id, 1, Proposal(spec(width), "heuristic"))
        sess.approve(c.id, "t")
        ids.append(c.id)
    Worker(store.path, poll_s=0.01, heartbeat_s=0.1, stale_after_s=5, handlers=FAKE).run(once=True)
    yield store, run_id, ids
    store.close()


def _search(run_id: int) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["run"] = str(run_id)
    at.run()
    at.switch_page("pages/search.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _rung_table(at: AppTest):
    tables = [d.value for d in at.dataframe if "rank at rung" in d.value.columns]
    assert len(tables) == 1
    return tables[0].set_index("id")


def test_search_page_shows_the_rung_and_the_preliminary_result_and_promote_stop(halving_run):
    store, run_id, (a, b) = halving_run
    at = _search(run_id)
    table = _rung_table(at)
    assert table.loc[b, "result"] == "PRELIMINARY" and table.loc[b, "rung"] == "1/2"
    assert table.loc[b, "state"] == "stopped" and table.loc[b, "rank at rung"] == "2 of 2"
    assert table.loc[b, "fidelity"] == "1 epoch at 32 px"
    assert table.loc[a, "result"] == "final" and table.loc[a, "rung"] == "2/2"
    assert any("Successive halving" in c.value for c in at.caption)
    assert any("**Preliminary**" in m.value and f"#{b}" in m.value for m in at.markdown)
    at.button(key=f"promote_{b}").click().run()
    assert not at.exception
    assert store.get_candidate(b).status == "queued"
    assert rows.list_rungs(store, candidate_id=b)[0].decided_by == "user:app"
    table = _rung_table(at)
    assert table.loc[b, "state"] == "queued" and table.loc[b, "rung"] == "2/2"
    at.button(key=f"stop_{b}").click().run()
    assert not at.exception
    assert store.get_candidate(b).status == "done"
    assert rows.list_rungs(store, candidate_id=b)[0].decision == "stopped"


def test_the_rung_panel_refreshes_itself_only_while_something_is_in_flight(halving_run, monkeypatch):
    """An idle run's panel is drawn once (no rerun every 2 s while the page stays open); once a promoted
    candidate is queued, the panel polls again so that its new rung shows without a click."""
    import ui.rungs

    store, run_id, (_a, b) = halving_run
    drawn: list[str] = []
    live, still = ui.rungs._live_panel, ui.rungs._still_panel
    monkeypatch.setattr(ui.rungs, "_live_panel", lambda rid: (drawn.append("live"), live(rid)))
    monkeypatch.setattr(ui.rungs, "_still_panel", lambda rid: (drawn.append("still"), still(rid)))
    at = _search(run_id)
    assert not studio.session(store, run_id).poll().in_flight
    assert drawn == ["still"], drawn  # nothing queued or running: nothing can move a rung
    assert _rung_table(at).loc[b, "state"] == "stopped"
    drawn.clear()
    at.button(key=f"promote_{b}").click().run()  # AppTest reruns the whole page on a click
    assert not at.exception
    assert list(studio.session(store, run_id).poll().in_flight) == [b]
    assert drawn == ["live"], drawn
    assert _rung_table(at).loc[b, "state"] == "queued"


def test_a_click_in_the_still_panel_that_queues_work_reruns_the_whole_page(halving_run, monkeypatch):
    """In the browser a click in a fragment reruns the fragment alone: after Promote on an idle page the
    panel must hand over to a full rerun, or the promoted rung would never show without another click."""
    import ui.rungs

    store, run_id, (_a, b) = halving_run

    class Rerun(Exception):
        pass

    def rerun(scope="app"):
        raise Rerun(scope)

    monkeypatch.setattr(ui.rungs.st, "rerun", rerun)
    monkeypatch.setattr(ui.rungs, "get_store", lambda: store)
    monkeypatch.setattr(ui.rungs, "_panel", lambda rid: None)
    body = ui.rungs._still_panel.__wrapped__  # the fragment's own code (outside a script run it is not called)
    body(run_id)  # nothing in flight: drawn in place, no rerun
    studio.promote_candidate(store, b, "app")
    with pytest.raises(Rerun, match="app"):
        body(run_id)


def test_results_page_shows_the_seed_spread_and_remeasures(halving_run):
    store, run_id, (a, _b) = halving_run
    studio.remeasure_candidate(store, a, seed=5)
    Worker(store.path, poll_s=0.01, heartbeat_s=0.1, stale_after_s=5, handlers=FAKE).run(once=True)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["run"] = str(run_id)
    at.run()
    at.switch_page("pages/results.py").run()
    assert not at.exception, [e.value for e in at.exception]
    line = [c.value for c in at.caption if c.value.startswith("Seed spread")]
    assert line and "2 initialisation seeds [0, 5]" in line[0] and "Bootstrap interval of Unfairness" in line[0]
    at.button(key=f"remeasure_{a}").click().run()
    assert not at.exception
    assert studio.seed_spread(store, a).pending == 1
    waiting = [c.value for c in at.caption if "queued or running" in c.value]
    assert waiting == ["1 job of this run queued or running (see **Jobs**); this page updates when it ends."]


def test_results_page_polls_only_while_jobs_of_its_run_are_open_and_reruns_when_one_ends(halving_run, monkeypatch):
    """After Re-measure (or Fine-tune) the new result shows by itself: the page watches the run's open jobs and
    reruns whole when one ends. With nothing open it does not poll at all."""
    import ui.live

    store, run_id, (a, _b) = halving_run
    watched: list[tuple] = []
    body = ui.live._watch.__wrapped__  # the fragment's own code (outside a script run it is not called)
    monkeypatch.setattr(ui.live, "_watch", lambda rid, seen: watched.append((rid, seen)))
    monkeypatch.setattr(ui.live, "get_store", lambda: store)
    ui.live.refresh_when_jobs_end(run_id)
    assert watched == []  # every job of the run has ended: nothing to watch
    job = studio.remeasure_candidate(store, a, seed=7).id
    ui.live.refresh_when_jobs_end(run_id)
    assert watched == [(run_id, (job,))]
    other = studio.create_run(store, studio.default_config(name="other"))
    ui.live.refresh_when_jobs_end(other)  # another run's job does not make this one poll
    assert watched == [(run_id, (job,))]

    class Rerun(Exception):
        pass

    def rerun(scope="app"):
        raise Rerun(scope)

    monkeypatch.setattr(ui.live.st, "rerun", rerun)
    body(run_id, (job,))  # still open: no rerun, only the caption
    Worker(store.path, poll_s=0.01, heartbeat_s=0.1, stale_after_s=5, handlers=FAKE).run(once=True)
    assert store.get_job(job).status == "done"
    with pytest.raises(Rerun, match="app"):
        body(run_id, (job,))  # it ended: the whole page reruns and shows the new seed
