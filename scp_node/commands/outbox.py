"""``scp-node outbox list|retry`` and ``scp-node send FILE --to NAME`` (delivery from the shell)."""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path
from typing import Any

import pydicom

from scp_node.cli import add_config_argument
from scp_node.config import load_settings
from scp_node.egress.commitment import COMMITMENT_CLASS
from scp_node.egress.worker import send_rows, worker_for
from scp_node.store.db import Database
from scp_node.store.outbox import HELD, STATES, Outbox, OutboxRow


def register(subparsers: Any) -> None:
    outbox = subparsers.add_parser("outbox", help="list or retry result deliveries")
    actions = outbox.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="deliveries and their state")
    add_config_argument(listing)
    listing.add_argument("--json", action="store_true", help="one JSON array")
    listing.add_argument("--state", choices=STATES, help="only rows in this state")
    listing.set_defaults(func=run_list)
    retry = actions.add_parser("retry", help="reset a delivery (or all dead ones) and send now")
    add_config_argument(retry)
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, help="outbox row id")
    which.add_argument("--dead", action="store_true", help="every dead-lettered row")
    retry.add_argument(
        "--no-send", action="store_true", help="only reset to pending (a running node sends it)"
    )
    retry.set_defaults(func=run_retry)

    send = subparsers.add_parser("send", help="send one DICOM file to a destination (one-off)")
    add_config_argument(send)
    send.add_argument("file", type=Path, help="DICOM file (PS3.10)")
    send.add_argument("--to", required=True, metavar="NAME", help="a [delivery.destinations] name")
    send.set_defaults(func=run_send)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def run_list(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    rows = Outbox(Database(settings.storage.index_path)).rows(state=args.state)
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=2))
        return 0
    print(f"{'ID':>5} {'STATE':9} {'TRY':>3} {'DESTINATION':12} {'NEXT/DONE':19} SOP INSTANCE UID")
    for r in rows:
        when = _when(r.delivered_at if r.state == "delivered" else r.next_attempt_at)
        if r.state == HELD:
            when = "- (shadow mode)"
        what = " (storage commitment report)" if r.sop_class_uid == COMMITMENT_CLASS else ""
        print(
            f"{r.id:>5} {r.state:9} {r.attempts:>3} {r.destination[:12]:12} {when:19} "
            f"{r.sop_instance_uid}{what}"
        )
        if r.last_error and r.state != "delivered":
            print(f"{'':>5} last error: {r.last_error}")
    held = sum(r.state == HELD for r in rows)
    if held:
        print(f"{held} held: kept in shadow mode, never sent by the node (path: --json)")
    return 0


def run_retry(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    db = Database(settings.storage.index_path)
    outbox = Outbox(db)
    row = outbox.get(args.id) if args.id is not None else None
    if row is not None and row.state == HELD:
        print(
            f"row {row.id} is held (shadow mode): held results are never sent by the node; "
            f"to send this one deliberately: scp-node send {row.path} --to {row.destination}"
        )
        return 1
    ids = outbox.retry(row_id=args.id, dead=args.dead)
    if not ids:
        print("nothing to retry")
        return 1 if args.id is not None else 0
    rows = "row" if len(ids) == 1 else "rows"
    print(f"{len(ids)} outbox {rows} reset to pending: {', '.join(f'#{i}' for i in ids)}")
    if args.no_send:
        return 0
    if settings.delivery.mode == "shadow":
        print('shadow mode ([delivery] mode = "shadow"): nothing is sent until mode = "send"')
        return 0
    delivered = worker_for(settings, db).deliver_due(ids=ids)
    print(f"delivered {delivered} of {len(ids)} ({len(ids) - delivered} failed again)")
    return 0 if delivered == len(ids) else 1


def run_send(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    dest = settings.delivery.destinations.get(args.to)
    if dest is None:
        print(f"no destination named {args.to!r} in the configuration")
        return 2
    ds = pydicom.dcmread(args.file, stop_before_pixels=True)
    row = OutboxRow(
        id=0,
        study_uid=str(ds.StudyInstanceUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        sop_class_uid=str(ds.SOPClassUID),
        path=args.file,
        destination=args.to,
        state="sending",
        attempts=1,
        next_attempt_at=0.0,
        last_error="",
        created_at=0.0,
        updated_at=0.0,
        delivered_at=None,
        generation=1,
    )
    outcome = send_rows(dest, settings.dicom.ae_title, [row])[0]
    print(f"{args.file}: " + ("delivered" if outcome.ok else f"failed: {outcome.error}"))
    return 0 if outcome.ok else 1
