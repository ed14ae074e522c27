"""The store's connection core: transactions with lock retries, backups, the row helpers and shared settings.

Every part of :class:`nas_core.store.Store` (runs, queue, audit, queries) inherits
:class:`StoreCore`, so they all work over the one connection and the one transaction
stack it holds.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets as _secrets
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas_core.errors import UserError
from nas_core.records import OBJECTIVES, Metrics
from nas_core.redact import redact as _redact
from nas_core.store import schema
from nas_core.store.errors import (
    StoreBusy,
    StoreCorrupt,
    StoreError,
    StoreFull,
    _corrupt_message,
    _is_busy,
    _is_corrupt,
)

if TYPE_CHECKING:
    import sqlite_utils

    from nas_core.store.store import Store

log = logging.getLogger(__name__)


#: Seconds one attempt to take the write lock waits in SQLite's busy handler ($EQUINAS_BUSY_TIMEOUT_S).
DEFAULT_BUSY_TIMEOUT_S = 30.0
#: Seconds a write keeps retrying (with backoff) before it gives up with StoreBusy ($EQUINAS_LOCK_WAIT_S).
DEFAULT_LOCK_WAIT_S = 120.0
BUSY_TIMEOUT_ENV = "EQUINAS_BUSY_TIMEOUT_S"
LOCK_WAIT_ENV = "EQUINAS_LOCK_WAIT_S"
_BACKOFF_MAX_S = 2.0

#: A job whose worker died this soon after claiming it, before any progress report, is requeued
#: without using up an attempt: the worker was killed (a restart, a kill -9, Ctrl-C twice), the job
#: did nothing wrong. Attempts exist to stop a job that keeps killing its worker, so such free
#: requeues are allowed at most MAX_FREE_REQUEUES times per job; after that they count again.
EARLY_KILL_S = 5.0
MAX_FREE_REQUEUES = 2


def _setting(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise UserError(f"{name}={raw!r} is not a number of seconds") from exc
    if value < 0:
        raise UserError(f"{name}={raw!r} must not be negative")
    return value


def _ref_hash(config: Mapping[str, Any]) -> str:
    """The content hash of a run config's DatasetRef (``''`` for a path-only config)."""
    ref = config.get("dataset_ref") if isinstance(config, Mapping) else None
    return str(ref.get("content_hash") or "") if isinstance(ref, Mapping) else ""


#: database path -> (spec cache, metrics cache); see Store._candidate.
_PARSED: dict[str, tuple[dict, dict]] = {}


def _now() -> float:
    return time.time()


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _metrics_flat(metrics: Metrics) -> dict[str, float | None]:
    return {name: metrics.value(name) for name in OBJECTIVES}


def looks_like_metrics(result: Mapping[str, Any]) -> bool:
    """True when a dict is a bare ``Metrics.to_dict()`` (the shape of job results stored before JobResult).

    Kept for old imports only: the worker and the store read results as
    :class:`nas_core.jobresult.JobResult` and never guess from a dict's keys.
    """
    return isinstance(result, Mapping) and {"fairness", "hardware", "test_acc"} <= set(result)


