"""What the console shows, read from the node's own SQLite index (``studies``, ``instances``,
``jobs``, ``outbox``): plain queries and plain data, no HTTP.

Times: *received* is the study's first instance, *complete* when the study was closed, *inferred*
when the model finished (start of the run + its inference time), *delivered* when the last result
was delivered. End-to-end latency is *delivered* minus the arrival of the study's last instance
(as ``scp-node status`` and the ``scp_node_end_to_end_seconds`` metric count it).
"""

from __future__ import annotations

import datetime
import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from scp_node.store import jobs as job_states

#: (key, label) of every verdict, in the order the filter and the charts list them.
VERDICTS: tuple[tuple[str, str], ...] = (
    ("suspected", "LSTV suspected"),
    ("needs_review", "Needs review"),
    ("not_suspected", "No LSTV suspected"),
    ("not_assessable", "Not assessable"),
    ("not_applicable", "Not applicable"),
    ("failed", "Failed"),
    ("pending", "Pending"),
)
VERDICT_LABELS = dict(VERDICTS)
#: Job states a study can be in; ``received`` also covers a study the monitor has not seen yet.
STATES: tuple[str, ...] = (
    job_states.RECEIVED,
    job_states.COMPLETE,
    job_states.INFERRING,
    job_states.REPORTING,
    job_states.QUEUED,
    job_states.DELIVERED,
    job_states.REPORTED,
    job_states.SHADOW,
    job_states.NOT_APPLICABLE,
    job_states.DELIVERY_FAILED,
    job_states.FAILED,
)
MAX_ROWS = 500


@dataclass(frozen=True)
class Verdict:
    key: str
    label: str


def verdict(state: str, result: dict[str, Any]) -> Verdict:
    """The study's verdict in the SR's words (``docs/report.md``), from its job state and result."""
    if not result:
        key = "failed" if state == job_states.FAILED else "pending"
        return Verdict(key, VERDICT_LABELS[key])
    if not result.get("applicable", True):
        return Verdict("not_applicable", VERDICT_LABELS["not_applicable"])
    if not result.get("assessable", True):
        return Verdict("not_assessable", VERDICT_LABELS["not_assessable"])
    said = "LSTV suspected" if result.get("lstv_suspected") else "No LSTV suspected"
    if result.get("needs_review"):
        return Verdict("needs_review", f"{said}, needs review")
    return Verdict("suspected" if result.get("lstv_suspected") else "not_suspected", said)


@dataclass
class StudyRow:
    """One study as the lists show it."""

    study_uid: str
    sender: str
    source: str
    state: str
    reason: str
    instances: int
    received_at: float
    last_received_at: float
    complete_at: float | None
    inferred_at: float | None
    delivered_at: float | None
    input_received_at: float | None
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> Verdict:
        return verdict(self.state, self.result)

    @property
    def score(self) -> float | None:
        if not self.result.get("applicable", False) or not self.result.get("assessable", True):
            return None
        value = self.result.get("lstv_score")
        return float(value) if value is not None else None

    @property
    def threshold(self) -> float | None:
        value = self.result.get("lstv_threshold")
        return float(value) if value is not None and self.result.get("applicable") else None

    @property
    def series_uid(self) -> str:
        return str(self.result.get("series_instance_uid", ""))

    @property
    def end_to_end_s(self) -> float | None:
        if self.delivered_at is None or self.input_received_at is None:
            return None
        return max(0.0, self.delivered_at - self.input_received_at)


@dataclass(frozen=True)
class StudyFilter:
    """The Studies page's filters; every value is checked, so none reaches SQL unvalidated."""

    state: str = ""
    day: datetime.date | None = None
    sender: str = ""
    verdict: str = ""

    @classmethod
    def parse(cls, params: dict[str, str]) -> StudyFilter:
        state = params.get("state", "")
        verdict_key = params.get("verdict", "")
        sender = params.get("sender", "").strip()
        day = None
        try:
            day = datetime.date.fromisoformat(params.get("date", "").strip() or "x")
        except ValueError:
            day = None
        return cls(
            state=state if state in STATES else "",
            day=day,
            sender=sender if 0 < len(sender) <= 16 and sender.isprintable() else "",
            verdict=verdict_key if verdict_key in VERDICT_LABELS else "",
        )


_STUDY_SQL = """
SELECT s.study_uid, s.first_received_at, s.last_received_at, s.calling_ae, s.source,
       j.state, j.reason, j.complete_at, j.started_at, j.delivered_at, j.input_received_at,
       j.result_json,
       (SELECT COUNT(*) FROM instances i
         WHERE i.study_uid = s.study_uid AND i.source != 'result') AS instances
FROM studies s LEFT JOIN jobs j ON j.study_uid = s.study_uid
"""


def _study_row(r: sqlite3.Row) -> StudyRow:
    result: dict[str, Any] = json.loads(r["result_json"]) if r["result_json"] else {}
    inferred = None
    if r["started_at"] is not None and result.get("inference_ms") is not None:
        inferred = float(r["started_at"]) + float(result["inference_ms"]) / 1000.0
    return StudyRow(
        study_uid=r["study_uid"],
        sender=r["calling_ae"] or "",
        source=r["source"] or "",
        state=r["state"] or job_states.RECEIVED,
        reason=r["reason"] or "",
        instances=int(r["instances"]),
        received_at=float(r["first_received_at"]),
        last_received_at=float(r["last_received_at"]),
        complete_at=r["complete_at"],
        inferred_at=inferred,
        delivered_at=r["delivered_at"],
        input_received_at=r["input_received_at"],
        result=result,
    )


