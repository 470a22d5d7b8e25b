"""``scp-node worker``: a cluster worker (holds the model, takes analysis tasks from the broker)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from scp_node.cli import add_config_argument
from scp_node.config import describe_sources, load_settings

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "worker", help="run a cluster worker: the model, fed by the broker ([cluster] broker_url)"
    )
    add_config_argument(parser)
    parser.add_argument(
        "--name", default="", help="worker name shown in status (default worker-<pid>@<host>)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    log.info("configuration: %s", describe_sources(args.config))
    if settings.cluster.broker_url is None or not settings.cluster.broker_url.get_secret_value():
        log.error("not starting: [cluster] broker_url is not set (docs/deployment.md, Cluster)")
        return 2
    try:
        from scp_node.cluster.worker import run_worker
    except ModuleNotFoundError as exc:  # celery is an extra: pip install 'scp-node[cluster]'
        log.error("not starting: %s (install the cluster extra: scp-node[cluster])", exc)
        return 2
    return run_worker(settings, args.name)