class StoreCore:
    """One connection and its transactions; the base the store's parts share (see :class:`Store`)."""

    def __init__(self, conn: sqlite3.Connection, path: str, lock_wait_s: float = DEFAULT_LOCK_WAIT_S):
        """Use :meth:`Store.open`; this wraps an already configured connection."""
        self.conn = conn
        self.path = path
        self.lock_wait_s = lock_wait_s
        self._db: sqlite_utils.Database | None = None

    @property
    def db(self) -> sqlite_utils.Database:
        """A sqlite-utils view of the same connection, for ad-hoc queries and introspection."""
        if self._db is None:
            # Lazy: sqlite-utils pulls in pandas (half a second) and the worker never needs it.
            import sqlite_utils

            self._db = sqlite_utils.Database(self.conn, execute_plugins=False)
        return self._db

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with contextlib.suppress(sqlite3.ProgrammingError):
            self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """The schema version of the open database."""
        return schema.current_version(self.conn)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Store]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rollback on any exception); nested calls use savepoints."""
        if self.conn.in_transaction:
            name = f"sp_{_secrets.token_hex(6)}"
            self.conn.execute(f"SAVEPOINT {name}")
            try:
                yield self
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                    self.conn.execute(f"RELEASE SAVEPOINT {name}")
                raise
            else:
                self.conn.execute(f"RELEASE SAVEPOINT {name}")
            return
        self._begin()
        try:
            yield self
        except sqlite3.DatabaseError as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            self._raise_translated(exc)
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        else:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                self._raise_translated(exc)

    def _begin(self) -> None:
        """``BEGIN IMMEDIATE``, retried with backoff while another connection holds the write lock.

        Each attempt waits in SQLite's own busy handler (the busy timeout); between attempts the
        wait doubles up to 2 s, until ``lock_wait_s`` has passed. Then :class:`StoreBusy`: nothing
        was written, so the caller may simply try again later.
        """
        deadline = time.monotonic() + self.lock_wait_s
        delay = 0.05
        while True:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                left = deadline - time.monotonic()
                if not _is_busy(exc) or left <= 0:
                    self._raise_translated(exc)
                log.info("%s is locked by another connection; retrying in %.2f s", self.path, min(delay, left))
                time.sleep(min(delay, left))
                delay = min(delay * 2, _BACKOFF_MAX_S)

    def _raise_translated(self, exc: sqlite3.DatabaseError) -> None:
        new = self._translate(exc)
        if new is exc:
            raise exc
        raise new from exc

    def _translate(self, exc: sqlite3.DatabaseError) -> Exception:
        """A user-facing error for a lock held too long, a damaged file or a full disk; others unchanged."""
        if _is_busy(exc):
            return StoreBusy(
                f"the database {self.path} is locked by another program (a backup, an sqlite3 shell, another "
                f"EquiNAS process) and stayed locked for more than {self.lock_wait_s:g} s; nothing was changed. "
                f"Try again when it is released (setting {LOCK_WAIT_ENV} says how long to wait)"
            )
        if _is_corrupt(exc):
            return StoreCorrupt(_corrupt_message(self.path, str(exc)))
        if "full" in str(exc).lower():
            return StoreFull(f"the disk holding {self.path} is full; nothing was changed. Free some space and "
                             "try again")
        return exc

    def backup(self, dest: str | os.PathLike[str]) -> Path:
        """Copy the database to ``dest`` with SQLite's online backup API (safe while others write).

        Written to a temporary file beside ``dest``, synced, then renamed, so ``dest`` is never half a copy.

        Raises:
            StoreError: ``dest`` exists, its folder is missing, or the disk is full (nothing is left behind).
        """
        target = Path(dest).expanduser().resolve()
        if target.exists():
            raise StoreError(f"{target} already exists; choose a new file name for the backup")
        if not target.parent.is_dir():
            raise StoreError(f"folder {target.parent} does not exist; create it first")
        if target == Path(self.path).expanduser().resolve():
            raise StoreError("the backup must go to another file than the database itself")
        tmp = target.with_name(f".{target.name}.tmp-{_secrets.token_hex(4)}")
        try:
            out = sqlite3.connect(str(tmp))
            try:
                self.conn.backup(out, pages=1024, sleep=0.05)
            finally:
                out.close()
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except (sqlite3.Error, OSError) as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, sqlite3.DatabaseError):
                translated = self._translate(exc)
                if isinstance(translated, StoreError):
                    raise translated from exc
            raise StoreError(f"the backup to {target} failed ({exc}); nothing was written there") from exc
        return target

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check`` ("ok" when healthy)."""
        return str(self.conn.execute("PRAGMA integrity_check").fetchone()[0])

    # ------------------------------------------------------------------ helpers

    def _one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        cur = self.conn.execute(sql, tuple(params))
        cur.row_factory = sqlite3.Row
        return cur.fetchone()

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        cur = self.conn.execute(sql, tuple(params))
        cur.row_factory = sqlite3.Row
        return cur.fetchall()

    def _insert(self, table: str, row: Mapping[str, Any]) -> int:
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        cur = self.conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", tuple(row.values()))
        return int(cur.lastrowid)

    def _event(
        self,
        entity: str,
        from_status: str | None,
        to_status: str | None,
        actor: str,
        detail: str = "",
        *,
        run_id: int | None = None,
        candidate_id: int | None = None,
        job_id: int | None = None,
    ) -> None:
        self._insert(
            "events",
            {
                "time": _now(),
                "run_id": run_id,
                "candidate_id": candidate_id,
                "job_id": job_id,
                "entity": entity,
                "from_status": from_status,
                "to_status": to_status,
                "actor": actor,
                "detail": _redact(detail),
            },
        )
