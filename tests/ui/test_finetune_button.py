"""Results: "Fine-tune this estimate" queues the super-network fine-tune through studio, once per estimate."""

from __future__ import annotations

import pathlib

from streamlit.testing.v1 import AppTest

from tests.supernet.test_supernet_finetune_app import sn_run  # noqa: F401  (the fixture)

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _open(sn_run, monkeypatch, page: str) -> AppTest:  # noqa: F811
    """The app on the super-network run, switched to ``pages/<page>.py``, with no exception."""
    monkeypatch.setenv("EQUINAS_DB", sn_run["db"])
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["run"] = str(sn_run["run_id"])
    at.run()
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_finetune_button_queues_the_job_for_the_estimate(sn_run, monkeypatch):  # noqa: F811
    store = sn_run["store"]
    at = _open(sn_run, monkeypatch, "results")
    buttons = [b for b in at.button if b.key and b.key.startswith("finetune_")]
    assert buttons, "no fine-tune button beside an estimate"
    cid = int(buttons[0].key.split("_")[1])
    assert cid in sn_run["cands"]
    buttons[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    jobs = [j for j in store.list_jobs(candidate_id=cid) if j.kind == "supernet_finetune"]
    assert len(jobs) == 1 and jobs[0].status == "queued"
    assert store.get_candidate(cid).status == "queued"
    assert any("fine-tune queued" in s.value for s in at.success)
    # Queued, it is no longer offered (no second job on a rerun).
    assert not [b for b in at.button if b.key == f"finetune_{cid}"]


def test_search_pages_decided_candidates_offer_fine_tune_of_an_estimate(sn_run, monkeypatch):  # noqa: F811
    store = sn_run["store"]
    at = _open(sn_run, monkeypatch, "search")
    pick = at.selectbox(key="finetune_pick")
    assert sorted(pick.options) == sorted(f"#{cid} random · estimated accuracy {0.3 + 0.1 * i:.1%}"
                                          for i, cid in enumerate(sn_run["cands"]))
    chosen = sn_run["cands"][1]  # not the first offered: the button must fine-tune the one picked
    pick.set_value(chosen).run()
    at.button(key="search_finetune").click().run()
    assert not at.exception, [e.value for e in at.exception]
    jobs = [j for j in store.list_jobs(run_id=sn_run["run_id"]) if j.kind == "supernet_finetune"]
    assert [j.candidate_id for j in jobs] == [chosen] and jobs[0].status == "queued"
    assert store.get_candidate(chosen).status == "queued"
    assert any(f"#{chosen}: fine-tune queued" in s.value for s in at.success)
    # The queued one is no longer offered; the other two still are.
    offered = [o.split(" ")[0] for o in at.selectbox(key="finetune_pick").options]
    assert offered and f"#{chosen}" not in offered and len(offered) == 2


def test_search_page_offers_no_fine_tune_without_an_estimate(sn_run, monkeypatch):  # noqa: F811
    store = sn_run["store"]
    from tests.factories import make_metrics

    for cid in sn_run["cands"]:  # every result measured, none an estimate
        store.set_metrics(cid, make_metrics(acc=0.5, estimate=False))
    at = _open(sn_run, monkeypatch, "search")
    assert not [s for s in at.selectbox if s.key == "finetune_pick"]
    assert not [b for b in at.button if b.key == "search_finetune"]
