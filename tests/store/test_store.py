"""The store: opening, migrations, records, transitions, jobs and the secrets rule."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from nas_core.jobresult import JobResult, Progress
from nas_core.records import OBJECTIVES, Proposal
from nas_core.space import default_spec
from nas_core.store import (
    SCHEMA_VERSION,
    DuplicateCandidate,
    DuplicateDataset,
    IllegalTransition,
    NotFound,
    SchemaTooNew,
    StaleJob,
    Store,
    StoreOpenError,
    schema,
)
from tests.store.helpers import make_metrics, proposals

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "t.db")
    yield s
    s.close()


def _run(store, name="r1"):
    return store.create_run(name, "random", None, {"epochs": 1})


# ---------------------------------------------------------------- opening


def test_open_creates_wal_database_with_current_schema(tmp_path):
    s = Store.open(tmp_path / "new.db")
    assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert s.conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    assert s.schema_version == SCHEMA_VERSION
    versions = [r[0] for r in s.conn.execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions == [m[0] for m in schema.MIGRATIONS]
    s.close()
    # Re-opening an up-to-date database applies nothing twice.
    s2 = Store.open(tmp_path / "new.db")
    assert s2.conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == len(schema.MIGRATIONS)
    s2.close()


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(StoreOpenError, match="does not exist"):
        Store.open(tmp_path / "nope" / "x.db")
    assert not (tmp_path / "nope").exists()


def test_missing_folder_via_cli_is_one_line_and_exit_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "nas_core", "db", "info", "--db", str(tmp_path / "nope" / "x.db")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: database folder") and "Traceback" not in proc.stderr


def test_read_only_folder_is_a_clear_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    code = (
        "import sys\n"
        "from nas_core.store import Store, StoreOpenError\n"
        "try:\n"
        f"    Store.open({str(ro / 'x.db')!r})\n"
        "except StoreOpenError as e:\n"
        "    print('REFUSED', e)\n"
        "    sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    cmd = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        # Root ignores permission bits; drop the capabilities that let it, as a normal user would lack them.
        setpriv = shutil.which("setpriv")
        assert setpriv, "running as root needs util-linux setpriv to test a read-only folder"
        cmd = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--", *cmd]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "REFUSED" in proc.stdout and "not writable" in proc.stdout
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_newer_schema_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, description TEXT, applied_at REAL)")
    conn.execute("INSERT INTO schema_version VALUES (?, 'from the future', 0)", (SCHEMA_VERSION + 5,))
    conn.execute("CREATE TABLE mystery (x)")
    conn.commit()
    conn.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(SchemaTooNew, match=f"version {SCHEMA_VERSION + 5}.*upgrade EquiNAS"):
        Store.open(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert not (tmp_path / "future.db-wal").exists()


def test_version_1_database_is_upgraded_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    schema.migrate(conn, str(path), upto=1)
    assert schema.current_version(conn) == 1
    conn.execute(
        "INSERT INTO datasets (name, format, created_at) VALUES ('old-set', 'isic2019', 1.0)"
    )
    conn.execute(
        "INSERT INTO runs (name, engine, dataset_id, config_json, created_at, updated_at) "
        "VALUES ('old-run', 'llm', 1, '{\"epochs\": 3}', 1.0, 1.0)"
    )
    assert conn.execute("SELECT name FROM sqlite_master WHERE name='workers'").fetchone() is None
    conn.close()
    s = Store.open(path)
    assert s.schema_version == SCHEMA_VERSION > 1
    assert s.get_dataset("old-set").format == "isic2019"
    assert s.get_run(1).config == {"epochs": 3}
    s.register_worker("w1")  # a table only version 2 has
    assert [w.id for w in s.worker_status()] == ["w1"]
    assert s.integrity_check() == "ok"
    s.close()


def test_every_objective_has_a_flat_column_and_a_version_8_database_gains_latency_cpu(tmp_path):
    from nas_core.records import OBJECTIVES

    assert schema.FLAT_COLUMNS == tuple(OBJECTIVES)  # a new objective needs a migration (schema.py)
    path = tmp_path / "v8.db"
    conn = sqlite3.connect(path, isolation_level=None)
    schema.migrate(conn, str(path), upto=8)
    cols = {r[1] for r in conn.execute("PRAGMA table_info(metrics)").fetchall()}
    assert "latency" in cols and "latency_cpu" not in cols
    conn.close()
    s = Store.open(path)
    cols = {r[1] for r in s.conn.execute("PRAGMA table_info(metrics)").fetchall()}
    assert "latency_cpu" in cols
    index_cols = [r[2] for r in s.conn.execute("PRAGMA index_info(idx_metrics_flat)").fetchall()]
    assert index_cols == ["candidate_id", "estimate", *OBJECTIVES]
    assert "latency_cpu" in s.leaderboard(1).columns  # no run: an empty frame with every column
    s.close()


# ---------------------------------------------------------------- data sets and runs


def test_datasets_register_get_list_and_duplicate(store):
    ds = store.register_dataset("isic-small", "isic2019", "/data/isic", "abc123", ["image", "sex"],
                                {"MEL": 10, "NV": 20}, {"attributes": ["sex"], "api_key": "x"}, "/cache/x")
    assert ds.id >= 1 and ds.counts == {"MEL": 10, "NV": 20} and ds.columns == ["image", "sex"]
    assert "api_key" not in ds.config
    assert store.get_dataset(ds.id) == ds == store.get_dataset("isic-small") == store.get_dataset(str(ds.id))
    assert store.list_datasets() == [ds]
    with pytest.raises(DuplicateDataset, match="already registered"):
        store.register_dataset("isic-small", "csv", "", "", [], {}, {})
    with pytest.raises(NotFound, match="registered: isic-small"):
        store.get_dataset("other")


def test_run_config_never_stores_secrets(tmp_path, monkeypatch):
    secret = "sk-" + "THISISASECRETVALUE1234567890"  # a fake key, split so secret scanners do not flag the repo
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    s = Store.open(tmp_path / "s.db")
    cfg = {
        "llm": {"base_url": "http://x", "model": "m", "api_key": secret, "apiKey": secret, "max_tokens": 500},
        "engine": {"client_secret": secret, "access_token": secret, "password": secret},
        "train": {"epochs": 2},
    }
    run = s.create_run("r", "llm", "some/path", cfg)
    assert run.config["llm"] == {"base_url": "http://x", "model": "m", "max_tokens": 500}
    assert run.config["engine"] == {} and run.config["train"] == {"epochs": 2}
    assert run.dataset_id is None and run.dataset_ref == "some/path"
    s.update_run(run.id, config={**cfg, "more": {"token": secret}})
    s.add_llm_call(run.id, 1, f"prompt mentioning {secret}", [{"role": "user", "content": secret}],
                   raw_answer="{}", model="m", error=f"401 for key {secret}")
    s.add_feedback(run.id, "note", f"my key is {secret}", "ann")
    cid = s.add_candidate(run.id, 1, Proposal(default_spec(), "llm", rationale=secret)).id
    s.approve(cid, "ann", "evaluate", {"api_key": secret, "spec": {}})
    s.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert secret.encode() not in raw
    assert b"SECRETVALUE" not in raw


def test_run_links_registered_dataset_and_updates_status_with_event(store):
    ds = store.register_dataset("d", "csv", "", "", [], {}, {})
    run = store.create_run("r", "linas", "d", {"a": 1}, actor="ann")
    assert run.dataset_id == ds.id and run.status == "created"
    run2 = store.update_run(run.id, status="running", actor="ann")
    assert run2.status == "running"
    ev = [e for e in store.events(run_id=run.id) if e.entity == "run"]
    assert [(e.from_status, e.to_status) for e in ev] == [(None, "created"), ("created", "running")]
    assert [r.id for r in store.list_runs()] == [run.id]
    with pytest.raises(NotFound):
        store.get_run(999)


def test_iterations_number_from_one(store):
    run = _run(store)
    a = store.start_iteration(run.id)
    b = store.start_iteration(run.id)
    assert (a.number, b.number) == (1, 2) and a.status == "proposing"
    store.set_iteration_status(run.id, 1, "waiting")
    done = store.finish_iteration(run.id, 1, status="failed", error="LLM unreachable")
    assert done.status == "failed" and done.error == "LLM unreachable" and done.ended_at is not None
    assert [i.number for i in store.list_iterations(run.id)] == [1, 2]
    assert store.get_iteration(run.id, 2).ended_at is None


# ---------------------------------------------------------------- candidates


def test_candidates_roundtrip_and_duplicates(store):
    run = _run(store)
    p = Proposal(default_spec(), "linas", rationale="small", predicted=(("accuracy", 0.7), ("params", 1e4)))
    c = store.add_candidate(run.id, 1, p, extra={"predictor": "ridge"})
    assert c.spec == p.spec and c.key == p.spec.key and c.status == "proposed"
    assert c.predicted == (("accuracy", 0.7), ("params", 10000.0)) and c.extra == (("predictor", "ridge"),)
    assert store.get_candidate(c.id) == c
    with pytest.raises(DuplicateCandidate, match=f"candidate {c.id}") as info:
        store.add_candidate(run.id, 2, Proposal(default_spec(), "llm"))
    assert info.value.existing_id == c.id
    # Another run may hold the same network.
    other = store.create_run("r2", "llm", None, {})
    assert store.add_candidate(other.id, 1, p).id != c.id
    more = [store.add_candidate(run.id, 2, q) for q in proposals(3, seed=5)]
    assert [x.id for x in store.list_candidates(run.id)] == [c.id] + [m.id for m in more]
    assert [x.id for x in store.list_candidates(run.id, iteration=2)] == [m.id for m in more]
    assert store.known_keys(run.id) == {c.key} | {m.key for m in more}


def test_transition_is_compare_and_set_with_events(store):
    run = _run(store)
    c = store.add_candidate(run.id, 1, Proposal(default_spec(), "llm"))
    r = store.transition(c.id, ["proposed"], "rejected", "bob", "too big")
    assert r.status == "rejected"
    with pytest.raises(IllegalTransition, match="is 'rejected'.*only from 'proposed'"):
        store.transition(c.id, "proposed", "queued", "bob")
    with pytest.raises(IllegalTransition):
        store.approve(c.id, "bob", "evaluate", {})
    assert store.list_jobs() == []
    ev = store.events(candidate_id=c.id)
    assert [(e.from_status, e.to_status, e.actor) for e in ev] == [(None, "proposed", "llm"),
                                                                    ("proposed", "rejected", "bob")]
    assert ev[1].detail == "too big" and ev[1].time >= ev[0].time
    assert store.list_candidates(run.id, status="rejected")[0].id == c.id


def test_approve_then_claim_progress_and_result(store):
    run = _run(store)
    c = store.add_candidate(run.id, 1, Proposal(default_spec(), "llm"))
    job = store.approve(c.id, "ann", "evaluate", {"spec": default_spec().to_dict()})
    assert job.status == "queued" and job.candidate_id == c.id and job.run_id == run.id
    assert store.get_candidate(c.id).status == "queued"
    with pytest.raises(IllegalTransition, match="is 'queued'"):
        store.approve(c.id, "ann", "evaluate", {})
    assert len(store.list_jobs()) == 1

    claimed = store.claim_job("w1")
    assert claimed.id == job.id and claimed.status == "running" and claimed.attempts == 1
    assert store.claim_job("w2") is None
    assert store.get_candidate(c.id).status == "running"
    store.set_progress(job.id, {"epoch": 1, "train_loss": 0.9}, worker_id="w1")  # an old-style dict is read as Progress
    assert store.get_job(job.id).progress == {"epoch": 1, "train_loss": 0.9, "fraction": None, "message": "epoch 1"}
    store.set_progress(job.id, Progress(0.5, "epoch 1/2", {"epoch": 1, "max_epochs": 2}), worker_id="w1")
    assert store.get_job(job.id).progress == {"epoch": 1, "max_epochs": 2, "fraction": 0.5, "message": "epoch 1/2"}
    assert store.heartbeat_job(job.id, "w1") is False

    m = make_metrics(acc=0.75, unfairness=0.03)
    with pytest.raises(StaleJob):
        store.record_result(job.id, m.to_dict(), worker_id="w2")
    done = store.record_result(job.id, JobResult.metrics(m), worker_id="w1")
    # The metrics are written once, as the candidate's; the job row points at them.
    assert done.status == "done" and json.loads(done.result_json) == {"kind": "metrics", "candidate_id": c.id}
    assert done.result == {"candidate_id": c.id} and done.outcome == JobResult("metrics", None, c.id)
    assert store.conn.execute("SELECT COUNT(*) FROM group_metrics").fetchone()[0] == 0  # no copy of the groups
    cand = store.get_candidate(c.id)
    assert cand.status == "done" and cand.metrics == m
    groups = store.group_metrics(c.id)
    assert [(g["attribute"], g["group"], g["n"]) for g in groups][:2] == [("sex", "male", 40), ("sex", "female", 38)]
    assert groups[0]["ci_low"] == pytest.approx(0.70)
    with pytest.raises(StaleJob):
        store.record_result(job.id, m.to_dict(), worker_id="w1")  # never twice
    job_events = [(e.from_status, e.to_status) for e in store.events(job_id=job.id) if e.entity == "job"]
    assert job_events == [(None, "queued"), ("queued", "running"), ("running", "done")]
    cand_events = [(e.from_status, e.to_status) for e in store.events(candidate_id=c.id) if e.entity == "candidate"]
    assert cand_events == [(None, "proposed"), ("proposed", "queued"), ("queued", "running"), ("running", "done")]


def test_fail_cancel_and_requeue(store):
    run = _run(store)
    cs = [store.add_candidate(run.id, 1, p) for p in proposals(4, seed=1)]
    jobs = [store.approve(c.id, "ann", "evaluate", {}, max_attempts=2) for c in cs]
    # queued -> cancelled at once
    assert store.cancel_job(jobs[3].id, "ann").status == "cancelled"
    assert store.get_candidate(cs[3].id).status == "cancelled"
    with pytest.raises(IllegalTransition, match="already cancelled"):
        store.cancel_job(jobs[3].id)
    # running -> flagged, the worker sees it and finishes the cancellation
    j0 = store.claim_job("w")
    store.cancel_job(j0.id, "ann")
    assert store.heartbeat_job(j0.id, "w") is True and store.get_job(j0.id).cancel_requested
    store.finish_cancelled(j0.id, "w")
    assert store.get_candidate(cs[0].id).status == "cancelled"
    # failure keeps a clean message
    j1 = store.claim_job("w")
    store.fail_job(j1.id, "spec over the parameter cap", "w")
    assert store.get_job(j1.id).error == "spec over the parameter cap"
    assert store.get_candidate(cs[1].id).error == "spec over the parameter cap"
    # stale: requeued once, then failed at max_attempts
    j2 = store.claim_job("dead")
    store.conn.execute("UPDATE jobs SET heartbeat_at = heartbeat_at - 100 WHERE id=?", (j2.id,))
    assert store.requeue_stale(10) == [j2.id]
    assert store.get_job(j2.id).status == "queued" and store.get_candidate(cs[2].id).status == "queued"
    assert store.claim_job("dead2").attempts == 2
    store.conn.execute("UPDATE jobs SET heartbeat_at = heartbeat_at - 100 WHERE id=?", (j2.id,))
    store.requeue_stale(10)
    j2f = store.get_job(j2.id)
    assert j2f.status == "failed" and "gave up after 2" in j2f.error
    # a job whose cancellation was requested is not requeued when its worker dies
    run3 = store.create_run("r3", "x", None, {})
    c3 = store.add_candidate(run3.id, 1, Proposal(default_spec(), "x"))
    j3 = store.approve(c3.id, "a", "evaluate", {})
    store.claim_job("doomed")
    store.cancel_job(j3.id, "ann")
    store.conn.execute("UPDATE jobs SET heartbeat_at = heartbeat_at - 100 WHERE id=?", (j3.id,))
    store.requeue_stale(10)
    assert store.get_job(j3.id).status == "cancelled" and store.get_candidate(c3.id).status == "cancelled"
    # a clean stop does not use up an attempt
    run2 = store.create_run("r2", "x", None, {})
    c = store.add_candidate(run2.id, 1, Proposal(default_spec(), "x"))
    store.approve(c.id, "a", "evaluate", {}, max_attempts=1)
    jj = store.claim_job("w3")
    assert store.requeue_job(jj.id, "w3", "worker stopping").status == "queued"
    assert store.get_job(jj.id).attempts == 0


def test_jobs_of_a_dead_local_worker_are_requeued_at_once(store):
    run = _run(store)
    c = store.add_candidate(run.id, 1, Proposal(default_spec(), "x"))
    job = store.approve(c.id, "a", "evaluate", {})
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    store.register_worker("ghost", pid=gone.pid)
    store.register_worker("me")  # this process: alive
    store.claim_job("ghost")
    assert store.requeue_orphans() == [job.id]
    assert store.get_job(job.id).status == "queued" and store.get_candidate(c.id).status == "queued"
    status = {w.id: w.status for w in store.worker_status()}
    assert status == {"ghost": "stopped", "me": "running"}
    assert store.requeue_orphans() == []


def test_enqueue_job_without_candidate(store):
    job = store.enqueue_job("supernet_train", {"epochs": 1}, run_id=None)
    got = store.claim_job("w", kinds=["supernet_train"])
    assert got.id == job.id
    store.record_result(job.id, {"checkpoint": "/x.pt"}, worker_id="w")
    assert store.get_job(job.id).result == {"checkpoint": "/x.pt"}


def test_worker_status(store):
    store.register_worker("w1", "local")
    store.register_worker("w2", "ray")
    store.stop_worker("w2")
    status = {w.id: w for w in store.worker_status()}
    assert status["w1"].alive and status["w1"].pid == os.getpid()
    assert not status["w2"].alive and status["w2"].status == "stopped"
    # age w1's heartbeat by 100 s: it is no longer alive within 15 s, still alive within 200 s
    store.conn.execute("UPDATE workers SET heartbeat_at = heartbeat_at - 100 WHERE id='w1'")
    aged = {w.id: w for w in store.worker_status(alive_within_s=15)}
    assert not aged["w1"].alive and aged["w1"].status == "running"
    assert {w.id: w.alive for w in store.worker_status(alive_within_s=200)} == {"w1": True, "w2": False}


def test_llm_calls_and_feedback(store):
    run = _run(store)
    store.add_llm_call(run.id, 1, "P1", [{"role": "user", "content": "P1"}], '{"a":1}', "gpt", 10, 20, 1.5)
    store.add_llm_call(run.id, 2, "P2", error="timeout")
    calls = store.list_llm_calls(run.id)
    assert [c.prompt for c in calls] == ["P1", "P2"] and calls[0].messages[0]["content"] == "P1"
    assert calls[0].tokens_out == 20 and calls[1].error == "timeout"
    assert [c.prompt for c in store.list_llm_calls(run.id, iteration=2)] == ["P2"]
    c = store.add_candidate(run.id, 1, Proposal(default_spec(), "llm"))
    store.add_feedback(run.id, "reject", "too slow", "ann", candidate_id=c.id, iteration=1)
    fb = store.list_feedback(run.id)
    assert fb[0].text == "too slow" and fb[0].candidate_id == c.id and fb[0].actor == "ann"


def test_leaderboard_has_flat_metric_columns(store):
    run = _run(store)
    cs = [store.add_candidate(run.id, 1, p) for p in proposals(3, seed=2)]
    for i, c in enumerate(cs[:2]):
        job = store.approve(c.id, "a", "evaluate", {})
        store.claim_job("w")
        store.record_result(job.id, make_metrics(acc=0.6 + 0.1 * i, params=100 * (i + 1)).to_dict(), "w")
    df = store.leaderboard(run.id)
    assert list(df["candidate_id"]) == [c.id for c in cs]
    for name in OBJECTIVES:
        assert name in df.columns
    assert df["accuracy"].iloc[0] == pytest.approx(0.6) and df["params"].iloc[1] == 200
    assert df["accuracy"].isna().iloc[2] and list(df["status"]) == ["done", "done", "proposed"]
    assert df["worst_group_accuracy"].iloc[1] == pytest.approx(0.68)


def test_transaction_rolls_back_everything_on_error(store):
    run = _run(store)
    with pytest.raises(RuntimeError), store.transaction():
        store.add_candidate(run.id, 1, Proposal(default_spec(), "llm"))
        raise RuntimeError("boom")
    assert store.list_candidates(run.id) == []
    assert [e.entity for e in store.events(run_id=run.id)] == ["run"]


def test_db_commands(tmp_path, capsys):
    from nas_core.cli import main

    db = tmp_path / "cli.db"
    s = Store.open(db)
    run = _run(s)
    c = s.add_candidate(run.id, 1, Proposal(default_spec(), "llm"))
    job = s.approve(c.id, "ann", "evaluate", {})
    assert main(["db", "info", "--db", str(db), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["schema_version"] == SCHEMA_VERSION and info["counts"]["jobs"] == 1 and info["integrity"] == "ok"
    assert main(["db", "jobs", "--db", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["status"] == "queued"
    assert main(["db", "cancel", "--db", str(db), str(job.id), "--actor", "bob"]) == 0
    assert "cancelled" in capsys.readouterr().out
    assert s.get_job(job.id).status == "cancelled" and s.get_candidate(c.id).status == "cancelled"
    assert main(["db", "cancel", "--db", str(db), str(job.id)]) == 2
    assert "already cancelled" in capsys.readouterr().err
    assert main(["db", "events", "--db", str(db), "--run", str(run.id)]) == 0
    assert "queued -> cancelled by bob" in capsys.readouterr().out
