"""The run store: one SQLite file holding everything a search produces.

Owns :class:`Store` (open/migrate, transactions, every read and write of data
sets, runs, iterations, candidates, metrics, LLM calls, feedback, jobs, events
and worker heartbeats) and the errors a user can meet there.

Decisions (DESIGN.md leaves them open):

- One connection per :class:`Store`; a Store belongs to the thread that
  opened it (``check_same_thread`` stays on unless the caller guarantees its
  own locking). The worker's heartbeat thread and Streamlit each open their own.
- The connection is in driver autocommit mode (``isolation_level=None``) so
  that transactions are explicit: :meth:`Store.transaction` issues
  ``BEGIN IMMEDIATE`` (takes the write lock up front, so read-then-write
  sequences such as approve and claim are race-free across processes) and
  nests with savepoints.
- WAL journal, ``synchronous=NORMAL`` (durable against a killed process; only
  a power cut can lose the last commits), a busy timeout, foreign keys on.
- Secrets never reach the file: run configs lose every key named like
  api_key/secret/token/password, and the values of such environment variables
  are redacted from free text (LLM prompts, answers, errors).
- Times are unix seconds (floats).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets as _secrets
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas_core.errors import UserError
from nas_core.records import CANDIDATE_STATUSES, OBJECTIVES, Candidate, Metrics, Proposal
from nas_core.redact import is_secret_name
from nas_core.redact import redact as _redact
from nas_core.space import ArchSpec, BlockSpec, HeadSpec, StemSpec
from nas_core.store import schema
from nas_core.store.records import (
    DatasetRecord,
    EventRecord,
    FeedbackRecord,
    IterationRecord,
    JobRecord,
    LLMCallRecord,
    NoteRecord,
    RunRecord,
    WorkerRecord,
)

if TYPE_CHECKING:
    import pandas as pd
    import sqlite_utils

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

#: (path, inode) of database files whose quick_check passed in this process (checked once per process).
_CHECKED: set[tuple[str, int]] = set()


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


class StoreError(UserError):
    """Base of the store's user-facing errors."""


class StoreOpenError(StoreError):
    """The database cannot be opened where the user pointed (missing or read-only folder, bad file)."""


class StoreBusy(StoreError):
    """Another program held the database's write lock for longer than this store waits; nothing was changed."""


class StoreFull(StoreError):
    """The disk holding the database is full; the transaction was rolled back, nothing was changed."""


class StoreCorrupt(StoreOpenError):
    """The database file is damaged (SQLite's quick_check failed or a page cannot be read)."""


def _is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _is_corrupt(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text or "corrupt" in text


class NotFound(StoreError):
    """A data set, run, candidate or job id/name that is not in the store."""


class DuplicateCandidate(StoreError):
    """The run already has a candidate with the same canonical key."""

    def __init__(self, message: str, existing_id: int):
        super().__init__(message)
        self.existing_id = existing_id


class DuplicateDataset(StoreError):
    """A data set with that name is already registered."""


class IllegalTransition(StoreError):
    """A status change that the current status does not allow (e.g. approving twice)."""


class StaleJob(StoreError):
    """A worker tried to finish a job that is no longer its own (it was requeued or cancelled)."""


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


def _set_wal(conn: sqlite3.Connection, attempts: int = 100) -> None:
    """Switch to WAL, retrying while another process does the same.

    SQLite answers "database is locked" at once, without the busy handler, when two
    connections change the journal mode of a new file at the same moment.
    """
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.02 + 0.01 * (attempt % 5))


#: database path -> (spec cache, metrics cache); see Store._candidate.
_PARSED: dict[str, tuple[dict, dict]] = {}


def _now() -> float:
    return time.time()


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _metrics_flat(metrics: Metrics) -> dict[str, float | None]:
    return {name: metrics.value(name) for name in OBJECTIVES}


def looks_like_metrics(result: Mapping[str, Any]) -> bool:
    """True when a handler's result is a ``Metrics.to_dict()``."""
    return isinstance(result, Mapping) and {"fairness", "hardware", "test_acc"} <= set(result)


