"""The store's user-facing errors (all :class:`nas_core.errors.UserError`)."""

from __future__ import annotations

import sqlite3

from nas_core.errors import UserError


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


def _corrupt_message(path: str, detail: str) -> str:
    return (f"the database {path} is damaged ({detail.strip()[:200]}); nothing was written to it. Restore a "
            "backup (`python -m nas_core db backup` makes one), or try `sqlite3 OLD.db .recover | sqlite3 NEW.db` "
            "and open NEW.db, or start a new database with another --db path")
