"""Each console page's values: ``(template, values)`` from the index, results and settings.

Run in a worker thread (SQLite and file reads block). Nothing here logs study content.
"""

from __future__ import annotations

import datetime
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request

from scp_node import __version__
from scp_node.identity import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from scp_node.report.sc import chosen_image
from scp_node.result import StudyResult
from scp_node.store.jobs import JobStore
from scp_node.store.outbox import STATES as OUTBOX_STATES
from scp_node.store.outbox import Outbox
from scp_node.web.console import charts as svg
from scp_node.web.console import data
from scp_node.web.console.dicom_view import (
    SECONDARY_CAPTURE,
    content_tree,
    drawn_png,
    study_header,
)
from scp_node.web.console.dicom_view import overlay_png as sc_png
from scp_node.web.dicom_json import stored_header

if TYPE_CHECKING:
    from scp_node.web.console.routes import ConsoleContext

log = logging.getLogger(__name__)

COMMITMENT_CLASS = "1.2.840.10008.1.20.1"
KIND_NAMES = {
    "1.2.840.10008.5.1.4.1.1.88.22": "SR (Enhanced)",
    "1.2.840.10008.5.1.4.1.1.88.33": "SR (Comprehensive)",
    "1.2.840.10008.5.1.4.1.1.88.34": "SR (Comprehensive 3D)",
    SECONDARY_CAPTURE: "Secondary Capture",
    COMMITMENT_CLASS: "Storage Commitment report",
}
SECRET_WORDS = ("token", "password", "secret")
Page = tuple[str, dict[str, Any]]
NOT_FOUND = "404"


def _not_found(what: str) -> Page:
    return NOT_FOUND, {"title": "Not found", "message": what}


def studies(ctx: ConsoleContext, request: Request) -> Page:
    params = dict(request.query_params)
    filt = data.StudyFilter.parse(params)
    conn = ctx.db.connection()
    rows = data.list_studies(conn, filt)
    return "studies.html", {
        "title": "Studies",
        "nav": "studies",
        "rows": rows,
        "filt": filt,
        "states": data.STATES,
        "verdicts": data.VERDICTS,
        "senders": data.senders(conn),
        "live": True,
    }


def _first_header(ctx: ConsoleContext, study_uid: str) -> Any:
    for rec in ctx.index.for_study(study_uid):
        if rec.source == "result":
            continue
        try:
            return stored_header(ctx.index, rec)
        except (LookupError, OSError, ValueError):
            continue
    return None


def _series_name(ctx: ConsoleContext, sop_instance_uid: str) -> str:
    """``number: description`` of a series, from the indexed header of one of its instances."""
    rec = ctx.index.get(sop_instance_uid)
    if rec is None:
        return ""
    try:
        ds = stored_header(ctx.index, rec)
    except (LookupError, OSError, ValueError):
        return ""
    number, description = ds.get("SeriesNumber", ""), ds.get("SeriesDescription", "")
    return f"{number}: {description}" if number not in ("", None) else str(description or "")


def _results(ctx: ConsoleContext, study_uid: str) -> tuple[Any, Any]:
    """(SR record, SC record) of the node's own results for the study (newest of each)."""
    sr = sc = None
    for rec in ctx.index.for_study(study_uid):
        if rec.source != "result":
            continue
        if rec.sop_class_uid == SECONDARY_CAPTURE:
            sc = rec if sc is None or rec.received_at >= sc.received_at else sc
        elif rec.modality == "SR":
            sr = rec if sr is None or rec.received_at >= sr.received_at else sr
    return sr, sc


