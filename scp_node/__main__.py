import sys

from scp_node.cli import main

sys.exit(main())
