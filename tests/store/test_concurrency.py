"""Two real processes approving the same candidates at the same moment create one job each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from nas_core.store import Store
from tests.store.helpers import proposals

ROOT = Path(__file__).resolve().parents[2]

APPROVER = """
import json, sys, time
from nas_core.store import IllegalTransition, Store
db, start, actor, ids = sys.argv[1], float(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
store = Store.open(db)
won = []
while time.time() < start:
    pass  # spin so both processes fire within microseconds of each other
for cid in ids:
    try:
        store.approve(cid, actor, "evaluate", {"candidate": cid})
        won.append(cid)
    except IllegalTransition:
        pass
print(json.dumps(won))
"""


def test_two_processes_approving_the_same_candidates_create_one_job_each(tmp_path):
    db = tmp_path / "race.db"
    store = Store.open(db)
    run = store.create_run("race", "llm", None, {})
    ids = [store.add_candidate(run.id, 1, p).id for p in proposals(30, seed=3)]
    start = time.time() + 1.5  # both interpreters are up by then
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", APPROVER, str(db), str(start), actor, json.dumps(ids)],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for actor in ("tab-1", "tab-2")
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    won = [set(json.loads(o[0])) for o in outs]
    assert won[0] | won[1] == set(ids) and not (won[0] & won[1])
    jobs = store.list_jobs()
    assert sorted(j.candidate_id for j in jobs) == sorted(ids)
    for cid in ids:
        approvals = [e for e in store.events(candidate_id=cid) if e.entity == "candidate" and e.to_status == "queued"]
        assert len(approvals) == 1
        assert approvals[0].actor == ("tab-1" if cid in won[0] else "tab-2")
    assert store.integrity_check() == "ok"


OPENER = """
import sys, time
from nas_core.store import Store
db, start = sys.argv[1], float(sys.argv[2])
while time.time() < start:
    pass
s = Store.open(db)
s.register_worker(f"w{sys.argv[3]}")
print(s.schema_version)
"""


def test_processes_opening_a_new_database_at_once_migrate_it_once(tmp_path):
    from nas_core.store import SCHEMA_VERSION

    db = tmp_path / "fresh.db"
    start = time.time() + 1.5
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", OPENER, str(db), str(start), str(i)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [o[1] for o in outs]
    assert {o[0].strip() for o in outs} == {str(SCHEMA_VERSION)}
    store = Store.open(db)
    versions = [r[0] for r in store.conn.execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    assert len(store.worker_status()) == 4 and store.integrity_check() == "ok"
