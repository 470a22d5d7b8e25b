"""The localizer: network, weights, canonical geometry, inference engine, uncertainty maths.

Importing this package sets ``OMP_WAIT_POLICY=PASSIVE`` (unless the environment already sets it)
before torch loads its OpenMP runtime: idle intra-op threads then sleep instead of spinning, which
on a small shared CPU left the decoding and Python stages of a study without a core (measured in
docs/performance.md, issue 15: the analysis twice as fast under load, results unchanged).
``OMP_WAIT_POLICY=ACTIVE`` in the node's environment restores spinning.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
