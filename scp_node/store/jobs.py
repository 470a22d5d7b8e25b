"""Jobs: one per study, with an explicit state machine (SQLite table ``jobs``).

    received → complete → inferring → reporting → queued → delivered
                                    ↘ not_applicable   ↘ reported (no destination)   ↘ failed
                                                       ↘ shadow ([delivery] mode = "shadow":
                                                         results kept, outbox rows held, not sent)
                                               queued ⇄ delivery_failed (every delivery ended and
                                                         at least one is a dead letter; back to
                                                         queued when ``outbox retry`` resets them)

With ``[cluster] role = "ingest"`` a complete job is published to the broker (``complete`` is
the durable "to publish" state) and waits in ``dispatched`` until a worker's result comes back:

    complete → dispatched → inferring (result taken) → reporting → ...

A job is (re)opened from the ``studies`` table, never from memory: a study whose
``last_received_at`` is newer than what its job has seen goes (back) to ``received`` with a new
``generation``. A worker only writes its outcome if the generation it started with is still current,
so instances that arrive during inference make the study run again instead of being ignored.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from scp_node.store.db import Database, register_schema

register_schema(
    "jobs",
    """
    CREATE TABLE IF NOT EXISTS jobs (
        study_uid           TEXT PRIMARY KEY,
        state               TEXT NOT NULL,
        reason              TEXT NOT NULL DEFAULT '',
        generation          INTEGER NOT NULL DEFAULT 1,
        seen_received_at    REAL NOT NULL,
        input_received_at   REAL,
        complete_requested  INTEGER NOT NULL DEFAULT 0,
        created_at          REAL NOT NULL,
        updated_at          REAL NOT NULL,
        complete_at         REAL,
        started_at          REAL,
        finished_at         REAL,
        delivered_at        REAL,
        calling_ae          TEXT NOT NULL DEFAULT '',
        result_json         TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, complete_at);
    """,
)

RECEIVED, COMPLETE, INFERRING, REPORTING, QUEUED = (
    "received",
    "complete",
    "inferring",
    "reporting",
    "queued",
)
DELIVERED, REPORTED, NOT_APPLICABLE, FAILED = "delivered", "reported", "not_applicable", "failed"
SHADOW = "shadow"
DISPATCHED = "dispatched"
DELIVERY_FAILED = "delivery_failed"
FINAL_STATES = (DELIVERED, REPORTED, NOT_APPLICABLE, FAILED, SHADOW, DELIVERY_FAILED)
WAITING_FOR_WORKER = (COMPLETE, DISPATCHED, INFERRING, REPORTING)


@dataclass(frozen=True)
class Job:
    study_uid: str
    state: str
    reason: str
    generation: int
    created_at: float
    updated_at: float
    calling_ae: str
    complete_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    delivered_at: float | None = None
    input_received_at: float | None = None
    result_json: str = ""

    def result(self) -> dict[str, Any]:
        return json.loads(self.result_json) if self.result_json else {}


def _job(row: Any) -> Job:
    r = dict(row)
    return Job(
        study_uid=r["study_uid"],
        state=r["state"],
        reason=r["reason"],
        generation=r["generation"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        calling_ae=r["calling_ae"],
        complete_at=r["complete_at"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        delivered_at=r["delivered_at"],
        input_received_at=r["input_received_at"],
        result_json=r["result_json"],
    )


class JobStore:
    """Every job state change is one transaction."""

    def __init__(self, db: Database, clock: Any = time.time) -> None:
        self.db = db
        self.clock = clock

    def sync_from_studies(self) -> list[str]:
        """Open jobs for new studies and reopen finished/running ones that got new instances."""
        now = self.clock()
        with self.db.transaction() as conn:
            rows = conn.execute(
                """
                SELECT s.study_uid, s.last_received_at, s.calling_ae, j.state
                FROM studies s LEFT JOIN jobs j ON j.study_uid = s.study_uid
                WHERE j.study_uid IS NULL OR s.last_received_at > j.seen_received_at
                """
            ).fetchall()
            for row in rows:
                if row["state"] is None:
                    conn.execute(
                        """INSERT INTO jobs (study_uid, state, seen_received_at, created_at,
                               updated_at, calling_ae) VALUES (?, ?, ?, ?, ?, ?)""",
                        (
                            row["study_uid"],
                            RECEIVED,
                            row["last_received_at"],
                            now,
                            now,
                            row["calling_ae"],
                        ),
                    )
                elif row["state"] == RECEIVED:
                    conn.execute(
                        "UPDATE jobs SET seen_received_at = ?, updated_at = ? WHERE study_uid = ?",
                        (row["last_received_at"], now, row["study_uid"]),
                    )
                else:  # new instances after (or during) processing: run again
                    conn.execute(
                        """UPDATE jobs SET state = ?, reason = 'new instances arrived',
                               generation = generation + 1, seen_received_at = ?,
                               complete_requested = 0, created_at = ?, updated_at = ?,
                               calling_ae = ? WHERE study_uid = ?""",
                        (
                            RECEIVED,
                            row["last_received_at"],
                            now,
                            now,
                            row["calling_ae"],
                            row["study_uid"],
                        ),
                    )
        return [r["study_uid"] for r in rows]

    def request_complete(self, study_uids: list[str]) -> None:
        """Storage Commitment or a finished STOW request: no quiet-time wait for these studies."""
        self.sync_from_studies()
        with self.db.transaction() as conn:
            conn.executemany(
                "UPDATE jobs SET complete_requested = 1 WHERE study_uid = ? AND state = ?",
                [(uid, RECEIVED) for uid in study_uids],
            )

    def complete_due(self, quiet_seconds: float, max_wait_seconds: float) -> list[str]:
        """received → complete when quiet long enough, asked for, or waited the maximum."""
        now = self.clock()
        with self.db.transaction() as conn:
            rows = conn.execute(
                """
                SELECT j.study_uid FROM jobs j JOIN studies s ON s.study_uid = j.study_uid
                WHERE j.state = ? AND (j.complete_requested = 1 OR s.last_received_at <= ?
                                       OR j.created_at <= ?)
                """,
                (RECEIVED, now - quiet_seconds, now - max_wait_seconds),
            ).fetchall()
            conn.executemany(
                "UPDATE jobs SET state = ?, complete_at = ?, updated_at = ?, reason = '' "
                "WHERE study_uid = ?",
                [(COMPLETE, now, now, r["study_uid"]) for r in rows],
            )
        return [r["study_uid"] for r in rows]

    def claim_next(self) -> Job | None:
        """The oldest complete job, now ``inferring``, with its input snapshot."""
        now = self.clock()
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT study_uid FROM jobs WHERE state = ? ORDER BY complete_at LIMIT 1",
                (COMPLETE,),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                """UPDATE jobs SET state = ?, started_at = ?, updated_at = ?,
                       input_received_at = (SELECT last_received_at FROM studies
                                            WHERE studies.study_uid = jobs.study_uid)
                   WHERE study_uid = ?""",
                (INFERRING, now, now, row["study_uid"]),
            )
            job = conn.execute("SELECT * FROM jobs WHERE study_uid = ?", (row["study_uid"],))
            return _job(job.fetchone())

    def advance(
        self, job: Job, state: str, reason: str = "", result: dict[str, Any] | None = None
    ) -> bool:
        """Move ``job`` to ``state`` if nobody reopened it meanwhile (same generation)."""
        now = self.clock()
        finished = now if state in FINAL_STATES or state == QUEUED else None
        with self.db.transaction() as conn:
            cursor = conn.execute(
                """UPDATE jobs SET state = ?, reason = ?, updated_at = ?,
                       finished_at = COALESCE(?, finished_at),
                       result_json = COALESCE(?, result_json)
                   WHERE study_uid = ? AND generation = ?""",
                (
                    state,
                    reason,
                    now,
                    finished,
                    json.dumps(result) if result is not None else None,
                    job.study_uid,
                    job.generation,
                ),
            )
        return cursor.rowcount == 1

    def mark_delivered(self, study_uid: str, delivered_at: float) -> bool:
        """``queued`` (or ``delivery_failed`` after a successful retry) → ``delivered``."""
        with self.db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET state = ?, reason = '', delivered_at = ?, updated_at = ? "
                "WHERE study_uid = ? AND state IN (?, ?)",
                (DELIVERED, delivered_at, self.clock(), study_uid, QUEUED, DELIVERY_FAILED),
            )
        return cursor.rowcount == 1

    def move(self, study_uid: str, from_state: str, to_state: str, reason: str) -> bool:
        """``from_state`` → ``to_state`` with ``reason`` (delivery outcomes seen by the monitor)."""
        finished = self.clock() if to_state in FINAL_STATES else None
        with self.db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET state = ?, reason = ?, updated_at = ?, "
                "finished_at = COALESCE(?, finished_at) WHERE study_uid = ? AND state = ?",
                (to_state, reason, self.clock(), finished, study_uid, from_state),
            )
        return cursor.rowcount == 1

    def mark_dispatched(self, study_uid: str, generation: int) -> bool:
        """``complete`` → ``dispatched`` once its task is in the broker (same generation)."""
        now = self.clock()
        with self.db.transaction() as conn:
            cursor = conn.execute(
                """UPDATE jobs SET state = ?, reason = '', started_at = ?, updated_at = ?,
                       input_received_at = (SELECT last_received_at FROM studies
                                            WHERE studies.study_uid = jobs.study_uid)
                   WHERE study_uid = ? AND generation = ? AND state = ?""",
                (DISPATCHED, now, now, study_uid, generation, COMPLETE),
            )
        return cursor.rowcount == 1

    def take_result(self, study_uid: str, generation: int) -> Job | None:
        """A worker's result for ``generation``: the job, now ``inferring``, if it still waits
        for one (``dispatched``, or ``complete`` again after a restart); else None (a repeat)."""
        now = self.clock()
        with self.db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET state = ?, updated_at = ? "
                "WHERE study_uid = ? AND generation = ? AND state IN (?, ?)",
                (INFERRING, now, study_uid, generation, DISPATCHED, COMPLETE),
            )
            if cursor.rowcount != 1:
                return None
            row = conn.execute("SELECT * FROM jobs WHERE study_uid = ?", (study_uid,)).fetchone()
            return _job(row)

    def redispatch_overdue(self, older_than: float) -> int:
        """``dispatched`` jobs without a result since ``older_than`` go back to ``complete``."""
        with self.db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET state = ?, reason = 'no result in time: published again', "
                "updated_at = ? WHERE state = ? AND started_at < ?",
                (COMPLETE, self.clock(), DISPATCHED, older_than),
            )
        return cursor.rowcount

    def recover(self) -> int:
        """After a crash: jobs caught mid-work run again from ``complete``."""
        with self.db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET state = ?, reason = 'restarted after interruption', "
                "updated_at = ? WHERE state IN (?, ?)",
                (COMPLETE, self.clock(), INFERRING, REPORTING),
            )
        return cursor.rowcount

    def in_state(self, state: str) -> list[Job]:
        rows = (
            self.db.connection()
            .execute("SELECT * FROM jobs WHERE state = ? ORDER BY updated_at", (state,))
            .fetchall()
        )
        return [_job(r) for r in rows]

    def depth(self) -> int:
        """Jobs the model worker still has to finish (the bounded queue)."""
        marks = ",".join("?" * len(WAITING_FOR_WORKER))
        row = (
            self.db.connection()
            .execute(f"SELECT COUNT(*) FROM jobs WHERE state IN ({marks})", WAITING_FOR_WORKER)
            .fetchone()
        )
        return int(row[0])

    def get(self, study_uid: str) -> Job | None:
        row = (
            self.db.connection()
            .execute("SELECT * FROM jobs WHERE study_uid = ?", (study_uid,))
            .fetchone()
        )
        return _job(row) if row else None

    def recent(self, limit: int = 20) -> list[Job]:
        rows = (
            self.db.connection()
            .execute("SELECT * FROM jobs ORDER BY updated_at DESC LIMIT ?", (limit,))
            .fetchall()
        )
        return [_job(r) for r in rows]
