"""``scp-node serve`` with the intake journal's checkpoints held back: a fault injection for
tests/test_journal.py. What it acknowledges is durable in the journal only; its spool files are
never flushed by it (as if the power went before the batch flush)."""

from __future__ import annotations

import sys

from scp_node.cli import main
from scp_node.store import journal

journal.BATCH_WAIT_S = 3600.0  # the checkpoint thread waits an hour before its first batch

if __name__ == "__main__":
    sys.exit(main(["serve"]))
