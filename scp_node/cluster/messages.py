"""The analysis task and its result as plain JSON (what travels through the broker).

No PHI: a task names a study by its UID and says where to fetch it; a result carries the model's
findings (UIDs, coordinates, scores), never names, IDs or pixel data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: The Celery task name that workers register and ingest nodes publish.
TASK_NAME = "scp_node.analyse_study"
#: Result queue of an ingest node: ``RESULT_QUEUE_PREFIX + node_id``.
RESULT_QUEUE_PREFIX = "scp_node.results."
#: Outcomes of a task as reported back.
OK, FAILED = "ok", "failed"


@dataclass(frozen=True)
class AnalysisTask:
    """One complete study to analyse: which, which generation, where to fetch, where to answer."""

    study_uid: str
    generation: int
    node_id: str
    dicomweb_url: str
    reply_queue: str

    @property
    def task_id(self) -> str:
        """Deterministic: a task published twice (e.g. after a restart) has one identity."""
        return f"{self.node_id}:{self.study_uid}:{self.generation}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AnalysisTask:
        return cls(
            study_uid=str(data["study_uid"]),
            generation=int(data["generation"]),
            node_id=str(data["node_id"]),
            dicomweb_url=str(data["dicomweb_url"]),
            reply_queue=str(data["reply_queue"]),
        )


@dataclass(frozen=True)
class AnalysisReply:
    """A worker's answer: ``ok`` with the result, or ``failed`` with the reason."""

    study_uid: str
    generation: int
    status: str
    worker: str
    worker_seconds: float = 0.0
    fetch_seconds: float = 0.0
    reason: str = ""
    result: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AnalysisReply:
        return cls(
            study_uid=str(data["study_uid"]),
            generation=int(data["generation"]),
            status=str(data["status"]),
            worker=str(data.get("worker", "")),
            worker_seconds=float(data.get("worker_seconds", 0.0)),
            fetch_seconds=float(data.get("fetch_seconds", 0.0)),
            reason=str(data.get("reason", "")),
            result=dict(data.get("result") or {}),
        )
