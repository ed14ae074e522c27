"""Read-only queries for the UI (leaderboard, counts), over the store's connection.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from nas_core.records import OBJECTIVES
from nas_core.store.core import (
    StoreCore,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


class QueriesMixin(StoreCore):
    """Summaries the pages show."""

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
