"""The store's SQLite schema as an ordered list of migrations, and the code that applies them.

Owns :data:`MIGRATIONS` (version -> function that moves a database from the
previous version to that one), :data:`SCHEMA_VERSION` (the newest) and
:func:`migrate`. The ``schema_version`` table holds one row per applied
version. A database whose newest version is above :data:`SCHEMA_VERSION` was
written by a newer EquiNAS and is refused untouched (:class:`SchemaTooNew`).

To change the schema, append a migration; never edit an applied one. Each
migration runs inside the caller's transaction, so a failure leaves the
database at the previous version.

Times are REAL unix seconds (``time.time()``): cheap to compare for heartbeats
and trivially converted for display.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from nas_core.errors import UserError

#: The metrics table's flat objective columns as migrations 1 and 4 wrote them. Migrations are
#: history: they must not follow later edits of nas_core.records.OBJECTIVES.
FLAT_V1 = ("accuracy", "val_accuracy", "balanced_accuracy", "worst_group_accuracy", "unfairness", "eodd",
           "eopp1", "eopp2", "latency", "params", "macs", "memory", "size_mb")
#: ... and after migration 9 (``latency_cpu``). A new objective in OBJECTIVES needs a migration that
#: adds its column and rebuilds ``idx_metrics_flat`` (tests/store check the two agree).
FLAT_COLUMNS = (*FLAT_V1, "latency_cpu")


class SchemaTooNew(UserError):
    """The database was written by a newer version of EquiNAS Studio."""


def _v1(conn: sqlite3.Connection) -> None:
    """The first schema: every table the engine needs except worker bookkeeping."""
    metric_cols = ",\n".join(f"    {name} REAL" for name in FLAT_V1)
    conn.executescript(
        f"""
