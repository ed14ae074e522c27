"""The run store: one SQLite file holding everything a search produces.

Owns :class:`Store`: opening (location checks, quick_check, WAL, migration) and
the composition of its parts, each in its own module over one connection:

- :mod:`nas_core.store.core`: the connection, transactions with lock retries, backups, row helpers;
- :mod:`nas_core.store.runs`: data sets, runs, iterations, candidates, transitions, metrics;
- :mod:`nas_core.store.queue`: jobs (claim, heartbeat, progress, result, cancel, requeue) and workers;
- :mod:`nas_core.store.audit`: events, LLM calls, feedback, notes and the redaction of stored text;
- :mod:`nas_core.store.queries`: the UI's summaries (leaderboard, counts).

The errors a user can meet live in :mod:`nas_core.store.errors`; every name
this module used to define is still importable from here.

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

import logging
import os
import secrets as _secrets
import sqlite3
import time
from pathlib import Path

from nas_core.store import schema
from nas_core.store.audit import AuditMixin, is_secret_key, redact, scrub_secrets
from nas_core.store.core import (
    BUSY_TIMEOUT_ENV,
    DEFAULT_BUSY_TIMEOUT_S,
    DEFAULT_LOCK_WAIT_S,
    EARLY_KILL_S,
    LOCK_WAIT_ENV,
    MAX_FREE_REQUEUES,
    StoreCore,
    _setting,
    looks_like_metrics,
)
from nas_core.store.errors import (
    DuplicateCandidate,
    DuplicateDataset,
    IllegalTransition,
    NotFound,
    StaleJob,
    StoreBusy,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreOpenError,
    _corrupt_message,
    _is_busy,
    _is_corrupt,
)
from nas_core.store.queries import QueriesMixin
from nas_core.store.queue import QueueMixin
from nas_core.store.runs import RunsMixin

__all__ = [
    "BUSY_TIMEOUT_ENV",
    "DEFAULT_BUSY_TIMEOUT_S",
    "DEFAULT_LOCK_WAIT_S",
    "EARLY_KILL_S",
    "LOCK_WAIT_ENV",
    "MAX_FREE_REQUEUES",
    "DuplicateCandidate",
    "DuplicateDataset",
    "IllegalTransition",
    "NotFound",
    "StaleJob",
    "Store",
    "StoreBusy",
    "StoreCore",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreOpenError",
    "is_secret_key",
    "looks_like_metrics",
    "redact",
    "scrub_secrets",
]

log = logging.getLogger(__name__)

#: (path, inode) of database files whose quick_check passed in this process (checked once per process).
_CHECKED: set[tuple[str, int]] = set()


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


class Store(RunsMixin, QueueMixin, AuditMixin, QueriesMixin, StoreCore):
    """Access to one EquiNAS database file. Open with :meth:`Store.open`.

    One connection (:class:`StoreCore`) shared by the runs, queue, audit and UI-query parts.
    """

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