def list_studies(
    conn: sqlite3.Connection, filt: StudyFilter = StudyFilter(), limit: int = 100
) -> list[StudyRow]:
    """Studies newest first (by their last instance), filtered."""
    where: list[str] = []
    args: list[Any] = []
    if filt.state == job_states.RECEIVED:
        where.append("(j.state IS NULL OR j.state = ?)")
        args.append(filt.state)
    elif filt.state:
        where.append("j.state = ?")
        args.append(filt.state)
    if filt.sender:
        where.append("s.calling_ae = ?")
        args.append(filt.sender)
    if filt.day is not None:
        start = datetime.datetime.combine(filt.day, datetime.time()).timestamp()
        where.append("s.first_received_at >= ? AND s.first_received_at < ?")
        args += [start, start + 86400.0]
    sql = _STUDY_SQL + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY s.last_received_at DESC LIMIT ?"
    rows = [_study_row(r) for r in conn.execute(sql, [*args, MAX_ROWS])]
    if filt.verdict:
        rows = [r for r in rows if r.verdict.key == filt.verdict]
    return rows[:limit]


def get_study(conn: sqlite3.Connection, study_uid: str) -> StudyRow | None:
    row = conn.execute(_STUDY_SQL + " WHERE s.study_uid = ?", (study_uid,)).fetchone()
    return _study_row(row) if row else None


def senders(conn: sqlite3.Connection) -> list[str]:
    """Calling AE titles that sent studies (for the filter's choices)."""
    rows = conn.execute(
        "SELECT DISTINCT calling_ae FROM studies WHERE calling_ae != '' ORDER BY 1 LIMIT 200"
    )
    return [str(r[0]) for r in rows]


@dataclass(frozen=True)
class SeriesRow:
    series_uid: str
    modality: str
    instances: int
    first_sop: str
    source: str


def study_series(conn: sqlite3.Connection, study_uid: str) -> list[SeriesRow]:
    """The study's series (received ones and the node's results), in arrival order."""
    rows = conn.execute(
        """SELECT series_uid, MIN(modality) AS modality, COUNT(*) AS n,
                  MIN(sop_instance_uid) AS sop, MIN(source) AS source
           FROM instances WHERE study_uid = ? GROUP BY series_uid ORDER BY MIN(received_at)""",
        (study_uid,),
    )
    return [
        SeriesRow(r["series_uid"], r["modality"], int(r["n"]), r["sop"], r["source"]) for r in rows
    ]


# --- charts ---


def latencies(conn: sqlite3.Connection, limit: int = 2000) -> list[float]:
    """End-to-end seconds of the most recently delivered studies."""
    rows = conn.execute(
        """SELECT delivered_at - input_received_at FROM jobs
           WHERE delivered_at IS NOT NULL AND input_received_at IS NOT NULL
           ORDER BY delivered_at DESC LIMIT ?""",
        (limit,),
    )
    return [max(0.0, float(r[0])) for r in rows]


def outcome(row: StudyRow) -> str:
    """A study's outcome for the per-hour chart: its verdict, or ``failed`` when its analysis or
    its delivery failed."""
    if row.state in (job_states.FAILED, job_states.DELIVERY_FAILED):
        return "failed"
    return row.verdict.key


def per_hour(
    conn: sqlite3.Connection, now: float, hours: int = 24
) -> list[tuple[float, dict[str, int]]]:
    """(start of the hour, {outcome: studies}) for the last ``hours`` hours, oldest first, by
    when each study's first instance arrived."""
    top = (int(now) // 3600 + 1) * 3600
    since = top - hours * 3600
    counts: list[dict[str, int]] = [{} for _ in range(hours)]
    rows = conn.execute(_STUDY_SQL + " WHERE s.first_received_at >= ?", (since,))
    for r in rows:
        row = _study_row(r)
        slot = int((row.received_at - since) // 3600)
        if 0 <= slot < hours:
            key = outcome(row)
            counts[slot][key] = counts[slot].get(key, 0) + 1
    return [(since + 3600.0 * i, counts[i]) for i in range(hours)]


@dataclass(frozen=True)
class ScorePoint:
    at: float
    score: float
    threshold: float


def scores(conn: sqlite3.Connection, limit: int = 2000) -> list[ScorePoint]:
    """LSTV scores of the most recent assessable results, oldest first."""
    rows = conn.execute(
        """SELECT COALESCE(started_at, updated_at) AS at, result_json FROM jobs
           WHERE result_json != '' ORDER BY at DESC LIMIT ?""",
        (limit,),
    )
    points = []
    for r in rows:
        result = json.loads(r["result_json"])
        if result.get("applicable") and result.get("assessable", True):
            points.append(
                ScorePoint(
                    float(r["at"]), float(result["lstv_score"]), float(result["lstv_threshold"])
                )
            )
    return points[::-1]


def latest_result(conn: sqlite3.Connection) -> dict[str, Any]:
    """The newest result that names its model (for the System page)."""
    rows = conn.execute(
        "SELECT result_json FROM jobs WHERE result_json != '' ORDER BY updated_at DESC LIMIT 50"
    )
    for r in rows:
        result: dict[str, Any] = json.loads(r[0])
        if result.get("model"):
            return result
    return {}
