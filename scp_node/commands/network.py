"""``scp-node echo``: C-ECHO (PS3.7 §9.1.5) to the node itself or a configured destination."""

from __future__ import annotations

import argparse
from typing import Any

from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from scp_node.cli import add_config_argument
from scp_node.config import load_settings
from scp_node.identity import node_ae


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("echo", help="C-ECHO the node (default) or a destination")
    add_config_argument(parser)
    parser.add_argument("--to", metavar="NAME", help="a destination from [delivery.destinations]")
    parser.add_argument("--host", help="override host")
    parser.add_argument("--port", type=int, help="override port")
    parser.add_argument("--aec", help="called AE title (override)")
    parser.add_argument("--aet", default="ECHOSCU", help="calling AE title (default ECHOSCU)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if args.to:
        dest = settings.delivery.destinations.get(args.to)
        if dest is None:
            print(f"no destination named {args.to!r} in the configuration")
            return 2
        host, port, aec = dest.host, dest.port, dest.ae_title
    else:
        host = settings.dicom.bind_host if settings.dicom.bind_host != "0.0.0.0" else "127.0.0.1"
        port, aec = settings.dicom.port, settings.dicom.ae_title
        if settings.dicom.allowed_calling_aes and args.aet == "ECHOSCU":
            args.aet = settings.dicom.allowed_calling_aes[0]
    host, port, aec = args.host or host, args.port or port, args.aec or aec
    ae = node_ae(ae_title=args.aet)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    assoc = ae.associate(host, port, ae_title=aec)
    if not assoc.is_established:
        print(f"C-ECHO {aec}@{host}:{port}: association failed (rejected, aborted or no answer)")
        return 1
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    code = int(status.Status) if status and "Status" in status else -1
    print(f"C-ECHO {aec}@{host}:{port}: status 0x{code:04X}" + (" (Success)" if code == 0 else ""))
    return 0 if code == 0 else 1
