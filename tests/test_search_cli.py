"""The search commands end to end: search (heuristic and LLM), propose/approve/reject, prompt, table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nas_core.cli import main
from nas_core.runconfig import RunConfig
from nas_core.search_cli import comparison_table
from nas_core.session import Session
from nas_core.space import default_spec
from nas_core.store import Store
from tests.designers.fakes import make_metrics
from tests.llm_server import FakeLlmServer, reply

KEY = "sk-cli-SECRET-abcdef0123456789"
TINY = ["--epochs", "1", "--image-size", "32", "--batch-size", "32", "--device", "cpu", "--threads", "1"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow
def test_search_heuristic_auto_approve_end_to_end(tiny_dataset, tmp_path, capsys):
    db = tmp_path / "s.db"
    code, out, err = run_cli(capsys, "search", "--db", db, "--dataset", tiny_dataset, "--engine", "heuristic",
                             "--iterations", 2, "--auto-approve", "--json", *TINY)
    assert code == 0, err
    report = json.loads(out)
    assert [it["action"] for it in report["iterations"]] == ["proposed", "proposed"]
    assert all(r["status"] == "done" for it in report["iterations"] for r in it["results"])
    assert report["best"]["metrics"]["accuracy"] is not None
    with Store.open(db) as store:
        assert [it.status for it in store.list_iterations(report["run_id"])] == ["done", "done"]


@pytest.mark.slow
def test_search_llm_auto_approve_against_the_test_server(tiny_dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EQUINAS_LLM_API_KEY", KEY)
    spec = default_spec().to_dict()
    spec["blocks"][0]["kernel"] = 5
    answer = "```json\n" + json.dumps({"architecture": spec, "rationale": "wider receptive field"}) + "\n```"
    db = tmp_path / "l.db"
    with FakeLlmServer([reply(answer)]) as srv:
        code, out, err = run_cli(capsys, "search", "--db", db, "--dataset", tiny_dataset, "--engine", "llm",
                                 "--base-url", srv.base_url, "--model", "fake", "--iterations", 1,
                                 "--auto-approve", "--json", *TINY)
        assert srv.headers[0]["authorization"] == f"Bearer {KEY}"
    assert code == 0, err
    best = json.loads(out)["best"]
    assert best["origin"] == "llm" and best["spec"]["blocks"][0]["kernel"] == 5 and best["status"] == "done"
    data = b"".join(p.read_bytes() for p in Path(tmp_path).glob("l.db*"))
    assert KEY.encode() not in data


def test_manual_flow_with_llm_reject_prompt_propose(tmp_path, capsys, monkeypatch, tiny_dataset):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    a, b = default_spec().to_dict(), default_spec().to_dict()
    b["head"]["hidden"] = 64
    script = [reply(json.dumps({"architecture": a, "rationale": "start simple"})),
              reply(json.dumps({"architecture": b, "rationale": "a hidden layer"}))]
    db = tmp_path / "m.db"
    with FakeLlmServer(script) as srv:
        code, out, err = run_cli(capsys, "search", "--db", db, "--dataset", tiny_dataset, "--engine", "llm",
                                 "--base-url", srv.base_url, "--model", "fake", *TINY)
        assert code == 0, err
        assert "approve with `python -m nas_core approve" in out
        assert "#1 [proposed] llm it1" in out and "why: start simple" in out
        code, out, err = run_cli(capsys, "propose", "--db", db, "--run", 1)
        assert code == 2 and "wait for approval" in err
        code, out, _ = run_cli(capsys, "reject", "--db", db, 1, "--reason", "needs a hidden layer")
        assert code == 0 and "#1 rejected" in out
        code, out, err = run_cli(capsys, "approve", "--db", db, 1)
        assert code == 2 and "is rejected" in err
        code, out, _ = run_cli(capsys, "prompt", "--db", db, "--run", 1, "--json")
        assert "rejected #1: needs a hidden layer" in json.loads(out)["user"]
        code, out, _ = run_cli(capsys, "propose", "--db", db, "--run", 1, "--json")
        assert code == 0 and json.loads(out)[0]["spec"]["head"]["hidden"] == 64
        assert "rejected #1: needs a hidden layer" in srv.requests[1]["messages"][1]["content"]
        code, out, _ = run_cli(capsys, "approve", "--db", db, 2, "--json")
        assert code == 0 and json.loads(out)[0]["kind"] == "evaluate"
    data = b"".join(p.read_bytes() for p in Path(tmp_path).glob("m.db*"))
    assert KEY.encode() not in data


def test_table_marks_what_beats_every_baseline(tmp_path, capsys):
    db = tmp_path / "t.db"
    with Store.open(db) as store:
        s = Session.create_run(store, RunConfig(name="t", dataset="/x", n_classes=3, dataset_summary="x",
                                                engine="heuristic", per_iteration=2))
        for c in s.propose():
            s.approve(c.id)
        s.ensure_baselines()
        accs = {"resnet18": 0.7, "resnet34": 0.72, "mobilenet_v1": 0.65, "mobilenet_v2": 0.68}
        while (job := store.claim_job("w")) is not None:
            c = store.get_candidate(job.candidate_id)
            acc = accs.get(c.baseline, 0.8 if c.id == 1 else 0.6)
            params = 5_000_000 if c.baseline else 50_000
            store.record_result(job.id, make_metrics(acc=acc, unfairness=0.05, params=params).to_dict(), "w")
        table = comparison_table(s, top=3)
    kinds = [r.kind for r in table.rows]
    assert kinds == ["searched", "searched"] + ["baseline"] * 4 and not table.missing_baselines
    best = table.rows[0]
    assert best.candidate_id == 1 and "accuracy" in best.beats_all and "params" in best.beats_all
    assert "unfairness" not in best.beats_all  # equal to the baselines' is not better
    assert "accuracy" not in table.rows[1].beats_all
    code, out, _ = run_cli(capsys, "table", "--db", db, "--run", 1)
    assert code == 0 and "0.8000 ↑" in out and "resnet34" in out and "mobilenet_v2" in out
    assert out.splitlines()[0].split()[:3] == ["Model", "Test", "acc"]


def test_bad_input_gives_messages_not_tracebacks(tmp_path, capsys):
    db = tmp_path / "e.db"
    code, _, err = run_cli(capsys, "search", "--db", db, "--engine", "heuristic", "--dataset",
                           tmp_path / "data" / "default")
    assert code == 2 and "datasets make-default" in err
    code, _, err = run_cli(capsys, "search", "--db", db, "--dataset", tmp_path / "missing")
    assert code == 2 and "does not exist" in err
    code, _, err = run_cli(capsys, "prompt", "--db", db, "--run", 42)
    assert code == 2 and "no run with id 42" in err
    code, _, err = run_cli(capsys, "search", "--db", db, "--dataset", "x", "--constraint", "params<5")
    assert code == 2 and "must look like" in err


def test_external_worker_mode_waits_and_says_when_none_runs(tmp_path, capsys):
    db = tmp_path / "x.db"
    with Store.open(db) as store:
        s = Session.create_run(store, RunConfig(name="x", dataset="/x", n_classes=3, dataset_summary="x"))
        cid = s.propose()[0].id
    code, _, err = run_cli(capsys, "approve", "--db", db, cid, "--wait", "--worker", "external", "--timeout", 0.3)
    assert code == 2 and "no worker is running" in err and "still queued or running after 0.3 s" in err
    with Store.open(db) as store:
        assert store.get_candidate(cid).status == "queued"  # approved and kept; a worker can pick it up
