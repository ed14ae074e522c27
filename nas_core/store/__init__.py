"""The run store: one SQLite file with data sets, runs, candidates, metrics, jobs and events.

Public API: :class:`Store` (open with ``Store.open(path)``), its records and
errors. See :mod:`nas_core.store.store` for the decisions and
:mod:`nas_core.store.schema` for the tables and migrations.
"""

from nas_core.store.records import (
    JOB_STATUSES,
    DatasetRecord,
    EventRecord,
    FeedbackRecord,
    IterationRecord,
    JobRecord,
    LLMCallRecord,
    RunRecord,
    WorkerRecord,
)
from nas_core.store.schema import SCHEMA_VERSION, SchemaTooNew
from nas_core.store.store import (
    DuplicateCandidate,
    DuplicateDataset,
    IllegalTransition,
    NotFound,
    StaleJob,
    Store,
    StoreBusy,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreOpenError,
    is_secret_key,
    redact,
    scrub_secrets,
)

#: Where the app and the CLI keep the database unless told otherwise.
DEFAULT_DB_PATH = "data/equinas.db"

__all__ = [
    "DEFAULT_DB_PATH",
    "JOB_STATUSES",
    "SCHEMA_VERSION",
    "DatasetRecord",
    "DuplicateCandidate",
    "DuplicateDataset",
    "EventRecord",
    "FeedbackRecord",
    "IllegalTransition",
    "IterationRecord",
    "JobRecord",
    "LLMCallRecord",
    "NotFound",
    "RunRecord",
    "SchemaTooNew",
    "StaleJob",
    "Store",
    "StoreBusy",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreOpenError",
    "WorkerRecord",
    "is_secret_key",
    "redact",
    "scrub_secrets",
]
