"""The reference image that the shipped codec self-test samples were encoded from.

Kept apart from :mod:`scp_node.codecs` so that ``tools/make_codec_samples.py`` and the self-test use
one definition of the expected pixels.
"""

from __future__ import annotations

import numpy as np

SAMPLE_SIZE = 32


def reference_image(bits_stored: int, size: int = SAMPLE_SIZE) -> np.ndarray:
    """A deterministic ``size`` × ``size`` unsigned image using the full ``bits_stored`` range.

    A smooth ramp, a checker and a bright disc: lossy codecs keep it close, lossless ones exact.
    """
    max_value = (1 << bits_stored) - 1
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    ramp = (rows + cols) / (2 * (size - 1))
    checker = ((rows // 4 + cols // 4) % 2) * 0.1
    disc = (((rows - size / 2) ** 2 + (cols - size / 3) ** 2) < (size / 5) ** 2) * 0.3
    image = np.clip(0.6 * ramp + checker + disc, 0.0, 1.0) * max_value
    dtype = np.uint8 if bits_stored <= 8 else np.uint16
    return np.round(image).astype(dtype)
