"""``scp-node decoders``: the verified decoder table (the original verification checklist)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from scp_node.codecs import LOSSY, capabilities


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "decoders",
        help="show which transfer syntaxes this install really decodes (self-tested)",
        description="Decode a tiny shipped sample of every compressed transfer syntax with every "
        "installed pydicom decoder plugin, and show what is proven. Only proven syntaxes are "
        "accepted by the Storage SCP.",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    caps = capabilities()
    if args.json:
        print(json.dumps([cap.to_json() for cap in caps.syntaxes.values()], indent=2))
        return 0
    header = f"{'transfer syntax':<48} {'uid':<24} {'installed':<24} {'preferred':<10} verified"
    print(header)
    print("-" * len(header))
    for cap in caps.syntaxes.values():
        name = cap.uid.name + (" [lossy]" if cap.uid in LOSSY else "")
        verdict = "yes" if cap.decodable else "NO (not negotiated)"
        failed = [r.plugin for r in cap.results if not r.proven]
        if failed:
            verdict += f"; failed: {','.join(failed)}"
        print(
            f"{name[:48]:<48} {cap.uid:<24} {','.join(cap.installed) or '-':<24} "
            f"{cap.preferred or '-':<10} {verdict}"
        )
    print(f"\n{len(caps.decodable)} of {len(caps.syntaxes)} compressed syntaxes accepted.")
    return 0
