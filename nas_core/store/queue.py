"""The queue part of the store: jobs (claim, heartbeat, progress, result, cancel, requeue) and workers.

A finished job's metrics go through :class:`nas_core.store.runs.RunsMixin` (``_write_metrics``), and
candidate status changes through its ``_transition``; :class:`nas_core.store.Store` composes both.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from nas_core.jobresult import JobResult, Progress
from nas_core.store.audit import redact, scrub_secrets
from nas_core.store.core import (
    EARLY_KILL_S,
    MAX_FREE_REQUEUES,
    StoreCore,
    _dumps,
    _now,
)
from nas_core.store.errors import (
    IllegalTransition,
    NotFound,
    StaleJob,
)
from nas_core.store.records import (
    JobRecord,
    WorkerRecord,
)

log = logging.getLogger(__name__)


class QueueMixin(StoreCore):
    """The job queue, heartbeats and worker registrations."""

    # ------------------------------------------------------------------ jobs

    def _new_job(
        self,
        kind: str,
        payload: Mapping[str, Any],
        run_id: int | None,
        candidate_id: int | None,
        max_attempts: int,
        actor: str,
    ) -> int:
        now = _now()
        job_id = self._insert(
            "jobs",
            {
                "kind": kind,
                "payload_json": _dumps(scrub_secrets(payload)),
                "run_id": run_id,
                "candidate_id": candidate_id,
                "status": "queued",
                "attempts": 0,
                "max_attempts": int(max_attempts),
                "progress_json": "{}",
                "error": "",
                "created_at": now,
                "updated_at": now,
            },
        )
        self._event("job", None, "queued", actor, kind, run_id=run_id, candidate_id=candidate_id, job_id=job_id)
        return job_id

    def enqueue_job(
        self,
        kind: str,
        payload: Mapping[str, Any],
        *,
        run_id: int | None = None,
        candidate_id: int | None = None,
        max_attempts: int = 3,
        actor: str = "",
    ) -> JobRecord:
        """Queue a job that needs no approval (e.g. a super-network training, a re-measurement).

        A job for a candidate moves it to ``queued``; not while it is already queued or running.
        """
        with self.transaction():
            if candidate_id is not None:
                self._transition(candidate_id, ["proposed", "done", "failed", "cancelled"], "queued", actor,
                                 f"{kind} queued")
            job_id = self._new_job(kind, payload, run_id, candidate_id, max_attempts, actor)
        return self.get_job(job_id)

    def get_job(self, job_id: int) -> JobRecord:
        """One job (NotFound otherwise)."""
        row = self._one("SELECT * FROM jobs WHERE id=?", (int(job_id),))
        if row is None:
            raise NotFound(f"no job with id {job_id} in {self.path}")
        return _job(row)

    def list_jobs(
        self, status: str | Iterable[str] | None = None, run_id: int | None = None, candidate_id: int | None = None
    ) -> list[JobRecord]:
        """Jobs filtered by status / run / candidate, oldest first."""
        sql, params = "SELECT * FROM jobs WHERE 1=1", []
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            sql += f" AND status IN ({','.join('?' for _ in statuses)})"
            params += statuses
        if run_id is not None:
            sql += " AND run_id=?"
            params.append(run_id)
        if candidate_id is not None:
            sql += " AND candidate_id=?"
            params.append(candidate_id)
        return [_job(r) for r in self._all(sql + " ORDER BY id", params)]

    def claim_job(self, worker_id: str, kinds: Iterable[str] | None = None) -> JobRecord | None:
        """Atomically take the oldest queued job (of ``kinds``), or None when there is none."""
        # A lock-free look first: an idle worker polling must not take the write lock every second.
        if self.conn.execute("SELECT 1 FROM jobs WHERE status='queued' LIMIT 1").fetchone() is None:
            return None
        with self.transaction():
            sql, params = "SELECT id FROM jobs WHERE status='queued'", []
            if kinds is not None:
                ks = list(kinds)
                sql += f" AND kind IN ({','.join('?' for _ in ks)})"
                params += ks
            row = self._one(sql + " ORDER BY id LIMIT 1", params)
            if row is None:
                return None
            now = _now()
            cur = self.conn.execute(
                "UPDATE jobs SET status='running', worker_id=?, attempts=attempts+1, heartbeat_at=?, "
                "started_at=?, updated_at=?, error='' WHERE id=? AND status='queued'",
                (worker_id, now, now, now, row["id"]),
            )
            if cur.rowcount != 1:  # cannot happen under BEGIN IMMEDIATE; kept as a guard
                return None
            job = self.get_job(row["id"])
            self._event("job", "queued", "running", worker_id, f"attempt {job.attempts}",
                        run_id=job.run_id, candidate_id=job.candidate_id, job_id=job.id)
            if job.candidate_id is not None:
                self._follow_job(job.candidate_id, "running", worker_id, job.kind, job_id=job.id)
        return job

    def heartbeat_job(self, job_id: int, worker_id: str) -> bool:
        """Refresh a running job's heartbeat; returns whether a cancellation was requested.

        Raises:
            StaleJob: the job is no longer running under this worker.
        """
        with self.transaction():
            cur = self.conn.execute(
                "UPDATE jobs SET heartbeat_at=? WHERE id=? AND status='running' AND worker_id=?",
                (_now(), job_id, worker_id),
            )
            if cur.rowcount != 1:
                raise StaleJob(f"job {job_id} is no longer running under worker {worker_id}")
            row = self.conn.execute("SELECT cancel_requested FROM jobs WHERE id=?", (job_id,)).fetchone()
        return bool(row[0])

    def set_progress(
        self, job_id: int, progress: Progress | Mapping[str, Any], worker_id: str | None = None
    ) -> None:
        """Write the handler's latest :class:`~nas_core.jobresult.Progress` into the job row (and refresh its
        heartbeat); a plain dict is read with :meth:`Progress.from_report`."""
        report = Progress.from_report(progress).to_dict()
        with self.transaction():
            sql = "UPDATE jobs SET progress_json=?, heartbeat_at=?, updated_at=? WHERE id=? AND status='running'"
            params: list[Any] = [_dumps(report), _now(), _now(), job_id]
            if worker_id is not None:
                sql += " AND worker_id=?"
                params.append(worker_id)
            self.conn.execute(sql, params)

    def _running_job(self, job_id: int, worker_id: str | None) -> JobRecord:
        job = self.get_job(job_id)
        if job.status != "running" or (worker_id is not None and job.worker_id != worker_id):
            raise StaleJob(
                f"job {job_id} is {job.status} under worker {job.worker_id}; "
                f"worker {worker_id} may not finish it"
            )
        return job

    def record_result(
        self, job_id: int, result: JobResult | Mapping[str, Any], worker_id: str | None = None,
        actor: str | None = None,
    ) -> JobRecord:
        """Finish a running job: its :class:`~nas_core.jobresult.JobResult`, statuses, events, and for a
        metrics result the candidate's metrics (written once: the job row keeps only a pointer to them).

        All in one transaction, so a crash leaves either the whole result or none of it. A plain
        mapping is read with :meth:`JobResult.from_dict` (the shape of rows written before JobResult).

        Raises:
            StaleJob: the job is not running (under ``worker_id``): it was requeued, cancelled or finished.
        """
        who = actor or worker_id or "worker"
        with self.transaction():
            job = self._running_job(job_id, worker_id)
            outcome = result if isinstance(result, JobResult) else JobResult.from_dict(result)
            writes_metrics = outcome.kind == "metrics" and job.candidate_id is not None and outcome.record is not None
            now = _now()
            self.conn.execute(
                "UPDATE jobs SET status='done', result_json=?, ended_at=?, updated_at=?, error='' WHERE id=?",
                (_dumps(outcome.to_dict(job.candidate_id if writes_metrics else None)), now, now, job_id),
            )
            self._event("job", "running", "done", who, job.kind,
                        run_id=job.run_id, candidate_id=job.candidate_id, job_id=job_id)
            if job.candidate_id is not None:
                if writes_metrics:
                    self._write_metrics(job.candidate_id, outcome.record)
                self._follow_job(job.candidate_id, "done", who, job.kind, job_id=job_id)
        return self.get_job(job_id)

    def fail_job(
        self, job_id: int, error: str, worker_id: str | None = None, actor: str | None = None
    ) -> JobRecord:
        """Mark a running job (and its candidate) failed with a clean one-line error message."""
        who = actor or worker_id or "worker"
        with self.transaction():
            job = self._running_job(job_id, worker_id)
            now = _now()
            msg = redact(error)
            self.conn.execute(
                "UPDATE jobs SET status='failed', error=?, ended_at=?, updated_at=? WHERE id=?",
                (msg, now, now, job_id),
            )
            self._event("job", "running", "failed", who, msg,
                        run_id=job.run_id, candidate_id=job.candidate_id, job_id=job_id)
            if job.candidate_id is not None:
                self._follow_job(job.candidate_id, "failed", who, msg, error=msg, job_id=job_id)
        return self.get_job(job_id)

    def cancel_job(self, job_id: int, actor: str = "") -> JobRecord:
        """Cancel a job: a queued one at once; a running one is flagged and its handler stops.

        Raises:
            IllegalTransition: the job already ended.
        """
        with self.transaction():
            job = self.get_job(job_id)
            if job.status == "queued":
                self._end_cancelled(job, actor)
            elif job.status == "running":
                self.conn.execute("UPDATE jobs SET cancel_requested=1, updated_at=? WHERE id=?", (_now(), job_id))
                self._event("job", "running", "running", actor, "cancellation requested",
                            run_id=job.run_id, candidate_id=job.candidate_id, job_id=job_id)
            else:
                raise IllegalTransition(f"job {job_id} is already {job.status}; nothing to cancel")
        return self.get_job(job_id)

    def finish_cancelled(self, job_id: int, worker_id: str | None = None) -> JobRecord:
        """The worker's side of a cancellation: the handler stopped, mark the job cancelled."""
        with self.transaction():
            job = self._running_job(job_id, worker_id)
            self._end_cancelled(job, worker_id or "worker")
        return self.get_job(job_id)

    def _end_cancelled(self, job: JobRecord, actor: str) -> None:
        now = _now()
        self.conn.execute(
            "UPDATE jobs SET status='cancelled', ended_at=?, updated_at=? WHERE id=?", (now, now, job.id)
        )
        self._event("job", job.status, "cancelled", actor, job.kind,
                    run_id=job.run_id, candidate_id=job.candidate_id, job_id=job.id)
        if job.candidate_id is not None:
            self._follow_job(job.candidate_id, "cancelled", actor, "cancelled", job_id=job.id)

    def requeue_job(self, job_id: int, worker_id: str | None, reason: str, *, count_attempt: bool = False) -> JobRecord:
        """Give a running job back to the queue (worker stopping, or its worker died).

        ``count_attempt=False`` (a clean stop) does not use up one of the job's attempts.
        When the attempts are used up the job fails instead.
        """
        with self.transaction():
            job = self._running_job(job_id, worker_id)
            self._requeue(job, reason, worker_id or "store", count_attempt)
        return self.get_job(job_id)

    def _requeue(self, job: JobRecord, reason: str, actor: str, count_attempt: bool) -> None:
        if job.cancel_requested:  # a person asked to cancel it: do not run it again
            self._end_cancelled(job, actor)
            return
        attempts = job.attempts if count_attempt else max(0, job.attempts - 1)
        now = _now()
        if attempts >= job.max_attempts:
            msg = f"{reason}; gave up after {attempts} attempt(s) (max_attempts={job.max_attempts})"
            self.conn.execute(
                "UPDATE jobs SET status='failed', attempts=?, error=?, ended_at=?, updated_at=? WHERE id=?",
                (attempts, msg, now, now, job.id),
            )
            self._event("job", "running", "failed", actor, msg,
                        run_id=job.run_id, candidate_id=job.candidate_id, job_id=job.id)
            if job.candidate_id is not None:
                self._follow_job(job.candidate_id, "failed", actor, msg, error=msg, job_id=job.id)
            return
        self.conn.execute(
            "UPDATE jobs SET status='queued', attempts=?, worker_id=NULL, heartbeat_at=NULL, "
            "progress_json='{}', updated_at=? WHERE id=?",
            (attempts, now, job.id),
        )
        self._event("job", "running", "queued", actor, reason,
                    run_id=job.run_id, candidate_id=job.candidate_id, job_id=job.id)
        if job.candidate_id is not None:
            self._follow_job(job.candidate_id, "queued", actor, reason, job_id=job.id)

    def requeue_stale(self, stale_after_s: float, actor: str = "store") -> list[int]:
        """Requeue (or fail, past max_attempts) running jobs whose heartbeat is older than ``stale_after_s``."""
        with self.transaction():
            rows = self._all(
                "SELECT * FROM jobs WHERE status='running' AND (heartbeat_at IS NULL OR heartbeat_at < ?)",
                (_now() - stale_after_s,),
            )
            for r in rows:
                self._requeue(_job(r), f"worker {r['worker_id']} stopped heartbeating", actor, True)
        return [int(r["id"]) for r in rows]

    def _early_kill(self, job: JobRecord) -> bool:
        """True when a dead worker's job need not use up an attempt (see :data:`EARLY_KILL_S`)."""
        started = getattr(job, "started_at", None)
        if started is None or job.progress or _now() - float(started) > EARLY_KILL_S:
            return False
        free = self._one(
            "SELECT COUNT(*) AS n FROM events WHERE job_id=? AND entity='job' AND to_status='queued' "
            "AND detail LIKE '%(not counted as an attempt)%'", (job.id,),
        )
        return int(free["n"]) < MAX_FREE_REQUEUES

    def requeue_orphans(self, host: str | None = None, actor: str = "store") -> list[int]:
        """Requeue running jobs whose worker process on this host is gone (found at once, no timeout)."""
        host = host or socket.gethostname()
        with self.transaction():
            rows = self._all(
                "SELECT j.*, w.pid AS w_pid FROM jobs j JOIN workers w ON w.id = j.worker_id "
                "WHERE j.status='running' AND w.host=?",
                (host,),
            )
            dead = [r for r in rows if not _pid_alive(int(r["w_pid"]))]
            for r in dead:
                d = dict(r)
                d.pop("w_pid")
                job = _job(d)
                reason = f"worker {r['worker_id']} (pid {r['w_pid']}) is gone"
                count = not self._early_kill(job)
                if not count:
                    reason += (f" {EARLY_KILL_S:g} s or less after it started the job, before any progress "
                               "(not counted as an attempt)")
                self._requeue(job, reason, actor, count)
            # Workers killed without a goodbye: mark them so the app does not wait for their heartbeat to age.
            for w in self._all("SELECT id, pid FROM workers WHERE status='running' AND host=?", (host,)):
                if not _pid_alive(int(w["pid"])):
                    self.conn.execute("UPDATE workers SET status='stopped', stopped_at=? WHERE id=?",
                                      (_now(), w["id"]))
                    self._event("worker", "running", "stopped", actor, f"pid {w['pid']} is gone")
        return [int(r["id"]) for r in dead]

    # ------------------------------------------------------------------ workers

    def register_worker(self, worker_id: str, executor: str = "local", pid: int | None = None,
                        host: str | None = None) -> WorkerRecord:
        """Record a starting worker process."""
        now = _now()
        with self.transaction():
            self.conn.execute(
                "INSERT OR REPLACE INTO workers (id, pid, host, executor, status, started_at, heartbeat_at) "
                "VALUES (?, ?, ?, ?, 'running', ?, ?)",
                (worker_id, pid or os.getpid(), host or socket.gethostname(), executor, now, now),
            )
            self._event("worker", None, "running", worker_id, f"{executor} executor, pid {pid or os.getpid()}")
        return self._worker(worker_id)

    def heartbeat_worker(self, worker_id: str) -> None:
        """Refresh a worker's heartbeat."""
        with self.transaction():
            self.conn.execute("UPDATE workers SET heartbeat_at=? WHERE id=?", (_now(), worker_id))

    def stop_worker(self, worker_id: str) -> None:
        """Record a clean worker exit."""
        with self.transaction():
            self.conn.execute(
                "UPDATE workers SET status='stopped', stopped_at=? WHERE id=?", (_now(), worker_id)
            )
            self._event("worker", "running", "stopped", worker_id, "")

    def _worker(self, worker_id: str, alive_within_s: float = 15.0) -> WorkerRecord:
        row = self._one("SELECT * FROM workers WHERE id=?", (worker_id,))
        if row is None:
            raise NotFound(f"no worker {worker_id}")
        return _worker_record(row, alive_within_s)

    def worker_status(self, alive_within_s: float = 15.0) -> list[WorkerRecord]:
        """Every known worker, newest first, with ``alive`` from its heartbeat."""
        rows = self._all("SELECT * FROM workers ORDER BY started_at DESC")
        return [_worker_record(r, alive_within_s) for r in rows]


def _job(row: sqlite3.Row | Mapping[str, Any]) -> JobRecord:
    d = dict(row)
    d["cancel_requested"] = bool(d["cancel_requested"])
    return JobRecord(**d)


def _worker_record(row: sqlite3.Row, alive_within_s: float) -> WorkerRecord:
    d = dict(row)
    d["alive"] = d["status"] == "running" and (_now() - float(d["heartbeat_at"])) <= alive_within_s
    return WorkerRecord(**d)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed child not yet reaped) still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True