class Store:
    """Access to one EquiNAS database file. Open with :meth:`Store.open`."""

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

    # ------------------------------------------------------------------ open / close

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        busy_timeout_s: float | None = None,
        lock_wait_s: float | None = None,
        check_same_thread: bool = True,
        migrate: bool = True,
    ) -> Store:
        """Open (creating and migrating if needed) the database at ``path``.

        Args:
            path: the SQLite file; its folder must exist and be writable.
            busy_timeout_s: how long one attempt at the write lock waits in SQLite's busy handler
                (None: ``$EQUINAS_BUSY_TIMEOUT_S`` or 30 s).
            lock_wait_s: how long a write keeps retrying, with backoff, before it gives up with
                :class:`StoreBusy` (None: ``$EQUINAS_LOCK_WAIT_S`` or 120 s). A backup, a long reader or an
                ``sqlite3`` shell holding the lock for less than this delays writes, never loses them.
            check_same_thread: leave True unless the caller serializes all use itself.
            migrate: apply pending migrations (False: refuse an outdated database).

        Raises:
            StoreOpenError: missing or read-only folder, or a file that is not a database.
            StoreCorrupt: ``PRAGMA quick_check`` found damage (nothing is written to such a file).
            SchemaTooNew: the file was written by a newer EquiNAS (left untouched).
        """
        p = Path(path).expanduser()
        spath = str(p)
        if busy_timeout_s is None:
            busy_timeout_s = _setting(BUSY_TIMEOUT_ENV, DEFAULT_BUSY_TIMEOUT_S)
        if lock_wait_s is None:
            lock_wait_s = _setting(LOCK_WAIT_ENV, DEFAULT_LOCK_WAIT_S)
        busy_timeout_s = min(busy_timeout_s, max(lock_wait_s, 0.0)) if lock_wait_s else busy_timeout_s
        _check_location(p)
        try:
            conn = sqlite3.connect(
                spath, timeout=busy_timeout_s, isolation_level=None, check_same_thread=check_same_thread
            )
        except sqlite3.Error as exc:
            raise StoreOpenError(f"cannot open database {spath}: {exc}; check the path and permissions") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            _quick_check(conn, p, spath)
            # Refuse a newer database before anything below writes to it.
            version = schema.check_not_newer(conn, spath)
            _set_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            if migrate:
                schema.migrate(conn, spath)
            elif version < schema.SCHEMA_VERSION:
                raise StoreOpenError(
                    f"database {spath} has schema version {version}, this code needs "
                    f"{schema.SCHEMA_VERSION}; open it once with migration enabled"
                )
        except sqlite3.DatabaseError as exc:
            conn.close()
            if _is_busy(exc):
                raise StoreBusy(f"{spath} is locked by another program (a backup, an sqlite3 shell, another "
                                f"EquiNAS process) for more than {lock_wait_s:g} s; nothing was changed. Close "
                                f"that program or wait, then try again (setting {LOCK_WAIT_ENV})") from exc
            if _is_corrupt(exc):
                raise StoreCorrupt(_corrupt_message(spath, str(exc))) from exc
            raise StoreOpenError(
                f"{spath} is not a usable EquiNAS database ({exc}); choose another --db path"
            ) from exc
        except BaseException:
            conn.close()
            raise
        return cls(conn, spath, lock_wait_s)

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
                "detail": redact(detail),
            },
        )

    # ------------------------------------------------------------------ data sets

    def register_dataset(
        self,
        name: str,
        format: str,  # noqa: A002 - the column's name in the contract
        source: str,
        content_hash: str,
        columns: Mapping[str, Any] | Sequence[Any],
        counts: Mapping[str, Any],
        config: Mapping[str, Any],
        cache_path: str | os.PathLike[str] = "",
    ) -> DatasetRecord:
        """Register a data set under a unique name.

        Raises:
            DuplicateDataset: the name is taken (choose another name or delete the old one).
        """
        if not str(name).strip():
            raise StoreError("a data set needs a non-empty name")
        try:
            with self.transaction():
                new_id = self._insert(
                    "datasets",
                    {
                        "name": name,
                        "format": format,
                        "source": str(source),
                        "content_hash": content_hash,
                        "columns_json": _dumps(columns),
                        "counts_json": _dumps(counts),
                        "config_json": _dumps(scrub_secrets(config)),
                        "cache_path": str(cache_path),
                        "created_at": _now(),
                    },
                )
        except sqlite3.IntegrityError as exc:
            raise DuplicateDataset(
                f"a data set named {name!r} is already registered; choose another name"
            ) from exc
        return self.get_dataset(new_id)

    def update_dataset(
        self, id_or_name: int | str, *, cache_path: str | None = None, config: Mapping[str, Any] | None = None
    ) -> DatasetRecord:
        """Change a data set's cache path or config."""
        ds = self.get_dataset(id_or_name)
        with self.transaction():
            if cache_path is not None:
                self.conn.execute("UPDATE datasets SET cache_path=? WHERE id=?", (str(cache_path), ds.id))
            if config is not None:
                self.conn.execute(
                    "UPDATE datasets SET config_json=? WHERE id=?", (_dumps(scrub_secrets(config)), ds.id)
                )
        return self.get_dataset(ds.id)

    def list_datasets(self) -> list[DatasetRecord]:
        """Every registered data set, oldest first."""
        return [DatasetRecord(**dict(r)) for r in self._all("SELECT * FROM datasets ORDER BY id")]

    def find_dataset(self, id_or_name: int | str) -> DatasetRecord | None:
        """The data set with that id or name, or None."""
        if isinstance(id_or_name, int) or (isinstance(id_or_name, str) and id_or_name.isdigit()):
            row = self._one("SELECT * FROM datasets WHERE id=?", (int(id_or_name),))
            if row is not None:
                return DatasetRecord(**dict(row))
        row = self._one("SELECT * FROM datasets WHERE name=?", (str(id_or_name),))
        return None if row is None else DatasetRecord(**dict(row))

    def get_dataset(self, id_or_name: int | str) -> DatasetRecord:
        """The data set with that id or name.

        Raises:
            NotFound: with the names that do exist.
        """
        ds = self.find_dataset(id_or_name)
        if ds is None:
            names = ", ".join(d.name for d in self.list_datasets()) or "none"
            raise NotFound(f"no data set {id_or_name!r} in {self.path}; registered: {names}")
        return ds

    # ------------------------------------------------------------------ runs

    def create_run(
        self, name: str, engine: str, dataset_ref: int | str | None, config: Mapping[str, Any], actor: str = ""
    ) -> RunRecord:
        """Create a run with every setting in ``config`` (secret-named keys are dropped).

        ``dataset_ref`` is a registered data set's id or name (linked by id), or
        any other text (e.g. a folder path) kept as given.
        """
        ds = self.find_dataset(dataset_ref) if dataset_ref not in (None, "") else None
        if isinstance(dataset_ref, int) and ds is None:
            raise NotFound(f"no data set with id {dataset_ref}; register it first")
        now = _now()
        with self.transaction():
            run_id = self._insert(
                "runs",
                {
                    "name": name,
                    "engine": engine,
                    "dataset_id": ds.id if ds else None,
                    "dataset_ref": ds.name if ds else ("" if dataset_ref is None else str(dataset_ref)),
                    "status": "created",
                    "config_json": _dumps(scrub_secrets(config)),
                    "dataset_hash": _ref_hash(config),
                    "created_at": now,
                    "updated_at": now,
                },
            )
            self._event("run", None, "created", actor, f"run {name!r} ({engine})", run_id=run_id)
        return self.get_run(run_id)

    def get_run(self, run_id: int) -> RunRecord:
        """The run with that id (NotFound otherwise)."""
        row = self._one("SELECT * FROM runs WHERE id=?", (int(run_id),))
        if row is None:
            raise NotFound(f"no run with id {run_id} in {self.path}; list runs to see the ids")
        return RunRecord(**dict(row))

    def list_runs(self) -> list[RunRecord]:
        """Every run, newest first."""
        return [RunRecord(**dict(r)) for r in self._all("SELECT * FROM runs ORDER BY id DESC")]

    def update_run(
        self,
        run_id: int,
        status: str | None = None,
        config: Mapping[str, Any] | None = None,
        actor: str = "",
        detail: str = "",
    ) -> RunRecord:
        """Change a run's status and/or replace its config (secrets scrubbed)."""
        with self.transaction():
            run = self.get_run(run_id)
            if config is not None:
                self.conn.execute(
                    "UPDATE runs SET config_json=?, dataset_hash=?, updated_at=? WHERE id=?",
                    (_dumps(scrub_secrets(config)), _ref_hash(config), _now(), run.id),
                )
            if status is not None and status != run.status:
                self.conn.execute("UPDATE runs SET status=?, updated_at=? WHERE id=?", (status, _now(), run.id))
                self._event("run", run.status, status, actor, detail, run_id=run.id)
        return self.get_run(run_id)

    # ------------------------------------------------------------------ iterations

    def start_iteration(self, run_id: int, actor: str = "", status: str = "proposing") -> IterationRecord:
        """Open the run's next iteration (numbers start at 1)."""
        with self.transaction():
            self.get_run(run_id)
            row = self.conn.execute(
                "SELECT COALESCE(MAX(number), 0) FROM iterations WHERE run_id=?", (run_id,)
            ).fetchone()
            number = int(row[0]) + 1
            self._insert(
                "iterations",
                {"run_id": run_id, "number": number, "status": status, "started_at": _now(), "error": ""},
            )
            self._event("iteration", None, status, actor, f"iteration {number}", run_id=run_id)
        return self.get_iteration(run_id, number)

    def get_iteration(self, run_id: int, number: int) -> IterationRecord:
        """Iteration ``number`` of a run (NotFound otherwise)."""
        row = self._one("SELECT * FROM iterations WHERE run_id=? AND number=?", (run_id, number))
        if row is None:
            raise NotFound(f"run {run_id} has no iteration {number}")
        return IterationRecord(**dict(row))

    def list_iterations(self, run_id: int) -> list[IterationRecord]:
        """A run's iterations in order."""
        rows = self._all("SELECT * FROM iterations WHERE run_id=? ORDER BY number", (run_id,))
        return [IterationRecord(**dict(r)) for r in rows]

    def set_iteration_status(self, run_id: int, number: int, status: str, actor: str = "") -> IterationRecord:
        """Move an open iteration to another status (e.g. proposing -> waiting -> evaluating)."""
        with self.transaction():
            it = self.get_iteration(run_id, number)
            if it.status != status:
                self.conn.execute("UPDATE iterations SET status=? WHERE id=?", (status, it.id))
                self._event("iteration", it.status, status, actor, f"iteration {number}", run_id=run_id)
        return self.get_iteration(run_id, number)

    def finish_iteration(
        self, run_id: int, number: int, status: str = "done", error: str = "", actor: str = ""
    ) -> IterationRecord:
        """Close an iteration with its final status (done | failed) and error text."""
        with self.transaction():
            it = self.get_iteration(run_id, number)
            self.conn.execute(
                "UPDATE iterations SET status=?, ended_at=?, error=? WHERE id=?",
                (status, _now(), redact(error), it.id),
            )
            self._event("iteration", it.status, status, actor, error or f"iteration {number}", run_id=run_id)
        return self.get_iteration(run_id, number)

    # ------------------------------------------------------------------ candidates

    _CANDIDATE_SELECT = (
        "SELECT c.*, m.metrics_json AS metrics_json, m.id AS metrics_id, m.created_at AS metrics_at "
        "FROM candidates c LEFT JOIN metrics m ON m.candidate_id = c.id"
    )

    #: Parsed specs and metrics kept per Store: both records are immutable and a candidate's
    #: spec never changes, so re-reading a run of 10,000 candidates skips all JSON parsing.
    _CACHE_MAX = 50_000

    def _candidate(self, row: sqlite3.Row) -> Candidate:
        d = dict(row)
        # Process-wide (per database file): the app opens a new Store on every rerun, and parsed
        # specs/metrics never change under the same (id, key) / (metrics id, written at).
        caches = _PARSED.setdefault(str(self.path), ({}, {}))
        specs: dict[tuple[int, str], ArchSpec] = caches[0]
        metrics_cache: dict[tuple[int, float], Metrics] = caches[1]
        if len(specs) > self._CACHE_MAX or len(metrics_cache) > self._CACHE_MAX:
            specs.clear()
            metrics_cache.clear()
        skey = (d["id"], d["key"])
        spec = specs.get(skey)
        if spec is None:
            spec = specs[skey] = _parse_stored_spec(d["spec_json"])
        metrics = None
        if d.get("metrics_json"):
            mkey = (d["metrics_id"], d["metrics_at"])
            metrics = metrics_cache.get(mkey)
            if metrics is None:
                metrics = metrics_cache[mkey] = Metrics.from_dict(json.loads(d["metrics_json"]))
        return Candidate(
            id=d["id"],
            run_id=d["run_id"],
            iteration=d["iteration"],
            spec=spec,
            key=d["key"],
            origin=d["origin"],
            status=d["status"],
            rationale=d["rationale"],
            predicted=tuple((str(k), float(v)) for k, v in json.loads(d["predicted_json"])),
            metrics=metrics,
            error=d["error"],
            baseline=d["baseline"],
            extra=tuple((str(k), v) for k, v in json.loads(d["extra_json"])),
        )

    def add_candidate(
        self,
        run_id: int,
        iteration: int,
        proposal: Proposal,
        status: str = "proposed",
        *,
        baseline: str = "",
        extra: Mapping[str, Any] | None = None,
        actor: str = "",
    ) -> Candidate:
        """Store a proposal as a candidate of the run.

        Raises:
            DuplicateCandidate: the run already holds the same network (same canonical key).
        """
        spec = proposal.spec
        key = spec.key
        now = _now()
        with self.transaction():
            self.get_run(run_id)
            existing = self._one("SELECT id, status FROM candidates WHERE run_id=? AND key=?", (run_id, key))
            if existing is not None:
                raise DuplicateCandidate(
                    f"run {run_id} already has this architecture as candidate {existing['id']} "
                    f"(status {existing['status']}); propose a different one",
                    int(existing["id"]),
                )
            cid = self._insert(
                "candidates",
                {
                    "run_id": run_id,
                    "iteration": int(iteration),
                    "spec_json": spec.to_json(),
                    "key": key,
                    "origin": proposal.origin,
                    "status": status,
                    "rationale": redact(proposal.rationale),
                    "predicted_json": _dumps([[k, float(v)] for k, v in proposal.predicted]),
                    "baseline": baseline,
                    "error": "",
                    "extra_json": _dumps([[k, v] for k, v in (extra or {}).items()]),
                    "created_at": now,
                    "updated_at": now,
                },
            )
            self._event(
                "candidate", None, status, actor or proposal.origin, f"proposed by {proposal.origin}",
                run_id=run_id, candidate_id=cid,
            )
        return self.get_candidate(cid)

    def get_candidate(self, candidate_id: int) -> Candidate:
        """One candidate with its metrics (NotFound otherwise)."""
        row = self._one(self._CANDIDATE_SELECT + " WHERE c.id=?", (int(candidate_id),))
        if row is None:
            raise NotFound(f"no candidate with id {candidate_id} in {self.path}")
        return self._candidate(row)

    def find_candidate(self, run_id: int, key: str) -> Candidate | None:
        """The run's candidate with that canonical key, or None."""
        row = self._one(self._CANDIDATE_SELECT + " WHERE c.run_id=? AND c.key=?", (run_id, key))
        return None if row is None else self._candidate(row)

    def list_candidates(
        self, run_id: int, status: str | Iterable[str] | None = None, iteration: int | None = None
    ) -> list[Candidate]:
        """A run's candidates (optionally of some statuses / one iteration), oldest first, with metrics."""
        sql = self._CANDIDATE_SELECT + " WHERE c.run_id=?"
        params: list[Any] = [run_id]
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            sql += f" AND c.status IN ({','.join('?' for _ in statuses)})"
            params += statuses
        if iteration is not None:
            sql += " AND c.iteration=?"
            params.append(int(iteration))
        return [self._candidate(r) for r in self._all(sql + " ORDER BY c.id", params)]

    def known_keys(self, run_id: int) -> frozenset[str]:
        """Canonical keys of every candidate of the run (any status)."""
        return frozenset(r[0] for r in self.conn.execute("SELECT key FROM candidates WHERE run_id=?", (run_id,)))

    def transition(
        self,
        candidate_id: int,
        from_statuses: str | Iterable[str],
        to_status: str,
        actor: str,
        detail: str = "",
        *,
        error: str | None = None,
    ) -> Candidate:
        """Atomically move a candidate to ``to_status`` if its status is one of ``from_statuses``.

        Raises:
            IllegalTransition: the candidate's current status is not allowed (message says which it is).
            NotFound: no such candidate.
        """
        allowed = [from_statuses] if isinstance(from_statuses, str) else list(from_statuses)
        with self.transaction():
            self._transition(candidate_id, allowed, to_status, actor, detail, error)
        return self.get_candidate(candidate_id)

    def _transition(
        self,
        candidate_id: int,
        allowed: list[str],
        to_status: str,
        actor: str,
        detail: str = "",
        error: str | None = None,
        job_id: int | None = None,
    ) -> str:
        row = self._one("SELECT run_id, status FROM candidates WHERE id=?", (candidate_id,))
        if row is None:
            raise NotFound(f"no candidate with id {candidate_id} in {self.path}")
        current = row["status"]
        if current not in allowed:
            raise IllegalTransition(
                f"candidate {candidate_id} is {current!r}; it can become {to_status!r} only from "
                f"{' or '.join(repr(s) for s in allowed)}"
            )
        sets = "status=?, updated_at=?"
        params: list[Any] = [to_status, _now()]
        if error is not None:
            sets += ", error=?"
            params.append(redact(error))
        self.conn.execute(f"UPDATE candidates SET {sets} WHERE id=?", (*params, candidate_id))
        self._event(
            "candidate", current, to_status, actor, detail,
            run_id=row["run_id"], candidate_id=candidate_id, job_id=job_id,
        )
        return current

    def _follow_job(
        self,
        candidate_id: int,
        to_status: str,
        actor: str,
        detail: str = "",
        error: str | None = None,
        job_id: int | None = None,
    ) -> None:
        """Move a candidate along with its job, whatever its status was (the job is the truth)."""
        allowed = [s for s in CANDIDATE_STATUSES if s != to_status]
        row = self._one("SELECT status FROM candidates WHERE id=?", (candidate_id,))
        if row is None or row["status"] == to_status:
            return
        self._transition(candidate_id, allowed, to_status, actor, detail, error, job_id)

    def approve(
        self,
        candidate_id: int,
        actor: str,
        job_kind: str,
        payload: Mapping[str, Any],
        *,
        max_attempts: int = 3,
    ) -> JobRecord:
        """proposed -> queued plus one job of ``job_kind``, in one transaction.

        Raises:
            IllegalTransition: the candidate is not waiting for approval (e.g. approved already).
        """
        with self.transaction():
            self._transition(candidate_id, ["proposed"], "queued", actor, f"approved by {actor}")
            run_id = int(self._one("SELECT run_id FROM candidates WHERE id=?", (candidate_id,))["run_id"])
            job_id = self._new_job(job_kind, payload, run_id, candidate_id, max_attempts, actor)
        return self.get_job(job_id)

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

    def set_progress(self, job_id: int, progress: Mapping[str, Any], worker_id: str | None = None) -> None:
        """Write the handler's latest progress report into the job row (and refresh its heartbeat)."""
        with self.transaction():
            sql = "UPDATE jobs SET progress_json=?, heartbeat_at=?, updated_at=? WHERE id=? AND status='running'"
            params: list[Any] = [_dumps(dict(progress)), _now(), _now(), job_id]
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
        self, job_id: int, result: Mapping[str, Any], worker_id: str | None = None, actor: str | None = None
    ) -> JobRecord:
        """Finish a running job: result, metrics + group metrics of its candidate, statuses, events.

        All in one transaction, so a crash leaves either the whole result or none of it.

        Raises:
            StaleJob: the job is not running (under ``worker_id``): it was requeued, cancelled or finished.
        """
        who = actor or worker_id or "worker"
        with self.transaction():
            job = self._running_job(job_id, worker_id)
            now = _now()
            self.conn.execute(
                "UPDATE jobs SET status='done', result_json=?, ended_at=?, updated_at=?, error='' WHERE id=?",
                (_dumps(dict(result)), now, now, job_id),
            )
            self._event("job", "running", "done", who, job.kind,
                        run_id=job.run_id, candidate_id=job.candidate_id, job_id=job_id)
            if job.candidate_id is not None:
                if looks_like_metrics(result):
                    self._write_metrics(job.candidate_id, Metrics.from_dict(result))
                self._follow_job(job.candidate_id, "done", who, job.kind, job_id=job_id)
        return self.get_job(job_id)

    def _write_metrics(self, candidate_id: int, metrics: Metrics) -> None:
        flat = _metrics_flat(metrics)
        self.conn.execute("DELETE FROM metrics WHERE candidate_id=?", (candidate_id,))
        self.conn.execute("DELETE FROM group_metrics WHERE candidate_id=?", (candidate_id,))
        self._insert(
            "metrics",
            {
                "candidate_id": candidate_id,
                "metrics_json": _dumps(metrics.to_dict()),
                "estimate": int(metrics.estimate),
                **flat,
                "created_at": _now(),
            },
        )
        for g in metrics.fairness.groups:
            lo, hi = g.accuracy_ci if g.accuracy_ci else (None, None)
            self._insert(
                "group_metrics",
                {
                    "candidate_id": candidate_id,
                    "attribute": g.attribute,
                    "group_name": g.group,
                    "n": g.n,
                    "accuracy": g.accuracy,
                    "ci_low": lo,
                    "ci_high": hi,
                },
            )

    def set_metrics(self, candidate_id: int, metrics: Metrics, actor: str = "") -> Candidate:
        """Attach metrics to a candidate outside the job flow (e.g. a baseline imported by hand)."""
        with self.transaction():
            self.get_candidate(candidate_id)
            self._write_metrics(candidate_id, metrics)
            self._event("candidate", None, None, actor, "metrics written", candidate_id=candidate_id)
        return self.get_candidate(candidate_id)

    def group_metrics(self, candidate_id: int) -> list[dict[str, Any]]:
        """The candidate's group rows: attribute, group, n, accuracy, ci_low, ci_high."""
        rows = self._all(
            "SELECT attribute, group_name AS 'group', n, accuracy, ci_low, ci_high FROM group_metrics "
            "WHERE candidate_id=? ORDER BY id",
            (candidate_id,),
        )
        return [dict(r) for r in rows]

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

    # ------------------------------------------------------------------ queries for the UI

    def leaderboard(self, run_id: int) -> pd.DataFrame:
        """One row per candidate of the run with flat metric columns (NaN where not measured)."""
        import pandas as pd  # lazy: the worker never needs it and it costs half a second to import

        cols = ", ".join(f"m.{name} AS {name}" for name in OBJECTIVES)
        sql = (
            "SELECT c.id AS candidate_id, c.iteration, c.origin, c.status, c.key, c.baseline, "
            f"m.estimate AS estimate, {cols} FROM candidates c "
            # INDEXED BY: the covering index of migration 4 never reads the kilobytes of metrics_json.
            "LEFT JOIN metrics m INDEXED BY idx_metrics_flat ON m.candidate_id = c.id "
            "WHERE c.run_id = ? ORDER BY c.id"
        )
        df = pd.read_sql_query(sql, self.conn, params=(run_id,))
        df["estimate"] = df["estimate"].fillna(0).astype(bool)
        return df

    def counts(self, run_id: int) -> dict[str, int]:
        """Number of the run's candidates per status."""
        rows = self.conn.execute(
            "SELECT status, COUNT(*) FROM candidates WHERE run_id=? GROUP BY status", (run_id,)
        ).fetchall()
        return {str(s): int(n) for s, n in rows}


