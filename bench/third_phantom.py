"""Command line of the third, rigid-body phantom generator (:mod:`scp_node.model.phantom_rigid`).

python bench/third_phantom.py /tmp/third --count 40 --seed 3 [--preview]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scp_node.model.phantom_rigid import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