def study(ctx: ConsoleContext, request: Request, study_uid: str) -> Page:
    conn = ctx.db.connection()
    row = data.get_study(conn, study_uid)
    if row is None:
        return _not_found("No study with that Study Instance UID on this node.")
    show = ctx.settings.console.show_patient
    header = study_header(_first_header(ctx, study_uid), show)
    sr, sc = _results(ctx, study_uid)
    tree = None
    if sr is not None and sr.path.exists():
        try:
            tree = content_tree(sr.path)
        except Exception:  # a broken file must not break the page
            tree = None
    deliveries = Outbox(ctx.db).rows(study_uid=study_uid)
    series = data.study_series(conn, study_uid)
    return "study.html", {
        "title": "Study",
        "nav": "studies",
        "row": row,
        "header": header,
        "show_patient": show,
        "series": series,
        "series_names": {s.series_uid: _series_name(ctx, s.first_sop) for s in series},
        "levels": row.result.get("levels", []),
        "overlay": "sc"
        if sc is not None and sc.path.exists()
        else ("drawn" if _drawable(ctx, row) is not None else ""),
        "tree": tree,
        "deliveries": deliveries,
        "kind_names": KIND_NAMES,
    }


def _drawable(ctx: ConsoleContext, row: data.StudyRow | None) -> Path | None:
    """The stored slice a result without an SC can be drawn on, or None."""
    if row is None or not row.result.get("levels"):
        return None
    chosen = chosen_image(StudyResult.from_json(row.result))
    rec = ctx.index.get(chosen[0]) if chosen else None
    return rec.path if rec is not None and rec.path.exists() else None


def overlay_png(ctx: ConsoleContext, study_uid: str) -> bytes | None:
    """The SC as PNG; without one, the chosen slice with the points drawn; None if neither."""
    _, sc = _results(ctx, study_uid)
    if sc is not None and sc.path.exists():
        return sc_png(sc.path)
    row = data.get_study(ctx.db.connection(), study_uid)
    source = _drawable(ctx, row)
    if row is None or source is None:
        return None
    try:
        return drawn_png(StudyResult.from_json(row.result), source)
    except Exception:  # an undecodable or replaced slice: no picture, not a broken page
        log.warning("console: the chosen slice of a study could not be drawn", exc_info=True)
        return None


def outbox(ctx: ConsoleContext, request: Request) -> Page:
    rows = Outbox(ctx.db).rows()
    groups: dict[str, list[Any]] = {state: [] for state in OUTBOX_STATES}
    for r in rows:
        groups[r.state].append(r)
    groups["delivered"] = sorted(
        groups["delivered"], key=lambda r: r.delivered_at or 0, reverse=True
    )[:100]
    retried = request.query_params.get("retried", "")
    return "outbox.html", {
        "title": "Outbox",
        "nav": "outbox",
        "groups": groups,
        "counts": {state: sum(r.state == state for r in rows) for state in OUTBOX_STATES},
        "kind_names": KIND_NAMES,
        "retried": int(retried) if retried.isdigit() else None,
        "live": True,
    }


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        if not value:
            out.append((prefix, "{}"))
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, out)
        return
    name = prefix.rsplit(".", 1)[-1].lower()
    if any(word in name for word in SECRET_WORDS):
        out.append((prefix, "(set, hidden)" if value else "(not set)"))
    else:
        out.append((prefix, "" if value is None else str(value)))


def configuration(ctx: ConsoleContext) -> list[tuple[str, str]]:
    """Every setting in effect as (dotted key, value), secrets replaced by set / not set."""
    dumped = ctx.settings.model_dump(mode="python")
    out: list[tuple[str, str]] = []
    _flatten("", _plain(dumped), out)
    return out


