"""Sub-commands of ``scp-node``; see :mod:`scp_node.cli`."""
