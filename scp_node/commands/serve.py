"""``scp-node serve``: run the node until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
from typing import Any

from scp_node.cli import add_config_argument
from scp_node.config import (
    describe_sources,
    load_settings,
    names_the_environment_cannot_reach,
    overridden_file_keys,
)
from scp_node.observe import setup_logging

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the node (DICOM listener, DICOMweb, pipeline)"
    )
    add_config_argument(parser)
    parser.add_argument(
        "--role",
        choices=("all", "ingest"),
        default=None,
        help="all: everything in this process (default); ingest: no model, analysis by "
        "`scp-node worker` processes through the broker (needs [cluster] broker_url)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if getattr(args, "role", None):
        settings.cluster.role = args.role
    setup_logging(settings.log.level, settings.log.format)
    log.info("configuration: %s", describe_sources(args.config))
    for line in overridden_file_keys(args.config):
        log.warning("configuration: %s", line)
    for name in names_the_environment_cannot_reach(settings):
        log.info(
            "configuration: destination %r cannot be set by environment variables (only lower-case "
            "letters, digits and underscores can be); use the file for its keys",
            name,
        )
    from scp_node.model.calibration import CalibrationError
    from scp_node.node import Node

    if settings.cluster.role == "ingest" and not (
        settings.cluster.broker_url and settings.cluster.broker_url.get_secret_value()
    ):
        log.error("not starting: role ingest needs [cluster] broker_url (docs/deployment.md)")
        return 2
    try:
        node = Node(settings)
    except CalibrationError as exc:
        log.error("not starting: %s", exc)
        return 2

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        node.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    node.start()
    node.wait()
    log.info("stopped")
    return 0