def _plain(value: Any) -> Any:
    """SecretStr → True/False (set or not); everything else as is."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "get_secret_value"):
        return bool(value.get_secret_value())
    return value


def _model(ctx: ConsoleContext) -> dict[str, Any]:
    engine = ctx.engine()
    if engine is not None and getattr(engine, "identity", None) is not None:
        return {
            "source": "loaded in this node",
            "name": engine.identity.name,
            "version": engine.identity.version,
            "weights_sha256": engine.identity.weights_sha256,
            "clinical_use": engine.identity.clinical_use,
            "threshold": engine.threshold,
            "calibration": engine.calibration_label,
            "device": engine.device_name,
        }
    latest = data.latest_result(ctx.db.connection())
    model = latest.get("model") or {}
    if not model:
        return {}
    return {
        "source": "from the latest result (the model is not loaded in this process)",
        "name": model.get("name", ""),
        "version": model.get("version", ""),
        "weights_sha256": model.get("weights_sha256", ""),
        "clinical_use": model.get("clinical_use", False),
        "threshold": latest.get("lstv_threshold"),
        "calibration": latest.get("calibration", ""),
        "device": latest.get("device", ""),
    }


def system(ctx: ConsoleContext, request: Request) -> Page:
    from scp_node.codecs import LOSSY, capabilities

    conn = ctx.db.connection()
    try:
        conn.execute("SELECT 1 FROM instances LIMIT 1").fetchall()
        index_ok = True
    except Exception:
        index_ok = False
    data_dir = ctx.settings.storage.data_dir
    try:
        free_mb: float | None = shutil.disk_usage(data_dir).free / 2**20
    except OSError:
        free_mb = None
    outbox_counts = Outbox(ctx.db).rows()
    decoders = [
        {
            "name": cap.uid.name,
            "uid": str(cap.uid),
            "lossy": cap.uid in LOSSY,
            "installed": ", ".join(cap.installed) or "-",
            "preferred": cap.preferred or "-",
            "decodable": cap.decodable,
            "failed": ", ".join(r.plugin for r in cap.results if not r.proven),
        }
        for cap in capabilities().syntaxes.values()
    ]
    return "system.html", {
        "title": "System",
        "nav": "system",
        "health": {
            "listener": ctx.ready(),
            "index": index_ok,
            "queue": JobStore(ctx.db).depth(),
            "queue_size": ctx.settings.pipeline.queue_size,
            "pipeline": ctx.settings.pipeline.enabled,
            "free_mb": free_mb,
            "min_free_mb": ctx.settings.storage.min_free_mb,
            "outbox": {s: sum(r.state == s for r in outbox_counts) for s in OUTBOX_STATES},
            "mode": ctx.settings.delivery.mode,
        },
        "version": {
            "scp-node": __version__,
            "Implementation Class UID": str(IMPLEMENTATION_CLASS_UID),
            "Implementation Version Name": IMPLEMENTATION_VERSION_NAME,
            "Python": sys.version.split()[0],
        },
        "model": _model(ctx),
        "decoders": decoders,
        "config": configuration(ctx),
    }


def _hour(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%H:00")


def _day_time(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%m-%d %H:%M")


def charts(ctx: ConsoleContext, request: Request) -> Page:
    conn = ctx.db.connection()
    now = time.time()
    latency = data.latencies(conn)
    hourly = data.per_hour(conn, now)
    points = data.scores(conn)
    threshold = points[-1].threshold if points else None
    outcomes = [(k, v) for k, v in data.VERDICTS]
    return "charts.html", {
        "title": "Charts",
        "nav": "charts",
        "latency_svg": svg.histogram(
            latency,
            title="End-to-end latency (last instance received to results delivered)",
            x_label="seconds",
            ident="latency",
            from_zero=True,
        ),
        "latency": latency,
        "hourly_svg": svg.stacked_bars(
            [(_hour(start), counts) for start, counts in hourly],
            outcomes,
            title="Studies per hour by outcome (last 24 hours, by arrival)",
            x_label="hour (local time)",
            ident="hourly",
        ),
        "hourly": [(_hour(start), counts) for start, counts in hourly if counts],
        "outcomes": outcomes,
        "score_svg": svg.histogram(
            [p.score for p in points],
            title="LSTV score distribution against the threshold",
            x_label="LSTV score",
            ident="scores",
            marker=threshold,
            marker_label="threshold",
        ),
        "drift_svg": svg.scatter(
            [(p.at, p.score) for p in points],
            title="LSTV score over time (drift)",
            x_label="analysed at (local time)",
            ident="drift",
            x_format=_day_time,
            threshold=threshold,
        ),
        "points": points,
        "threshold": threshold,
        "thresholds": sorted({round(p.threshold, 6) for p in points}),
        "live": True,
    }
