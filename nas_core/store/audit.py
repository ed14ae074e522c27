"""The audit part of the store: events, LLM calls, feedback, notes, and the redaction every stored text passes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from nas_core.errors import UserError
from nas_core.redact import is_secret_name
from nas_core.redact import redact as _redact
from nas_core.store.core import (
    StoreCore,
    _dumps,
    _now,
)
from nas_core.store.records import (
    EventRecord,
    FeedbackRecord,
    LLMCallRecord,
    NoteRecord,
)

log = logging.getLogger(__name__)


def is_secret_key(name: str) -> bool:
    """True for mapping keys that name a secret (api_key, client_secret, access_token, password ...)."""
    return is_secret_name(name)


def scrub_secrets(value: Any) -> Any:
    """A copy of ``value`` with every secret-named key removed, at any depth."""
    if isinstance(value, Mapping):
        return {str(k): scrub_secrets(v) for k, v in value.items() if not is_secret_key(str(k))}
    if isinstance(value, list | tuple):
        return [scrub_secrets(v) for v in value]
    return value


def redact(text: str) -> str:
    """Every stored free text passes here: see :func:`nas_core.redact.redact` (known keys and key shapes)."""
    return _redact(text)


class AuditMixin(StoreCore):
    """Events, LLM calls, designer feedback and free notes."""

    # ------------------------------------------------------------------ LLM calls, feedback, events

    def add_llm_call(
        self,
        run_id: int,
        iteration: int | None,
        prompt: str,
        messages: Sequence[Mapping[str, Any]] = (),
        raw_answer: str = "",
        model: str = "",
        tokens_in: int | None = None,
        tokens_out: int | None = None,
        duration_s: float | None = None,
        error: str = "",
        decoding: str = "",
    ) -> LLMCallRecord:
        """Store one LLM call as sent and answered (secret values are redacted from every text)."""
        with self.transaction():
            call_id = self._insert(
                "llm_calls",
                {
                    "run_id": run_id,
                    "iteration": iteration,
                    "prompt": redact(prompt),
                    "messages_json": redact(_dumps(scrub_secrets(list(messages)))),
                    "raw_answer": redact(raw_answer or ""),
                    "model": model,
                    "tokens_in": tokens_in,
                    "tokens_out": tokens_out,
                    "duration_s": duration_s,
                    "error": redact(error or ""),
                    "decoding": decoding,
                    "created_at": _now(),
                },
            )
        return LLMCallRecord(**dict(self._one("SELECT * FROM llm_calls WHERE id=?", (call_id,))))

    def list_llm_calls(self, run_id: int, iteration: int | None = None) -> list[LLMCallRecord]:
        """A run's LLM calls (of one iteration), oldest first."""
        sql, params = "SELECT * FROM llm_calls WHERE run_id=?", [run_id]
        if iteration is not None:
            sql += " AND iteration=?"
            params.append(iteration)
        return [LLMCallRecord(**dict(r)) for r in self._all(sql + " ORDER BY id", params)]

    def add_feedback(
        self,
        run_id: int,
        kind: str,
        text: str,
        actor: str = "",
        *,
        candidate_id: int | None = None,
        iteration: int | None = None,
    ) -> FeedbackRecord:
        """Store a person's note (a rejection reason, an edit, a comment) on a candidate or iteration."""
        with self.transaction():
            fid = self._insert(
                "feedback",
                {
                    "run_id": run_id,
                    "candidate_id": candidate_id,
                    "iteration": iteration,
                    "kind": kind,
                    "text": redact(text),
                    "actor": actor,
                    "created_at": _now(),
                },
            )
        return FeedbackRecord(**dict(self._one("SELECT * FROM feedback WHERE id=?", (fid,))))

    def add_note(self, run_id: int, text: str, author: str = "", candidate_id: int | None = None) -> NoteRecord:
        """Keep a free note on a run or one of its candidates (schema v8); secrets are redacted.

        Raises:
            UserError: the note is empty.
        """
        text = (text or "").strip()
        if not text:
            raise UserError("the note is empty: write something first")
        with self.transaction():
            nid = self._insert("notes", {"run_id": run_id, "candidate_id": candidate_id, "text": redact(text),
                                         "author": author, "created_at": _now()})
        return NoteRecord(**dict(self._one("SELECT * FROM notes WHERE id=?", (nid,))))

    def list_notes(self, run_id: int) -> list[NoteRecord]:
        """A run's notes (its own and its candidates'), oldest first."""
        return [NoteRecord(**dict(r)) for r in self._all("SELECT * FROM notes WHERE run_id=? ORDER BY id", [run_id])]

    def list_feedback(self, run_id: int, iteration: int | None = None) -> list[FeedbackRecord]:
        """A run's feedback (of one iteration), oldest first."""
        sql, params = "SELECT * FROM feedback WHERE run_id=?", [run_id]
        if iteration is not None:
            sql += " AND iteration=?"
            params.append(iteration)
        return [FeedbackRecord(**dict(r)) for r in self._all(sql + " ORDER BY id", params)]

    def events(
        self,
        run_id: int | None = None,
        candidate_id: int | None = None,
        job_id: int | None = None,
        limit: int | None = 1000,
    ) -> list[EventRecord]:
        """State changes, oldest first (the last ``limit`` of them)."""
        sql, params = "SELECT * FROM events WHERE 1=1", []
        for col, val in (("run_id", run_id), ("candidate_id", candidate_id), ("job_id", job_id)):
            if val is not None:
                sql += f" AND {col}=?"
                params.append(val)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [EventRecord(**dict(r)) for r in reversed(self._all(sql, params))]
