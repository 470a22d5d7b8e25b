"""Spool retention: received instances of finished studies are deleted after a configured age.

Off by default (``storage.retention_hours = 0``): deleting patient data is the operator's decision.
Only studies whose job is in a final state (delivered, reported, not applicable, failed, delivery
failed) and has not changed for the retention period are purged; the job row stays as the record of
what was done, the node's own results (SR/SC under ``results/``) stay retrievable.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from scp_node.store.db import Database
from scp_node.store.jobs import FINAL_STATES

log = logging.getLogger(__name__)


def purge_finished_studies(db: Database, older_than_s: float, now: float | None = None) -> int:
    """Delete spool files and index rows of finished studies idle for ``older_than_s``."""
    cutoff = (now if now is not None else time.time()) - older_than_s
    marks = ",".join("?" * len(FINAL_STATES))
    conn = db.connection()
    studies = [
        r["study_uid"]
        for r in conn.execute(
            f"SELECT study_uid FROM jobs WHERE state IN ({marks}) AND updated_at < ?",
            (*FINAL_STATES, cutoff),
        ).fetchall()
    ]
    removed = 0
    for study_uid in studies:
        with db.transaction() as tx:
            # re-check inside the transaction: a new instance may have reopened the job
            state = tx.execute(
                "SELECT state FROM jobs WHERE study_uid = ?", (study_uid,)
            ).fetchone()
            if state is None or state["state"] not in FINAL_STATES:
                continue
            rows = tx.execute(
                "SELECT path FROM instances WHERE study_uid = ? AND source != 'result'",
                (study_uid,),
            ).fetchall()
            tx.execute(
                "DELETE FROM instance_headers WHERE sop_instance_uid IN (SELECT sop_instance_uid "
                "FROM instances WHERE study_uid = ? AND source != 'result')",
                (study_uid,),
            )
            tx.execute(
                "DELETE FROM instances WHERE study_uid = ? AND source != 'result'", (study_uid,)
            )
            tx.execute("DELETE FROM studies WHERE study_uid = ?", (study_uid,))
            tx.execute(
                "UPDATE jobs SET reason = TRIM(reason || ' (instances purged)') "
                "WHERE study_uid = ?",
                (study_uid,),
            )
        for row in rows:
            Path(row["path"]).unlink(missing_ok=True)
        removed += len(rows)
        log.info("retention: purged %d instances of study %s", len(rows), study_uid)
    return removed