CREATE TABLE datasets (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    format TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    content_hash TEXT NOT NULL DEFAULT '',
    columns_json TEXT NOT NULL DEFAULT '{{}}',
    counts_json TEXT NOT NULL DEFAULT '{{}}',
    config_json TEXT NOT NULL DEFAULT '{{}}',
    cache_path TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    engine TEXT NOT NULL,
    dataset_id INTEGER REFERENCES datasets(id),
    dataset_ref TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'created',
    config_json TEXT NOT NULL DEFAULT '{{}}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE iterations (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'proposing',
    started_at REAL NOT NULL,
    ended_at REAL,
    error TEXT NOT NULL DEFAULT '',
    UNIQUE (run_id, number)
);
CREATE TABLE candidates (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    iteration INTEGER NOT NULL,
    spec_json TEXT NOT NULL,
    key TEXT NOT NULL,
    origin TEXT NOT NULL,
    status TEXT NOT NULL,
    rationale TEXT NOT NULL DEFAULT '',
    predicted_json TEXT NOT NULL DEFAULT '[]',
    baseline TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    extra_json TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (run_id, key)
);
CREATE TABLE metrics (
    id INTEGER PRIMARY KEY,
    candidate_id INTEGER NOT NULL UNIQUE REFERENCES candidates(id) ON DELETE CASCADE,
    metrics_json TEXT NOT NULL,
    estimate INTEGER NOT NULL DEFAULT 0,
{metric_cols},
    created_at REAL NOT NULL
);
CREATE TABLE group_metrics (
    id INTEGER PRIMARY KEY,
    candidate_id INTEGER NOT NULL REFERENCES candidates(id) ON DELETE CASCADE,
    attribute TEXT NOT NULL,
    group_name TEXT NOT NULL,
    n INTEGER NOT NULL,
    accuracy REAL,
    ci_low REAL,
    ci_high REAL
);
CREATE TABLE llm_calls (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    iteration INTEGER,
    prompt TEXT NOT NULL DEFAULT '',
    messages_json TEXT NOT NULL DEFAULT '[]',
    raw_answer TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    tokens_in INTEGER,
    tokens_out INTEGER,
    duration_s REAL,
    error TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
CREATE TABLE feedback (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    candidate_id INTEGER REFERENCES candidates(id) ON DELETE CASCADE,
    iteration INTEGER,
    kind TEXT NOT NULL,
    text TEXT NOT NULL DEFAULT '',
    actor TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    payload_json TEXT NOT NULL DEFAULT '{{}}',
    run_id INTEGER REFERENCES runs(id) ON DELETE CASCADE,
    candidate_id INTEGER REFERENCES candidates(id) ON DELETE CASCADE,
    status TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 3,
    worker_id TEXT,
    heartbeat_at REAL,
    progress_json TEXT NOT NULL DEFAULT '{{}}',
    result_json TEXT,
    error TEXT NOT NULL DEFAULT '',
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    updated_at REAL NOT NULL
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    run_id INTEGER,
    candidate_id INTEGER,
    job_id INTEGER,
    entity TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT,
    actor TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX idx_candidates_run ON candidates(run_id, status);
CREATE INDEX idx_jobs_status ON jobs(status, id);
CREATE INDEX idx_group_metrics_candidate ON group_metrics(candidate_id);
"""
    )


def _v2(conn: sqlite3.Connection) -> None:
    """Worker heartbeats (so the app can show "worker alive") and indexes for the timeline."""
    conn.executescript(
        """
CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    executor TEXT NOT NULL DEFAULT 'local',
    status TEXT NOT NULL DEFAULT 'running',
    started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    stopped_at REAL
);
CREATE INDEX idx_events_run ON events(run_id, id);
CREATE INDEX idx_events_candidate ON events(candidate_id, id);
CREATE INDEX idx_events_job ON events(job_id, id);
CREATE INDEX idx_llm_calls_run ON llm_calls(run_id, iteration);
CREATE INDEX idx_feedback_run ON feedback(run_id);
"""
    )


def _v3(conn: sqlite3.Connection) -> None:
    """Trained super-networks (nas_core.supernet.registry): where each checkpoint is and what it knows."""
    conn.executescript(
        """
CREATE TABLE supernets (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    dataset_hash TEXT NOT NULL,
    dataset TEXT NOT NULL DEFAULT '',
    image_size INTEGER NOT NULL,
    seed INTEGER NOT NULL DEFAULT 0,
    space_key TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'training',
    epoch INTEGER NOT NULL DEFAULT 0,
    best_val_loss REAL,
    kendall_tau REAL,
    kendall_n INTEGER NOT NULL DEFAULT 0,
    meta_json TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX idx_supernets_dataset ON supernets(dataset_hash, image_size, seed);
"""
    )


def _v4(conn: sqlite3.Connection) -> None:
    """Covering indexes for the leaderboard.

    ``metrics_json`` (kilobytes, in overflow pages) sits before the flat columns, so
    reading them from the table walks every overflow chain; an index holding the
    flat columns answers the leaderboard without touching the JSON (10,000 rows:
    ~120 ms -> a few ms of SQLite time).
    """
    flat = ", ".join(FLAT_V1)
    conn.executescript(
        f"""
CREATE INDEX idx_metrics_flat ON metrics(candidate_id, estimate, {flat});
CREATE INDEX idx_candidates_board ON candidates(run_id, id, iteration, origin, status, key, baseline);
"""
    )


def _v5(conn: sqlite3.Connection) -> None:
    """Successive-halving rungs (every finished rung of a candidate, nas_core.rungs) and seed re-measurements."""
    conn.executescript(
        """
CREATE TABLE IF NOT EXISTS rungs (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    candidate_id INTEGER NOT NULL REFERENCES candidates(id) ON DELETE CASCADE,
    rung INTEGER NOT NULL,
    final INTEGER NOT NULL DEFAULT 0,
    fidelity TEXT NOT NULL DEFAULT '',
    settings_json TEXT NOT NULL DEFAULT '{}',
    job_id INTEGER,
    score REAL,
    val_acc REAL,
    test_acc REAL,
    unfairness REAL,
    metrics_json TEXT NOT NULL DEFAULT '{}',
    decision TEXT NOT NULL DEFAULT '',
    decided_by TEXT NOT NULL DEFAULT '',
    seconds REAL,
    cpu_s REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (candidate_id, rung)
);
CREATE INDEX IF NOT EXISTS idx_rungs_run ON rungs(run_id, rung);
CREATE TABLE IF NOT EXISTS remeasures (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    candidate_id INTEGER NOT NULL REFERENCES candidates(id) ON DELETE CASCADE,
    job_id INTEGER,
    seed INTEGER NOT NULL,
    val_acc REAL,
    test_acc REAL,
    unfairness REAL,
    metrics_json TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_remeasures_candidate ON remeasures(candidate_id);
"""
    )


def _v6(conn: sqlite3.Connection) -> None:
    """``runs.dataset_hash``: the content hash of the run's DatasetRef (nas_core.data.ref).

    Runs stored before keep ``''``; their config holds only a folder path, and
    :attr:`nas_core.session.Session.config` adds the DatasetRef (and this column) the first
    time the run is read, because making a ref reads the data set's files, which SQL cannot.
    """
    cols = {row[1] for row in conn.execute("PRAGMA table_info(runs)").fetchall()}
    if "dataset_hash" not in cols:
        conn.execute("ALTER TABLE runs ADD COLUMN dataset_hash TEXT NOT NULL DEFAULT ''")
    conn.execute("CREATE INDEX IF NOT EXISTS idx_runs_dataset_hash ON runs(dataset_hash)")


def _v7(conn: sqlite3.Connection) -> None:
    """``llm_calls.decoding``: the constrained-decoding rung of each LLM call (nas_core.designers.llm.client)."""
    cols = {row[1] for row in conn.execute("PRAGMA table_info(llm_calls)").fetchall()}
    if "decoding" not in cols:
        conn.execute("ALTER TABLE llm_calls ADD COLUMN decoding TEXT NOT NULL DEFAULT ''")


def _v8(conn: sqlite3.Connection) -> None:
    """``notes``: free notes a person writes on a run or one of its candidates (Results page).

    Unlike ``feedback`` they never reach a designer's prompt: they are for the people reading the run.
    """
    conn.executescript(
        """
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    candidate_id INTEGER REFERENCES candidates(id) ON DELETE CASCADE,
    text TEXT NOT NULL,
    author TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_notes_run ON notes(run_id, candidate_id);
"""
    )


def _v9(conn: sqlite3.Connection) -> None:
    """``metrics.latency_cpu``: CPU seconds per image of inference (nas_core.metrics.hardware), and the
    leaderboard's covering index rebuilt to hold it. Rows measured before keep NULL."""
    cols = {row[1] for row in conn.execute("PRAGMA table_info(metrics)").fetchall()}
    if "latency_cpu" not in cols:
        conn.execute("ALTER TABLE metrics ADD COLUMN latency_cpu REAL")
    conn.execute("DROP INDEX IF EXISTS idx_metrics_flat")
    conn.execute(f"CREATE INDEX idx_metrics_flat ON metrics(candidate_id, estimate, {', '.join(FLAT_COLUMNS)})")


#: Ordered migrations: (version, description, apply). Append only.
MIGRATIONS: tuple[tuple[int, str, Callable[[sqlite3.Connection], None]], ...] = (
    (1, "first schema", _v1),
    (2, "workers table and timeline indexes", _v2),
    (3, "supernets table (trained super-network checkpoints)", _v3),
    (4, "covering indexes for the leaderboard", _v4),
    (5, "successive-halving rungs and seed re-measurements", _v5),
    (6, "runs.dataset_hash: content hash of the run's DatasetRef", _v6),
    (7, "llm_calls.decoding: the constrained-decoding rung of each LLM call", _v7),
    (8, "notes on runs and candidates", _v8),
    (9, "metrics.latency_cpu: CPU time per image of inference", _v9),
)

#: The schema version this code writes.
SCHEMA_VERSION = MIGRATIONS[-1][0]


def current_version(conn: sqlite3.Connection) -> int:
    """The newest applied version, 0 for an empty database."""
    has = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'"
    ).fetchone()
    if not has:
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def check_not_newer(conn: sqlite3.Connection, path: str) -> int:
    """Return the database's version; raise SchemaTooNew when this code is too old for it."""
    version = current_version(conn)
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"database {path} has schema version {version}, but this EquiNAS Studio knows only up to "
            f"version {SCHEMA_VERSION}; upgrade EquiNAS Studio (the database was left untouched)"
        )
    return version


def migrate(conn: sqlite3.Connection, path: str, upto: int | None = None) -> int:
    """Apply every pending migration (up to ``upto``) in one IMMEDIATE transaction.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Returns the
    version the database is at afterwards.
    """
    target = SCHEMA_VERSION if upto is None else upto
    # Cheap check outside a write lock: most opens find nothing to do.
    if check_not_newer(conn, path) >= target:
        return current_version(conn)
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Re-read under the lock: another process may have migrated meanwhile.
        version = check_not_newer(conn, path)
        if version == 0:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
        for number, description, apply in MIGRATIONS:
            if version < number <= target:
                _run_in_transaction(conn, apply)
                conn.execute(
                    "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                    (number, description, time.time()),
                )
                version = number
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return version


def _run_in_transaction(conn: sqlite3.Connection, apply: Callable[[sqlite3.Connection], None]) -> None:
    """Run a migration without ``executescript``'s implicit COMMIT breaking our transaction."""
    real_conn = conn

    class _NoCommitScript:
        """Proxy whose executescript runs statement by statement inside the open transaction."""

        def executescript(self, sql: str) -> None:
            for statement in _split_sql(sql):
                real_conn.execute(statement)

        def execute(self, *args, **kwargs):  # noqa: ANN002, ANN003 - thin proxy
            return real_conn.execute(*args, **kwargs)

    apply(_NoCommitScript())  # type: ignore[arg-type]


def _split_sql(sql: str) -> list[str]:
    """Split a script of simple DDL statements on ';' (no triggers or string literals with ';')."""
    parts: list[str] = []
    buf = ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                parts.append(buf.strip())
            buf = ""
    if buf.strip():
        parts.append(buf.strip())
    return parts
