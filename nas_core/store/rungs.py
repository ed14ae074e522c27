"""Rows of successive-halving rungs and seed re-measurements (tables ``rungs`` and ``remeasures``).

Owns :class:`RungRecord` and :class:`RemeasureRecord` (frozen views of one row) and the
functions that write and read those two tables through an open
:class:`nas_core.store.Store`. The decisions (when to promote, what a rung trains) live in
:mod:`nas_core.rungs`; this module only keeps what happened:

- one ``rungs`` row per (candidate, rung) that finished, with its fidelity label, the
  settings it trained with, the value the pruner compared (``score``), the preliminary
  metrics, and the decision taken after it (``promoted`` / ``stopped`` / ``final``) and by
  whom (``pruner`` or ``user:NAME``);
- one ``remeasures`` row per extra training of a measured candidate with another
  initialisation seed on the same split.

Every function runs inside ``store.transaction()`` (a savepoint when the caller holds one),
so the worker can write a job's result and its rung row atomically.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nas_core.store import Store

#: Decisions a rung row can carry ("" = not decided yet).
DECISIONS = ("", "promoted", "stopped", "final")


@dataclass(frozen=True)
class RungRecord:
    """One finished rung of one candidate."""

    id: int
    run_id: int
    candidate_id: int
    rung: int  # 0-based position in the run's ladder (the last one is full fidelity)
    final: bool  # True for the full-fidelity rung
    fidelity: str  # human label, e.g. "rung 1/2: 1 epoch at 32 px"
    settings_json: str  # the TrainSettings the rung trained with
    job_id: int | None
    score: float | None  # what the pruner compares (validation accuracy)
    val_acc: float | None
    test_acc: float | None
    unfairness: float | None
    metrics_json: str  # the rung's full Metrics.to_dict()
    decision: str  # one of DECISIONS
    decided_by: str  # "pruner", "user:NAME", "" when undecided
    seconds: float | None  # wall time of the rung's job
    cpu_s: float | None  # CPU time of the rung's handler (process time), when known
    created_at: float
    updated_at: float

    @property
    def settings(self) -> dict[str, Any]:
        """Parsed ``settings_json``."""
        return json.loads(self.settings_json or "{}")

    @property
    def metrics(self) -> dict[str, Any]:
        """Parsed ``metrics_json``."""
        return json.loads(self.metrics_json or "{}")


@dataclass(frozen=True)
class RemeasureRecord:
    """One re-training of a candidate with another initialisation seed (same split)."""

    id: int
    run_id: int
    candidate_id: int
    job_id: int | None
    seed: int
    val_acc: float | None
    test_acc: float | None
    unfairness: float | None
    metrics_json: str
    created_at: float


def _now() -> float:
    return time.time()


def _rows(store: Store, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    cur = store.conn.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _rung(d: dict[str, Any]) -> RungRecord:
    d = dict(d)
    d["final"] = bool(d["final"])
    return RungRecord(**d)


def add_rung(
    store: Store,
    *,
    run_id: int,
    candidate_id: int,
    rung: int,
    final: bool,
    fidelity: str,
    settings: dict[str, Any],
    job_id: int | None,
    score: float | None,
    val_acc: float | None,
    test_acc: float | None,
    unfairness: float | None,
    metrics: dict[str, Any],
    seconds: float | None = None,
    cpu_s: float | None = None,
    decision: str = "",
    decided_by: str = "",
) -> RungRecord:
    """Record a finished rung (replacing an earlier row of the same candidate and rung)."""
    now = _now()
    with store.transaction():
        store.conn.execute("DELETE FROM rungs WHERE candidate_id=? AND rung=?", (candidate_id, rung))
        cur = store.conn.execute(
            "INSERT INTO rungs (run_id, candidate_id, rung, final, fidelity, settings_json, job_id, score, "
            "val_acc, test_acc, unfairness, metrics_json, decision, decided_by, seconds, cpu_s, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, candidate_id, rung, int(final), fidelity, json.dumps(settings, sort_keys=True), job_id, score,
             val_acc, test_acc, unfairness, json.dumps(metrics, sort_keys=True), decision, decided_by, seconds,
             cpu_s, now, now),
        )
        row_id = int(cur.lastrowid)
    return get_rung(store, row_id)


def get_rung(store: Store, row_id: int) -> RungRecord:
    """One rung row by id (KeyError when absent)."""
    rows = _rows(store, "SELECT * FROM rungs WHERE id=?", (row_id,))
    if not rows:
        raise KeyError(f"no rung row {row_id}")
    return _rung(rows[0])


def set_decision(store: Store, row_id: int, decision: str, decided_by: str) -> RungRecord:
    """Set the decision taken after a rung."""
    if decision not in DECISIONS:
        raise ValueError(f"decision {decision!r} is not one of {DECISIONS}")
    with store.transaction():
        store.conn.execute("UPDATE rungs SET decision=?, decided_by=?, updated_at=? WHERE id=?",
                           (decision, decided_by, _now(), row_id))
    return get_rung(store, row_id)


def list_rungs(store: Store, run_id: int | None = None, candidate_id: int | None = None) -> list[RungRecord]:
    """Rung rows of a run and/or candidate, in the order they finished."""
    sql, params = "SELECT * FROM rungs WHERE 1=1", []
    if run_id is not None:
        sql += " AND run_id=?"
        params.append(int(run_id))
    if candidate_id is not None:
        sql += " AND candidate_id=?"
        params.append(int(candidate_id))
    return [_rung(d) for d in _rows(store, sql + " ORDER BY id", tuple(params))]


def add_remeasure(
    store: Store,
    *,
    run_id: int,
    candidate_id: int,
    job_id: int | None,
    seed: int,
    val_acc: float | None,
    test_acc: float | None,
    unfairness: float | None,
    metrics: dict[str, Any],
) -> RemeasureRecord:
    """Record one re-measurement with another initialisation seed."""
    with store.transaction():
        cur = store.conn.execute(
            "INSERT INTO remeasures (run_id, candidate_id, job_id, seed, val_acc, test_acc, unfairness, "
            "metrics_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, candidate_id, job_id, seed, val_acc, test_acc, unfairness, json.dumps(metrics, sort_keys=True),
             _now()),
        )
        row_id = int(cur.lastrowid)
    return RemeasureRecord(**_rows(store, "SELECT * FROM remeasures WHERE id=?", (row_id,))[0])


def list_remeasures(store: Store, candidate_id: int) -> list[RemeasureRecord]:
    """A candidate's re-measurements, oldest first."""
    return [RemeasureRecord(**d) for d in _rows(
        store, "SELECT * FROM remeasures WHERE candidate_id=? ORDER BY id", (int(candidate_id),))]
