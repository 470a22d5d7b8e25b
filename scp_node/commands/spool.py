"""``scp-node spool check``: do the index and the spool files agree (ingest.spool_check)?"""

from __future__ import annotations

import argparse
import json
from typing import Any

from scp_node.cli import add_config_argument
from scp_node.config import load_settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("spool", help="spool maintenance")
    actions = parser.add_subparsers(dest="spool_action", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="orphan files, index rows without a file, index/file mismatches, unparseable files",
    )
    add_config_argument(check)
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    """Exit 0 when consistent, 1 when not (or when there is no index)."""
    settings = load_settings(args.config)
    if not settings.storage.index_path.exists():
        print(f"no index at {settings.storage.index_path}: the node has not run with this config")
        return 1
    from scp_node.ingest.spool_check import check_spool
    from scp_node.store.db import Database
    from scp_node.store.index import InstanceIndex

    index = InstanceIndex(Database(settings.storage.index_path))
    report = check_spool(
        settings.storage.spool_dir, index, settings.storage.max_instance_mb * 2**20
    )
    if args.json:
        print(json.dumps({**report.__dict__, "ok": report.ok}, indent=2))
    else:
        print("\n".join(report.lines()))
    return 0 if report.ok else 1
