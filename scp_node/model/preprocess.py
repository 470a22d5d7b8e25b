"""The one preprocessing path of training and inference: slice -> fixed-size network input."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def normalise_intensity(image: np.ndarray) -> np.ndarray:
    """Scale so the 99th percentile is 1 and clip to [0, 1.5] (robust to window/gain/bias)."""
    img = image.astype(np.float32)
    hi = float(np.percentile(img, 99.0))
    lo = float(np.percentile(img, 1.0))
    if hi - lo <= 1e-6:
        return np.zeros_like(img)
    return np.clip((img - lo) / (hi - lo), 0.0, 1.5)


def to_input(slices: np.ndarray, size: int) -> torch.Tensor:
    """``[N, rows, cols]`` float slices -> ``[N, 1, size, size]`` normalised, resampled input.

    The resampling is anisotropic when rows != cols; :func:`scale_factors` maps coordinates back.
    """
    normed = np.stack([normalise_intensity(s) for s in slices])
    t = torch.from_numpy(normed)[:, None]
    return F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def scale_factors(rows: int, cols: int, size: int) -> tuple[float, float]:
    """(col factor, row factor): multiply network pixel coordinates to get image pixel coordinates.

    With ``align_corners=False`` the centre of network pixel ``i`` maps to image ``(i + 0.5) * f -
    0.5``.
    """
    return cols / size, rows / size


def to_image_xy(x: float, y: float, rows: int, cols: int, size: int) -> tuple[float, float]:
    fx, fy = scale_factors(rows, cols, size)
    return (x + 0.5) * fx - 0.5, (y + 0.5) * fy - 0.5


def to_network_xy(col: float, row: float, rows: int, cols: int, size: int) -> tuple[float, float]:
    fx, fy = scale_factors(rows, cols, size)
    return (col + 0.5) / fx - 0.5, (row + 0.5) / fy - 0.5
