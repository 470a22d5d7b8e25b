"""Command line of the 3-D spin-echo phantom generator (:mod:`scp_node.model.phantom3d`).

python bench/indep_phantom.py /tmp/indep/site --set site --count 24 --seed 5 [--preview]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scp_node.model.phantom3d import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
