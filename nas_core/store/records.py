"""Frozen records the store returns for rows that are not candidates.

Owns :class:`DatasetRecord`, :class:`RunRecord`, :class:`IterationRecord`,
:class:`JobRecord`, :class:`EventRecord`, :class:`LLMCallRecord`,
:class:`FeedbackRecord` and :class:`WorkerRecord`. JSON columns are kept as
text (``*_json``) so the records stay truly immutable; a property of the same
name without ``_json`` parses a fresh copy on every access.
Candidates use :class:`nas_core.records.Candidate`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from nas_core.jobresult import JobResult

#: Job life cycle. queued -> running -> done | failed | cancelled; running -> queued when requeued.
JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled")


@dataclass(frozen=True)
class DatasetRecord:
    """A registered data set: where it came from, what it contains, where its cache lives."""

    id: int
    name: str
    format: str
    source: str
    content_hash: str
    columns_json: str
    counts_json: str
    config_json: str
    cache_path: str
    created_at: float

    @property
    def columns(self) -> Any:
        """Parsed ``columns_json`` (a fresh copy)."""
        return json.loads(self.columns_json)

    @property
    def counts(self) -> Any:
        """Parsed ``counts_json`` (a fresh copy)."""
        return json.loads(self.counts_json)

    @property
    def config(self) -> Any:
        """Parsed ``config_json`` (a fresh copy)."""
        return json.loads(self.config_json)


@dataclass(frozen=True)
class RunRecord:
    """A search run and every setting it was started with (secrets scrubbed)."""

    id: int
    name: str
    engine: str
    dataset_id: int | None
    dataset_ref: str  # the data set's name, or the path the user gave when it is not registered
    status: str
    config_json: str
    created_at: float
    updated_at: float
    dataset_hash: str = ""  # content hash of the config's DatasetRef (migration 6); "" for path-only runs

    @property
    def config(self) -> dict[str, Any]:
        """Parsed ``config_json`` (a fresh copy)."""
        return json.loads(self.config_json)


@dataclass(frozen=True)
class IterationRecord:
    """One iteration of a run's loop."""

    id: int
    run_id: int
    number: int
    status: str
    started_at: float
    ended_at: float | None
    error: str


@dataclass(frozen=True)
class JobRecord:
    """One unit of work for the worker (an evaluation, a super-network training, ...)."""

    id: int
    kind: str
    payload_json: str
    run_id: int | None
    candidate_id: int | None
    status: str
    attempts: int
    max_attempts: int
    worker_id: str | None
    heartbeat_at: float | None
    progress_json: str
    result_json: str | None
    error: str
    cancel_requested: bool
    created_at: float
    started_at: float | None
    ended_at: float | None
    updated_at: float

    @property
    def payload(self) -> dict[str, Any]:
        """Parsed ``payload_json`` (a fresh copy)."""
        return json.loads(self.payload_json)

    @property
    def progress(self) -> dict[str, Any]:
        """Parsed ``progress_json``: the handler's latest progress report."""
        return json.loads(self.progress_json or "{}")

    @property
    def outcome(self) -> JobResult | None:
        """The handler's :class:`~nas_core.jobresult.JobResult` (None until done); reads older rows too."""
        return None if self.result_json is None else JobResult.from_dict(json.loads(self.result_json))

    @property
    def result(self) -> dict[str, Any] | None:
        """The result's record as a dict (None until done).

        A data result's record; a metrics result of a candidate's job is ``{"candidate_id": N}``
        (its metrics are the candidate's: ``store.get_candidate(N).metrics``).
        """
        outcome = self.outcome
        if outcome is None:
            return None
        record = outcome.as_dict()
        return record if record is not None else {"candidate_id": outcome.candidate_id}


@dataclass(frozen=True)
class EventRecord:
    """One state change: who moved what from which status to which, and when."""

    id: int
    time: float
    run_id: int | None
    candidate_id: int | None
    job_id: int | None
    entity: str  # candidate | job | run | iteration | worker
    from_status: str | None
    to_status: str | None
    actor: str
    detail: str


@dataclass(frozen=True)
class LLMCallRecord:
    """One call to the language model, as sent and as answered (never the key)."""

    id: int
    run_id: int
    iteration: int | None
    prompt: str
    messages_json: str
    raw_answer: str
    model: str
    tokens_in: int | None
    tokens_out: int | None
    duration_s: float | None
    error: str
    created_at: float
    decoding: str = ""  # constrained-decoding rung: json_schema | ollama | json_object | text ("" before v7)

    @property
    def messages(self) -> list[Any]:
        """Parsed ``messages_json`` (a fresh copy)."""
        return json.loads(self.messages_json)


@dataclass(frozen=True)
class NoteRecord:
    """A free note on a run (``candidate_id`` None) or on one candidate; never sent to a designer."""

    id: int
    run_id: int
    candidate_id: int | None
    text: str
    author: str
    created_at: float


@dataclass(frozen=True)
class FeedbackRecord:
    """A person's note about a candidate or an iteration (e.g. a rejection reason)."""

    id: int
    run_id: int
    candidate_id: int | None
    iteration: int | None
    kind: str  # reject | edit | note | ...
    text: str
    actor: str
    created_at: float


@dataclass(frozen=True)
class WorkerRecord:
    """A worker process as last seen through its heartbeat."""

    id: str
    pid: int
    host: str
    executor: str
    status: str  # running | stopped
    started_at: float
    heartbeat_at: float
    stopped_at: float | None
    alive: bool  # status running and heartbeat younger than the liveness window