def _parse_stored_spec(text: str) -> ArchSpec:
    """A spec the store wrote (validated and normalized then): build it directly, 10x faster.

    Falls back to the validating parser when the stored shape no longer matches the
    dataclasses (e.g. a field was renamed since).
    """
    d = json.loads(text)
    try:
        return ArchSpec(
            stem=StemSpec(**d["stem"]),
            blocks=tuple(BlockSpec(**b) for b in d["blocks"]),
            head=HeadSpec(**d["head"]),
        )
    except (TypeError, KeyError):
        return ArchSpec.from_dict(d)


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


def _corrupt_message(path: str, detail: str) -> str:
    return (f"the database {path} is damaged ({detail.strip()[:200]}); nothing was written to it. Restore a "
            "backup (`python -m nas_core db backup` makes one), or try `sqlite3 OLD.db .recover | sqlite3 NEW.db` "
            "and open NEW.db, or start a new database with another --db path")


def _quick_check(conn: sqlite3.Connection, p: Path, spath: str) -> None:
    """``PRAGMA quick_check`` once per file and process; StoreCorrupt when it finds damage."""
    try:
        st = p.stat()
    except OSError:
        return  # a new file: nothing to check
    if st.st_size == 0:
        return
    key = (str(p.resolve()), st.st_ino)
    if key in _CHECKED:
        return
    try:
        rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check(5)").fetchall()]
    except sqlite3.DatabaseError as exc:
        if _is_busy(exc):
            return  # locked by a writer: the page checks happen the next time
        raise StoreCorrupt(_corrupt_message(spath, str(exc))) from exc
    if rows != ["ok"]:
        raise StoreCorrupt(_corrupt_message(spath, "; ".join(rows)))
    _CHECKED.add(key)


def _check_location(p: Path) -> None:
    """Fail early, with a message, when the database cannot live at ``p``."""
    folder = p.parent if str(p.parent) else Path(".")
    if p.exists() and p.is_dir():
        raise StoreOpenError(f"{p} is a folder; give a database file path such as {p / 'equinas.db'}")
    if not folder.exists():
        raise StoreOpenError(
            f"database folder {folder} does not exist; create it (mkdir -p {folder}) or choose another --db path"
        )
    if not folder.is_dir():
        raise StoreOpenError(f"{folder} is not a folder; choose another --db path")
    # Probe by writing: os.access says yes to root even on read-only mounts, and WAL needs the
    # folder writable for its -wal/-shm files, not only the database file.
    probe = folder / f".equinas-probe-{os.getpid()}-{_secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise StoreOpenError(
            f"database folder {folder} is not writable ({exc.strerror}); SQLite needs to write the database "
            "and its journal there: fix the permissions or choose another --db path"
        ) from exc
    if p.exists() and not os.access(p, os.R_OK | os.W_OK):
        raise StoreOpenError(f"database file {p} is not readable and writable; fix its permissions")
