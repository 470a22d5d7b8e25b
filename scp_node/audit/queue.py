"""The durable audit queue: messages wait in SQLite until their destination has them.

A message is committed here before the call that emits it returns, so it survives a crash or a
restart; the sender deletes it only after the destination took it (at-least-once: a crash
between sending and deleting sends it again, which an audit repository tolerates). The same file
holds the *open* transfers of associations still running (:mod:`scp_node.audit.collect`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at  REAL NOT NULL,
    event       TEXT NOT NULL,
    xml         TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS open_transfers (
    key        TEXT PRIMARY KEY,
    opened_at  REAL NOT NULL,
    info       TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Queued:
    """One message waiting to be sent."""

    id: int
    created_at: float
    event: str
    xml: str


class AuditQueue:
    """Thread-safe access to the queue file (one connection, one lock; writes are tiny)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():  # readable by the node's user only: messages carry patient IDs
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def put(self, event: str, xml: str, close_key: str | None = None) -> int:
        """Queue one message (and, in the same transaction, forget the open transfer
        ``close_key`` it completes)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT INTO messages (created_at, event, xml) VALUES (?, ?, ?)",
                    (time.time(), event, xml),
                )
                if close_key is not None:
                    self._db.execute("DELETE FROM open_transfers WHERE key = ?", (close_key,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return int(cur.lastrowid or 0)

    def oldest(self, limit: int = 100) -> list[Queued]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, created_at, event, xml FROM messages ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [Queued(*row) for row in rows]

    def done(self, ids: list[int]) -> None:
        """The destination has these: remove them."""
        if not ids:
            return
        with self._lock:
            self._db.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in ids])

    def failed(self, ids: list[int]) -> None:
        with self._lock:
            self._db.executemany(
                "UPDATE messages SET attempts = attempts + 1 WHERE id = ?", [(i,) for i in ids]
            )

    def pending(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])

    # --- open transfers (an association that stored a study and has not ended yet) ---
    def open_transfer(self, key: str, info: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO open_transfers (key, opened_at, info) VALUES (?, ?, ?)",
                (key, time.time(), json.dumps(info)),
            )

    def open_transfers(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute("SELECT key, info FROM open_transfers ORDER BY opened_at")
            return [(key, json.loads(info)) for key, info in rows.fetchall()]
