"""The brightest point of the sky: where the Moon is when it is up.

The Moon (magnitude about -12 when half lit) outshines every star and, at the exposures of
auroral cameras, nearly all aurora, and it lights the sky around it, so when it is in the
field of view the brightest point of the lightly smoothed sky is the Moon or the glow around
it, even when the pixel detector (:mod:`aurora.preprocess.moon`) rejects its shape (a Moon at
the edge of a moonlit sky, a core barely saturated). :mod:`aurora.sky.screen` uses this
point only to confirm a Moon the ephemeris places near it, never on its own.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from aurora.sky.camera import Circle, _circle_array

#: Side of the square the search runs on (a downscaled copy of the sky's bounding square).
WORK = 256
#: Smoothing (Gaussian sigma) as a fraction of the sky radius: drops hot pixels and stars.
SIGMA_FRAC = 0.01


def brightest_spot(image: np.ndarray, circle: Circle) -> tuple[float, float]:
    """Brightest point of the smoothed sky inside the circle.

    Args:
        image: (H, W) or (H, W, C) image, any numeric dtype (colour: the max over channels).
        circle: the sky circle (cx, cy, r) in original pixels.

    Returns:
        (x, y) in original pixels; (NaN, NaN) when the circle holds no pixel.
    """
    c = _circle_array(circle)
    if c is None or c.shape != (3,):
        raise ValueError("brightest_spot needs one circle (cx, cy, r)")
    cx, cy, r = (float(v) for v in c)
    grey = image.max(axis=2) if image.ndim == 3 else image
    h, w = grey.shape
    x0, y0 = max(0, int(math.floor(cx - r))), max(0, int(math.floor(cy - r)))
    x1, y1 = min(w, int(math.ceil(cx + r)) + 1), min(h, int(math.ceil(cy + r)) + 1)
    if x1 <= x0 or y1 <= y0:
        return math.nan, math.nan
    crop = grey[y0:y1, x0:x1].astype(np.float32)
    k = max(crop.shape) / WORK if max(crop.shape) > WORK else 1.0
    if k > 1.0:
        size = (max(1, round(crop.shape[1] / k)), max(1, round(crop.shape[0] / k)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        kx, ky = (x1 - x0) / crop.shape[1], (y1 - y0) / crop.shape[0]
    else:
        kx = ky = 1.0
    sigma = max(1.0, SIGMA_FRAC * r / max(kx, ky))
    smooth = cv2.GaussianBlur(crop, (0, 0), sigma)
    yy, xx = np.mgrid[0 : crop.shape[0], 0 : crop.shape[1]]
    ox, oy = x0 + (xx + 0.5) * kx - 0.5, y0 + (yy + 0.5) * ky - 0.5
    inside = (ox - cx) ** 2 + (oy - cy) ** 2 < (0.98 * r) ** 2
    if not inside.any():
        return math.nan, math.nan
    i = int(np.argmax(np.where(inside, smooth, -np.inf)))
    return float(ox.flat[i]), float(oy.flat[i])
