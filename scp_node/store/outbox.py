"""The outbox: results waiting for delivery, one row per (SOP Instance UID, destination).

States: ``pending`` → ``sending`` → ``delivered`` | back to ``pending`` (retry) | ``dead``;
``held`` = written in shadow mode (``[delivery] mode = "shadow"``): kept with the destination it
would have gone to, never claimed, sent or retried by the node.
Enqueueing the same SOP Instance UID for the same destination again replaces the row's file and
resets it to ``pending`` (a re-run replaces its result). ``generation`` grows on every enqueue, so
the outcome of a send that raced with a re-enqueue is ignored and the new file is sent again.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scp_node.store.db import Database, register_migration, register_schema

PENDING, SENDING, DELIVERED, DEAD, HELD = "pending", "sending", "delivered", "dead", "held"
STATES = (PENDING, SENDING, DELIVERED, DEAD, HELD)

_TABLE = """
    CREATE TABLE IF NOT EXISTS {name} (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        study_uid        TEXT NOT NULL,
        sop_instance_uid TEXT NOT NULL,
        sop_class_uid    TEXT NOT NULL,
        path             TEXT NOT NULL,
        destination      TEXT NOT NULL,
        state            TEXT NOT NULL DEFAULT 'pending'
                         CHECK (state IN ('pending', 'sending', 'delivered', 'dead', 'held')),
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  REAL NOT NULL,
        last_error       TEXT NOT NULL DEFAULT '',
        created_at       REAL NOT NULL,
        updated_at       REAL NOT NULL,
        delivered_at     REAL,
        generation       INTEGER NOT NULL DEFAULT 1,
        UNIQUE (sop_instance_uid, destination)
    )
