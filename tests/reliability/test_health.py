"""Database health and honest summaries: a corrupt page is refused with a clear message and nothing is written;
``db backup`` uses SQLite's online backup API; a search whose candidates failed says how many; a job whose
worker was killed right after starting it keeps its attempts; the Markdown card escapes hostile metadata."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

from nas_core import evaluator
from nas_core.cli import main
from nas_core.errors import UserError
from nas_core.records import GroupMetrics
from nas_core.report import CardContext, model_card_html, model_card_markdown
from nas_core.store import Store, StoreCorrupt
from nas_core.store import store as store_mod
from tests.factories import make_candidate, make_metrics
from tests.store.helpers import proposals


def _populated(path):
    with Store.open(path) as store:
        run = store.create_run("r", "random", "data", {})
        store.start_iteration(run.id)
        for p in proposals(40):
            store.add_candidate(run.id, 1, p)
    return path


def _corrupt(path, page: int = 3) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        n_pages = conn.execute("PRAGMA page_count").fetchone()[0]
    assert n_pages > page
    with open(path, "r+b") as fh:
        fh.seek(page_size * (page - 1))
        fh.write(os.urandom(page_size))


def test_a_corrupt_page_is_refused_with_a_message_and_nothing_written(tmp_path, capsys):
    db = _populated(tmp_path / "c.db")
    _corrupt(db)
    before = db.read_bytes()
    store_mod._CHECKED.clear()
    with pytest.raises(StoreCorrupt, match="damaged.*nothing was written.*db backup"):
        Store.open(db)
    code = main(["db", "info", "--db", str(db)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "damaged" in err and "Traceback" not in err
    code = main(["search", "--db", str(db), "--dataset", str(tmp_path), "--engine", "random", "--iterations", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "damaged" in err
    assert db.read_bytes() == before  # no new run written into the corrupt file


def test_db_backup_makes_a_consistent_copy_and_refuses_to_overwrite(tmp_path, capsys):
    db = _populated(tmp_path / "b.db")
    dest = tmp_path / "backup.db"
    assert main(["db", "backup", str(dest), "--db", str(db)]) == 0
    assert "backed up to" in capsys.readouterr().out
    with Store.open(dest) as copy:
        assert len(copy.list_candidates(1)) == 40 and copy.integrity_check() == "ok"
    assert main(["db", "backup", str(dest), "--db", str(db)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["db", "backup", str(tmp_path / "no" / "x.db"), "--db", str(db)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp file left
    assert main(["db", "check", "--db", str(db)]) == 0


def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_job_whose_worker_was_killed_right_after_starting_it_keeps_its_attempt(tmp_path):
    db = _populated(tmp_path / "k.db")
    with Store.open(db) as store:
        cid = store.list_candidates(1)[0].id
        store.approve(cid, "t", "evaluate", {}, max_attempts=1)
        for round_ in range(3):
            store.register_worker(f"w{round_}", pid=_dead_pid())
            job = store.claim_job(f"w{round_}")
            assert job is not None and job.attempts == 1
            store.requeue_orphans()
            job = store.get_job(job.id)
            if round_ < 2:  # killed 0 s after starting, no progress: requeued, attempt not used
                assert job.status == "queued" and job.attempts == 0
            else:  # a job that keeps dying at once must not loop forever: the third time it counts
                assert job.status == "failed" and "gave up" in job.error
        events = [e.detail for e in store.events(limit=50) if e.to_status == "queued" and e.entity == "job"]
        assert sum("not counted as an attempt" in d for d in events) == 2


def test_a_job_killed_after_it_made_progress_uses_an_attempt(tmp_path):
    db = _populated(tmp_path / "p.db")
    with Store.open(db) as store:
        cid = store.list_candidates(1)[0].id
        store.approve(cid, "t", "evaluate", {}, max_attempts=3)
        store.register_worker("w", pid=_dead_pid())
        job = store.claim_job("w")
        store.set_progress(job.id, {"epoch": 1}, "w")
        store.requeue_orphans()
        assert store.get_job(job.id).attempts == 1


def test_a_search_whose_candidates_failed_says_how_many(tiny_dataset, tmp_path, capsys, monkeypatch):
    def broken(*_a, **_k):
        raise UserError("out of memory while training (injected)")

    monkeypatch.setattr(evaluator, "run_request", broken)
    db = tmp_path / "s.db"
    code = main(["search", "--db", str(db), "--dataset", str(tiny_dataset), "--engine", "random", "--iterations", "3",
                 "--auto-approve", "--epochs", "1", "--image-size", "32"])
    out, err = capsys.readouterr()
    with Store.open(db) as store:
        failed = [c for c in store.list_candidates(1) if c.status == "failed"]
    assert failed and code == 1
    assert f"{len(failed)} of {len(failed)} candidate(s) failed" in out, out
    assert "out of memory while training (injected)" in out
    code = main(["search", "--db", str(db), "--dataset", str(tiny_dataset), "--engine", "random", "--iterations",
                 "1", "--auto-approve", "--json", "--epochs", "1", "--image-size", "32"])
    report = json.loads(capsys.readouterr().out)
    assert report["failed_candidates"]


HOSTILE = '<img src=x onerror="alert(1)">'


def test_the_markdown_card_escapes_html_and_pipes_in_metadata():
    m = make_metrics()
    groups = (GroupMetrics("skin|type", HOSTILE, 40, 0.8), GroupMetrics("skin|type", "V|VI", 12, 0.7))
    m = m.__class__(**{**m.__dict__, "per_class_recall": ((HOSTILE, 0.5), ("MEL|NV", 0.6)),
                       "fairness": m.fairness.__class__(**{**m.fairness.__dict__, "groups": groups})})
    c = make_candidate(7, m)
    c = c.__class__(**{**c.__dict__, "rationale": f"because {HOSTILE}\n| broken | row |"})
    ctx = CardContext(run_name=f"run {HOSTILE}", dataset_name="set|1", dataset_summary="<script>x()</script>")
    md = model_card_markdown(c, ctx)
    assert "<img" not in md and "<script" not in md and "&lt;img" in md
    rows = [line for line in md.splitlines() if line.startswith("| skin")]
    assert len(rows) == 2
    for row in rows:  # 6 columns each: the escaped pipes stayed inside their cells
        assert len([x for x in row.replace("\\|", "").split("|")]) == 8
    assert "| MEL\\|NV | 60.0% |" in md
    html = model_card_html(c, ctx)
    assert "<img" not in html and "<script" not in html and "&lt;img src=x" in html
    assert "<td>MEL|NV</td>" in html and "&amp;lt;" not in html


def test_quick_check_runs_once_per_file_and_process(tmp_path, monkeypatch):
    db = _populated(tmp_path / "q.db")
    store_mod._CHECKED.clear()
    calls = []
    real = store_mod._quick_check

    def spy(conn, p, spath):
        calls.append(spath)
        return real(conn, p, spath)

    monkeypatch.setattr(store_mod, "_quick_check", spy)
    for _ in range(3):
        Store.open(db).close()
    assert len(calls) == 3 and len(store_mod._CHECKED) == 1  # the page scan itself ran once
