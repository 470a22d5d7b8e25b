"""``scp-node status``: recent studies with their job state and timings."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from scp_node.cli import add_config_argument
from scp_node.config import load_settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("status", help="recent studies, their state and timings")
    add_config_argument(parser)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--retry",
        metavar="STUDY_UID",
        help="analyse a failed study again (its job goes back to complete; the node takes it)",
    )
    parser.set_defaults(func=run)


def _age(now: float, when: float | None) -> str:
    return "-" if when is None else f"{now - when:.0f}s ago"


def _span(start: float | None, end: float | None) -> str:
    return "-" if start is None or end is None else f"{end - start:.1f}s"


def _result_files(index: Any, study_uid: str) -> list[str]:
    """Paths of the node's own results (SR, SC) kept for the study (also in shadow mode)."""
    return [str(r.path) for r in index.for_study(study_uid) if r.source == "result"]


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if not settings.storage.index_path.exists():
        print(f"no index at {settings.storage.index_path}: the node has not run with this config")
        return 1
    from scp_node.store.db import Database
    from scp_node.store.index import InstanceIndex
    from scp_node.store.jobs import JobStore

    db = Database(settings.storage.index_path)
    if args.retry:
        if not JobStore(db).move(args.retry, "failed", "complete", "retry requested"):
            print(f"no failed study {args.retry}")
            return 1
        print(f"study {args.retry}: analysed again")
        return 0
    jobs = JobStore(db).recent(args.limit)
    index = InstanceIndex(db)
    now = time.time()
    rows: list[dict[str, Any]] = []
    for job in jobs:
        result = job.result()
        rows.append(
            {
                "study_uid": job.study_uid,
                "state": job.state,
                "reason": job.reason,
                "instances": len(
                    [r for r in index.for_study(job.study_uid) if r.source != "result"]
                ),
                "updated": job.updated_at,
                "inference_ms": result.get("inference_ms"),
                "lstv_score": result.get("lstv_score"),
                "lstv_suspected": result.get("lstv_suspected"),
                "assessable": result.get("assessable"),
                "not_assessable_reason": result.get("not_assessable_reason"),
                "held_back": result.get("held_back"),
                "calibration": result.get("calibration"),
                "worker": result.get("worker"),  # cluster worker that analysed it
                "results": _result_files(index, job.study_uid),
                "wait_s": None if job.complete_at is None else job.complete_at - job.created_at,
                "end_to_end_s": None
                if job.delivered_at is None or job.input_received_at is None
                else job.delivered_at - job.input_received_at,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'study':<64} {'state':<15} {'inst':>4} {'LSTV':>6} {'e2e':>7} {'worker':<12} updated")
    for row, job in zip(rows, jobs, strict=True):
        score = "-" if row["lstv_score"] is None else f"{row['lstv_score']:.3f}"
        if row["assessable"] is False:
            score = "n.a."
        print(
            f"{row['study_uid'][:64]:<64} {row['state']:<15} {row['instances']:>4} {score:>6} "
            f"{_span(job.input_received_at, job.delivered_at):>7} {row['worker'] or '-':<12} "
            f"{_age(now, job.updated_at)}" + (f"  ({row['reason']})" if row["reason"] else "")
        )
    if not rows:
        print("no studies yet")
    return 0