"""
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_at)",
    "CREATE INDEX IF NOT EXISTS outbox_study ON outbox (study_uid)",
)

register_schema("outbox", _TABLE.format(name="outbox") + ";\n" + ";\n".join(_INDEXES) + ";\n")


def _allow_held(conn: sqlite3.Connection) -> None:
    """Migrate an index made before shadow mode: its CHECK constraint lacks ``held``, and SQLite
    cannot alter a constraint, so the table is rebuilt (one transaction, rows and ids kept)."""

    def current() -> bool:
        row = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'outbox'"
        ).fetchone()
        return row is None or "'held'" in row[0]

    if current():
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if current():  # another process migrated it while this one waited for the lock
            conn.execute("COMMIT")
            return
        conn.execute("DROP TABLE IF EXISTS outbox_migrating")
        conn.execute(_TABLE.format(name="outbox_migrating"))
        conn.execute("INSERT INTO outbox_migrating SELECT * FROM outbox")
        conn.execute("DROP TABLE outbox")
        conn.execute("ALTER TABLE outbox_migrating RENAME TO outbox")
        for ddl in _INDEXES:
            conn.execute(ddl)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


register_migration("outbox-held", _allow_held)


@dataclass(frozen=True)
class OutboxRow:
    """One delivery of one file to one destination."""

    id: int
    study_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    path: Path
    destination: str
    state: str
    attempts: int
    next_attempt_at: float
    last_error: str
    created_at: float
    updated_at: float
    delivered_at: float | None
    generation: int

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "path": str(self.path)}


def _row(r: Any) -> OutboxRow:
    d = dict(r)
    d["path"] = Path(d["path"])
    return OutboxRow(**d)


class Outbox:
    """Queue operations on the ``outbox`` table (every state change is one transaction)."""

    def __init__(self, db: Database, clock: Any = time.time) -> None:
        self.db = db
        self.clock = clock

    def enqueue(
        self,
        study_uid: str,
        sop_instance_uid: str,
        sop_class_uid: str,
        path: Path,
        destination: str,
        state: str = PENDING,
    ) -> int:
        """Add (or replace and reset) the delivery of ``path``, ``pending`` or (shadow mode)
        ``held``; returns the row id."""
        if state not in (PENDING, HELD):
            raise ValueError(f"an outbox row is enqueued pending or held, not {state!r}")
        now = self.clock()
        with self.db.transaction() as conn:
            conn.execute(
                """
                INSERT INTO outbox (study_uid, sop_instance_uid, sop_class_uid, path, destination,
                    state, attempts, next_attempt_at, last_error, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, 0, ?, '', ?, ?)
                ON CONFLICT (sop_instance_uid, destination) DO UPDATE SET
                    study_uid = excluded.study_uid, sop_class_uid = excluded.sop_class_uid,
                    path = excluded.path, state = excluded.state, attempts = 0,
                    next_attempt_at = excluded.next_attempt_at, last_error = '',
                    updated_at = excluded.updated_at, delivered_at = NULL,
                    generation = outbox.generation + 1
                """,
                (
                    study_uid,
                    sop_instance_uid,
                    sop_class_uid,
                    str(path),
                    destination,
                    state,
                    now,
                    now,
                    now,
                ),
            )
            row = conn.execute(
                "SELECT id FROM outbox WHERE sop_instance_uid = ? AND destination = ?",
                (sop_instance_uid, destination),
            ).fetchone()
        return int(row["id"])

    def recover(self) -> int:
        """Rows left in ``sending`` by a crash go back to ``pending``, due now (count)."""
        now = self.clock()
        with self.db.transaction() as conn:
            cur = conn.execute(
                "UPDATE outbox SET state = 'pending', next_attempt_at = ?, updated_at = ? "
                "WHERE state = 'sending'",
                (now, now),
            )
        return cur.rowcount

    def claim_due(
        self, limit: int = 64, ids: list[int] | None = None, sop_class_uid: str | None = None
    ) -> list[OutboxRow]:
        """Move due ``pending`` rows (only ``ids``, only of ``sop_class_uid`` when given) to
        ``sending`` (attempts + 1) and return them."""
        now = self.clock()
        query = "SELECT * FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?"
        params: list[Any] = [now]
        if sop_class_uid is not None:
            query += " AND sop_class_uid = ?"
            params.append(sop_class_uid)
        if ids is not None:
            query += f" AND id IN ({','.join('?' * len(ids))})" if ids else " AND 0"
            params += ids
        query += " ORDER BY next_attempt_at, id LIMIT ?"
        params.append(limit)
        with self.db.transaction() as conn:
            rows = conn.execute(query, params).fetchall()
            for r in rows:
                conn.execute(
                    "UPDATE outbox SET state = 'sending', attempts = attempts + 1, updated_at = ? "
                    "WHERE id = ?",
                    (now, r["id"]),
                )
        return [
            _row({**dict(r), "state": SENDING, "attempts": r["attempts"] + 1, "updated_at": now})
            for r in rows
        ]

    def mark_delivered(self, row: OutboxRow) -> bool:
        """``sending`` → ``delivered`` (ignored if the row was re-enqueued meanwhile)."""
        now = self.clock()
        with self.db.transaction() as conn:
            cur = conn.execute(
                "UPDATE outbox SET state = 'delivered', delivered_at = ?, updated_at = ?, "
                "last_error = '' WHERE id = ? AND generation = ? AND state = 'sending'",
                (now, now, row.id, row.generation),
            )
        return cur.rowcount == 1

    def mark_failed(self, row: OutboxRow, error: str, retry_at: float | None) -> bool:
        """``sending`` → ``pending`` due at ``retry_at``, or → ``dead`` if it is None."""
        now = self.clock()
        state = DEAD if retry_at is None else PENDING
        with self.db.transaction() as conn:
            cur = conn.execute(
                "UPDATE outbox SET state = ?, next_attempt_at = ?, last_error = ?, updated_at = ? "
                "WHERE id = ? AND generation = ? AND state = 'sending'",
                (
                    state,
                    retry_at if retry_at is not None else now,
                    error[:2000],
                    now,
                    row.id,
                    row.generation,
                ),
            )
        return cur.rowcount == 1

    def retry(self, row_id: int | None = None, dead: bool = False) -> list[int]:
        """Reset one row (not ``sending``, not ``held``) or every ``dead`` row to ``pending``, due
        now. Held (shadow-mode) results are never released by a retry."""
        now = self.clock()
        if row_id is not None:
            where, params = "id = ? AND state NOT IN ('sending', 'held')", [row_id]
        elif dead:
            where, params = "state = 'dead'", []
        else:
            return []
        with self.db.transaction() as conn:
            ids = [r["id"] for r in conn.execute(f"SELECT id FROM outbox WHERE {where}", params)]
            conn.execute(
                f"UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?, "
                f"updated_at = ?, delivered_at = NULL WHERE {where}",
                [now, now, *params],
            )
        return ids

    def get(self, row_id: int) -> OutboxRow | None:
        r = self.db.connection().execute("SELECT * FROM outbox WHERE id = ?", (row_id,)).fetchone()
        return _row(r) if r else None

    def rows(self, state: str | None = None, study_uid: str | None = None) -> list[OutboxRow]:
        query, params = "SELECT * FROM outbox WHERE 1", list[str]()
        if state:
            query, params = query + " AND state = ?", [*params, state]
        if study_uid:
            query, params = query + " AND study_uid = ?", [*params, study_uid]
        return [_row(r) for r in self.db.connection().execute(query + " ORDER BY id", params)]

    def next_due_at(self, sop_class_uid: str | None = None) -> float | None:
        """When the next ``pending`` row (of ``sop_class_uid`` when given) is due."""
        query = "SELECT MIN(next_attempt_at) FROM outbox WHERE state = 'pending'"
        params: list[str] = []
        if sop_class_uid is not None:
            query, params = query + " AND sop_class_uid = ?", [sop_class_uid]
        r = self.db.connection().execute(query, params).fetchone()
        return None if r[0] is None else float(r[0])

    def study_state(self, study_uid: str) -> dict[str, int]:
        """Row counts per state for one study's deliveries."""
        counts = {state: 0 for state in STATES}
        for r in self.db.connection().execute(
            "SELECT state, COUNT(*) AS n FROM outbox WHERE study_uid = ? GROUP BY state",
            (study_uid,),
        ):
            counts[r["state"]] = int(r["n"])
        return counts

    def study_delivered_at(self, study_uid: str) -> float | None:
        """When the last delivery of the study finished, if every row of it is delivered (rows
        ``held`` from an earlier shadow-mode run are not deliveries and do not count)."""
        r = (
            self.db.connection()
            .execute(
                "SELECT COUNT(*) AS n, SUM(state = 'delivered') AS ok, MAX(delivered_at) AS last "
                "FROM outbox WHERE study_uid = ? AND state != 'held'",
                (study_uid,),
            )
            .fetchone()
        )
        if not r["n"] or r["ok"] != r["n"]:
            return None
        return float(r["last"])
