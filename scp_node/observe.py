"""Logging set-up (text or one JSON object per line, never PHI) and Prometheus metrics."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from scp_node.result import StudyResult

INSTANCES_RECEIVED = Counter(
    "scp_node_instances_received_total",
    "Instances stored, by transfer syntax, calling AE and ingress",
    ["transfer_syntax", "calling_ae", "source"],
)
BYTES_RECEIVED = Counter(
    "scp_node_bytes_received_total",
    "Bytes of instances stored, by transfer syntax, calling AE and ingress",
    ["transfer_syntax", "calling_ae", "source"],
)
INSTANCES_REFUSED = Counter(
    "scp_node_instances_refused_total", "Instances refused, by status", ["status", "source"]
)
DECODE_FAILURES = Counter(
    "scp_node_decode_failures_total",
    "Pixel decode failures by plugin",
    ["plugin", "transfer_syntax"],
)
QUEUE_DEPTH = Gauge("scp_node_job_queue_depth", "Jobs waiting for the model worker")
JOB_OUTCOMES = Counter("scp_node_jobs_total", "Finished jobs by outcome", ["outcome"])
JOB_OUTCOME_NAMES = (
    "delivered",
    "reported",
    "shadow",
    "not_applicable",
    "failed",
    "delivery_failed",
)
for _outcome in JOB_OUTCOME_NAMES:  # exported as 0 from the start: increase() sees the first one
    JOB_OUTCOMES.labels(outcome=_outcome)
DEAD_LETTERS = Counter(
    "scp_node_outbox_dead_letters_total",
    "Outbox rows that became dead letters (max_attempts failed attempts)",
    ["destination", "kind"],
)
INFERENCE_SECONDS = Histogram(
    "scp_node_inference_seconds",
    "Model inference time per study",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
STAGE_SECONDS = Histogram(
    "scp_node_analysis_stage_seconds",
    "Time per study in each analysis stage: select (headers), decode, canonical, model, report",
    ["stage"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)
#: LSTV score buckets: the score is a self-normalised difference, about -1 .. +3 (docs/model.md);
#: 0.25 steps where thresholds sit, coarser in the tails.
LSTV_SCORE_BUCKETS: tuple[float, ...] = (
    -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0,
)  # fmt: skip
LSTV_SCORE = Histogram(
    "scp_node_lstv_score",
    "LSTV score of each assessable study (drift: compare with scp_node_lstv_threshold)",
    buckets=LSTV_SCORE_BUCKETS,
)
LSTV_THRESHOLD = Gauge("scp_node_lstv_threshold", "LSTV threshold the loaded engine uses")
SCREEN_OUTCOMES = Counter(
    "scp_node_screen_outcomes_total",
    "LSTV screen outcome per analysed study",
    ["outcome"],
)
SCREEN_OUTCOME_NAMES = ("suspected", "not_suspected", "not_assessable", "not_applicable")
for _name in SCREEN_OUTCOME_NAMES:  # exported as 0 from the start, so rates are defined
    SCREEN_OUTCOMES.labels(outcome=_name)
FINDINGS_HELD_BACK = Counter(
    "scp_node_lstv_findings_held_back_total",
    "Scores at or over the threshold not reported as LSTV suspected: no anatomical sign",
)
LEVELS_REPAIRED = Counter(
    "scp_node_levels_repaired_total",
    "Studies whose disc levels were mended before the quality gate (second_peak, counted_up)",
    ["how"],
)
for _how in ("second_peak", "counted_up"):
    LEVELS_REPAIRED.labels(how=_how)
END_TO_END_SECONDS = Histogram(
    "scp_node_end_to_end_seconds",
    "Last instance received to SR acknowledged by the destination",
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
)


def escape_controls(text: str) -> str:
    """``text`` with every non-printable character (CR, LF, NUL, ESC, other C0/C1 controls,
    Unicode line/paragraph separators, format characters) written as a ``\\xNN``/``\\uNNNN``
    escape, and the backslash itself doubled, so a peer-supplied value can never start a
    new log line or hide text on a terminal."""
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif char.isprintable():
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)


class EscapingFormatter(logging.Formatter):
    """Text log lines with peer-supplied values escaped (:func:`escape_controls`): the message,
    after its arguments are filled in, is one line; exception text keeps its line structure but
    each line is escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        text = super().formatException(ei)
        return "\n".join(escape_controls(line) for line in text.split("\n"))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and exception text)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "thread": record.threadName,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


_HANDLER_NAME = "scp-node"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record (not at set-up)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _quiet_library_tracebacks(record: logging.LogRecord) -> bool:
    """Keep pynetdicom's message but drop its traceback unless DEBUG logging is on: a peer
    sending junk PDUs must not produce a traceback per PDU (issue 13 D10)."""
    if (
        record.exc_info
        and record.name.startswith("pynetdicom")
        and logging.getLogger().getEffectiveLevel() > logging.DEBUG
    ):
        record.exc_info = None
        record.exc_text = None
    return True


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger once. Log lines name UIDs, AE titles and addresses, never
    patient name, ID or birth date (the node's code never logs those attributes)."""
    handler = _StderrHandler()
    handler.set_name(_HANDLER_NAME)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(_quiet_library_tracebacks)
    root = logging.getLogger()
    # replace the handler an earlier call installed; keep others (a test runner's capture)
    root.handlers[:] = [h for h in root.handlers if h.get_name() != _HANDLER_NAME] + [handler]
    root.setLevel(level.upper())
    # pynetdicom logs every PDU at DEBUG and, at INFO, each association's details: keep it terse.
    logging.getLogger("pynetdicom").setLevel(max(logging.WARNING, root.level))


def screen_outcome(result: StudyResult) -> str:
    """``suspected`` / ``not_suspected`` / ``not_assessable`` / ``not_applicable``."""
    if not result.applicable:
        return "not_applicable"
    if not result.assessable:
        return "not_assessable"
    return "suspected" if result.lstv_suspected else "not_suspected"


def record_screen(result: StudyResult) -> str:
    """Count the outcome; observe the score of assessable studies only (an untrusted score
    would blur the distribution that drift is read from). Returns the outcome."""
    outcome = screen_outcome(result)
    SCREEN_OUTCOMES.labels(outcome=outcome).inc()
    if outcome in ("suspected", "not_suspected"):
        LSTV_SCORE.observe(float(result.lstv_score))
    if result.held_back:
        FINDINGS_HELD_BACK.inc()
    if result.levels_repaired:
        LEVELS_REPAIRED.labels(how=result.levels_repaired).inc()
    return outcome
