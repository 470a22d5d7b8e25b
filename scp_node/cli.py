"""The ``scp-node`` command line: one sub-command module per area, each with ``register()``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from scp_node import __version__

#: Modules under ``scp_node.commands`` that add sub-commands; each defines ``register(subparsers)``
#: and sets ``func`` (taking the parsed args, returning an exit code) on the parsers it adds.
COMMAND_MODULES: tuple[str, ...] = (
    "serve",
    "network",
    "decoders",
    "model",
    "outbox",
    "status",
    "spool",
    "worker",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scp-node",
        description="DICOM node: Storage SCP + DICOMweb, LSTV screen, DICOM SR back to the PACS.",
    )
    parser.add_argument("--version", action="version", version=f"scp-node {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"scp_node.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"scp_node.commands.{name}":
                continue  # area not built into this install
            raise
        module.register(subparsers)
    return parser


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--config FILE`` option every command that needs settings takes."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML config file (default: embedded defaults, or $SCP_NODE_CONFIG)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; a configuration error is one line on stderr and exit status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from scp_node.config import ConfigError, load_settings
    from scp_node.observe import setup_logging

    try:
        if hasattr(args, "config"):  # every command that reads settings logs as [log] says
            settings = load_settings(args.config)
            setup_logging(settings.log.level, settings.log.format)
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"scp-node {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
