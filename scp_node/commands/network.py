"""``scp-node echo``: test the node itself or a destination with the settings delivery uses.

Without ``--to``: C-ECHO (PS3.7 §9.1.5) to the node's own listener. With ``--to NAME``: for a DIMSE
destination a C-ECHO over exactly the association delivery opens (its calling AE title, timeouts
and TLS, PS3.15 B.9); for a STOW-RS destination an authenticated QIDO-RS request
(``GET {url}/studies?limit=1``, PS3.18 §10.6) with its token and TLS settings. The line printed
says what was tested.
"""

from __future__ import annotations

import argparse
from typing import Any

import httpx
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from scp_node.cli import add_config_argument
from scp_node.config import Destination, load_settings
from scp_node.egress import dimse, stow


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "echo", help="C-ECHO the node (default), or test a destination as delivery reaches it"
    )
    add_config_argument(parser)
    parser.add_argument("--to", metavar="NAME", help="a destination from [delivery.destinations]")
    parser.add_argument("--host", help="override host")
    parser.add_argument("--port", type=int, help="override port")
    parser.add_argument("--aec", help="called AE title (override)")
    parser.add_argument(
        "--aet",
        help="calling AE title (override); default: the destination's calling_ae or [dicom] "
        "ae_title with --to, else the first allowed calling AE or ECHOSCU",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if args.to:
        configured = settings.delivery.destinations.get(args.to)
        if configured is None:
            print(f"no destination named {args.to!r} in the configuration")
            return 2
        dest = _overridden(configured, args)
        if dest.kind == "stow":
            return probe_stow(args.to, dest)
        return echo(dest, args.aet or dest.calling_ae or settings.dicom.ae_title, args.to)
    own = settings.dicom
    calling = args.aet or (own.allowed_calling_aes[0] if own.allowed_calling_aes else "ECHOSCU")
    node = Destination(
        ae_title=args.aec or own.ae_title,
        host=args.host or (own.bind_host if own.bind_host != "0.0.0.0" else "127.0.0.1"),
        port=args.port or own.port,
        timeout_s=10.0,
    )
    if own.tls.enabled:
        print("note: the node's listener uses TLS; test it with --to and a destination for it")
    return echo(node, calling, "the node")


def _overridden(dest: Destination, args: argparse.Namespace) -> Destination:
    update: dict[str, Any] = {}
    if args.host:
        update["host"] = args.host
    if args.port:
        update["port"] = args.port
    if args.aec:
        update["ae_title"] = args.aec
    return dest.model_copy(update=update)


def echo(dest: Destination, calling_ae: str, name: str) -> int:
    """C-ECHO over the association delivery would open; prints what was tested, 0 on Success."""
    dest = dest.model_copy(update={"calling_ae": calling_ae})
    what = f"C-ECHO {dimse.describe(dest, calling_ae)} [{name}]"
    assoc, error = dimse.associate(dest, calling_ae, [Verification])
    if assoc is None:
        print(f"{what}: {error}")
        return 1
    try:
        status = assoc.send_c_echo()
    finally:
        if assoc.is_established:
            assoc.release()
    code = int(status.Status) if status and "Status" in status else -1
    if code == -1:
        print(f"{what}: no C-ECHO response (timeout or abort)")
        return 1
    print(f"{what}: status 0x{code:04X}" + (" (Success)" if code == 0 else ""))
    return 0 if code == 0 else 1


def probe_stow(name: str, dest: Destination) -> int:
    """An authenticated QIDO-RS request to a STOW-RS destination (same token, CA and client
    certificate as delivery); 0 when it answers 200 or 204."""
    url = dest.url.rstrip("/") + "/studies"
    auth = "bearer token" if dest.token is not None else "no token"
    tls = ""
    if url.startswith("https:"):
        tls = f", TLS with CA {dest.tls.ca_file}" if dest.tls.ca_file else ", TLS with system CAs"
    what = f"DICOMweb probe GET {url}?limit=1 ({auth}{tls}) [{name}]"
    if not dest.url:
        print(f"{what}: destination {name!r} has no url")
        return 2
    try:
        with stow.http_client(dest) as client:
            reply = client.get(url, params={"limit": "1"}, headers=stow.auth_headers(dest))
    except httpx.HTTPError as exc:
        print(f"{what}: {type(exc).__name__}: {exc}")
        return 1
    code = reply.status_code
    if code in (200, 204):
        print(f"{what}: HTTP {code} (reachable, token accepted)")
        return 0
    meaning = {
        401: "the token was refused or is missing",
        403: "the token is not allowed to query",
        404: "no QIDO-RS at this URL (check url)",
        405: "QIDO-RS not offered at this URL",
    }.get(code, "unexpected answer")
    print(f"{what}: HTTP {code} ({meaning})")
    return 1
