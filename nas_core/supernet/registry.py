"""Trained super-networks as rows of the store's ``supernets`` table (migration 3).

Owns :class:`SupernetRecord` and the reads/writes of that table: :func:`register`
(insert or update a checkpoint's row from its metadata), :func:`list_supernets`,
:func:`find_supernet` (the newest usable one for a data set, resolution and seed)
and :func:`set_kendall` (the honesty figure the app shows next to estimates).
The checkpoint file stays the source of truth; a row is a searchable summary.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas_core.supernet.checkpoint import CheckpointMeta


@dataclass(frozen=True)
class SupernetRecord:
    """One registered super-network checkpoint."""

    id: int
    path: str
    dataset_hash: str
    dataset: str
    image_size: int
    seed: int
    space_key: str
    status: str  # training | trained
    epoch: int
    best_val_loss: float | None
    kendall_tau: float | None
    kendall_n: int
    meta: Mapping[str, Any]
    created_at: float
    updated_at: float


def _rows(store: Any, sql: str, params: tuple = ()) -> list[SupernetRecord]:
    cur = store.conn.execute(sql, params)
    cols = [c[0] for c in cur.description]
    out = []
    for values in cur.fetchall():
        d = dict(zip(cols, values))
        d["meta"] = json.loads(d.pop("meta_json") or "{}")
        out.append(SupernetRecord(**d))
    return out


def register(store: Any, path: str | Path, meta: CheckpointMeta) -> SupernetRecord:
    """Insert or update the row of the checkpoint at ``path`` from its metadata."""
    path = str(Path(path).resolve())
    now = time.time()
    summary = {k: v for k, v in meta.to_dict().items() if k != "history"}
    summary["history_tail"] = [dict(h) for h in meta.history[-3:]]
    row = {
        "path": path,
        "dataset_hash": meta.dataset_hash,
        "dataset": meta.dataset,
        "image_size": meta.image_size,
        "seed": meta.seed,
        "space_key": meta.space_config.key,
        "status": "trained" if meta.complete else "training",
        "epoch": meta.epoch,
        "best_val_loss": meta.best_val_loss,
        "kendall_tau": meta.kendall_tau,
        "kendall_n": meta.kendall_n,
        "meta_json": json.dumps(summary, default=str),
        "updated_at": now,
    }
    with store.transaction():
        existing = store.conn.execute("SELECT id FROM supernets WHERE path = ?", (path,)).fetchone()
        if existing:
            sets = ", ".join(f"{k} = ?" for k in row)
            store.conn.execute(f"UPDATE supernets SET {sets} WHERE id = ?", (*row.values(), existing[0]))
        else:
            row["created_at"] = now
            cols = ", ".join(row)
            marks = ", ".join("?" for _ in row)
            store.conn.execute(f"INSERT INTO supernets ({cols}) VALUES ({marks})", tuple(row.values()))
    return _rows(store, "SELECT * FROM supernets WHERE path = ?", (path,))[0]


def list_supernets(store: Any, dataset_hash: str | None = None) -> list[SupernetRecord]:
    """Every registered super-network (newest first), optionally of one data set."""
    if dataset_hash is None:
        return _rows(store, "SELECT * FROM supernets ORDER BY updated_at DESC, id DESC")
    return _rows(
        store,
        "SELECT * FROM supernets WHERE dataset_hash = ? ORDER BY updated_at DESC, id DESC",
        (dataset_hash,),
    )


def find_supernet(
    store: Any, dataset_hash: str, image_size: int, seed: int, *, trained_only: bool = True
) -> SupernetRecord | None:
    """The newest registered super-network for this data set, resolution and split seed."""
    sql = "SELECT * FROM supernets WHERE dataset_hash = ? AND image_size = ? AND seed = ?"
    if trained_only:
        sql += " AND status = 'trained'"
    rows = _rows(
        store, sql + " ORDER BY updated_at DESC, id DESC", (dataset_hash, int(image_size), int(seed))
    )
    rows = [r for r in rows if Path(r.path).is_file()]
    return rows[0] if rows else None


def set_kendall(store: Any, path: str | Path, tau: float | None, n: int) -> None:
    """Record the Kendall tau of a checkpoint's estimates against from-scratch accuracy."""
    with store.transaction():
        store.conn.execute(
            "UPDATE supernets SET kendall_tau = ?, kendall_n = ?, updated_at = ? WHERE path = ?",
            (tau, int(n), time.time(), str(Path(path).resolve())),
        )
