"""A cloud score from the visibility of stars.

A clear dark sky shows stars: point sources, a pixel or two across, standing out of a smooth
background. Cloud hides them (thick cloud) or drowns them in a brighter, textured background
(thin cloud); so the number of stars a frame shows, against the number a clear dark sky of the
same camera shows, measures how cloudy it is. Stars are counted as local maxima of the white
top-hat (the image minus its morphological opening by a disc larger than a star's image,
which removes everything extended: aurora, cloud, the sky gradient) that stand more than
``k_sigma`` robust noise deviations out, inside the sky above ``min_elevation_deg`` (the
horizon is where obstructions, city light and the longest air path are). Counting runs on the
sky's bounding square at no more than :data:`WORK` pixels across, so frames of one camera at
different resolutions (full frames, quicklooks) are counted at the same scale.

The score is ``1 - min(count / reference, 1)``: 0 for a sky as starry as the reference, 1 for
no star at all. The reference is the station's ``clear_sky_stars`` when set, else a high
percentile (default the 95th) of the counts of the run's own frames: a season holds clear dark
frames, and the clearest few percent show what this camera, exposure and processing reveal on
a clear night; a percentile rather than the maximum keeps a few frames with spurious peaks
(noise, snow on the dome) from setting it. A run of cloudy frames only has too low a
reference and scores too clear: set the station's reference for such runs. Moonlight and
twilight also hide stars; the screening records them separately.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from aurora.sky.camera import Circle, _circle_array, pixel_to_sky
from aurora.sky.station import Camera

#: Largest side of the square stars are counted on.
WORK = 512
#: Diameter of the opening's disc at the work scale: larger than a star's image.
STAR_DISC = 7
#: Side of the box (work pixels) the local noise is measured over: many stars' images wide.
NOISE_BOX = 15


def _grey_square(image: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """The circle's bounding square as float32 grey at most WORK across, and its origin and
    scale (original pixels per work pixel)."""
    grey = image.mean(axis=2, dtype=np.float32) if image.ndim == 3 else image.astype(np.float32)
    cx, cy, r = (float(v) for v in c)
    h, w = grey.shape
    x0, y0 = max(0, int(math.floor(cx - r))), max(0, int(math.floor(cy - r)))
    x1, y1 = min(w, int(math.ceil(cx + r)) + 1), min(h, int(math.ceil(cy + r)) + 1)
    crop = grey[y0:y1, x0:x1]
    k = max(crop.shape) / WORK
    if k > 1.0:
        size = (max(1, round(crop.shape[1] / k)), max(1, round(crop.shape[0] / k)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        k = (x1 - x0) / crop.shape[1]
    else:
        k = 1.0
    return crop, float(x0), float(y0), k


@functools.lru_cache(maxsize=8)
def _sky_of_square(
    camera: Camera,
    circle: tuple[float, ...],
    shape: tuple[int, ...],
    x0: float,
    y0: float,
    k: float,
    min_elevation_deg: float,
) -> np.ndarray:
    """(h, w) bool, read-only: the work square's pixels inside the sky circle and above the
    elevation. The same for every frame of a camera and night, so kept (a night's frames share
    one geometry; computing it per frame was most of the cost)."""
    c = np.asarray(circle)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    _, el = pixel_to_sky(
        x0 + (xx + 0.5) * k - 0.5, y0 + (yy + 0.5) * k - 0.5, camera=camera, circle=c
    )
    sky = (el > min_elevation_deg) & (np.hypot(x0 + xx * k - c[0], y0 + yy * k - c[1]) < c[2])
    sky.flags.writeable = False
    return sky


def star_count(
    image: np.ndarray,
    *,
    camera: Camera,
    circle: Circle,
    min_elevation_deg: float = 30.0,
    k_sigma: float = 5.0,
) -> int:
    """Number of point sources (stars) in the sky above ``min_elevation_deg``.

    Args:
        image: (H, W) or (H, W, C) image, any numeric dtype (colour: the channel mean).
        camera: the camera model (for the elevation of each pixel).
        circle: the sky circle (cx, cy, r) in original pixels.
        min_elevation_deg: lowest elevation counted, in [0, 90).
        k_sigma: how many robust noise deviations a star stands out of the top-hat.

    Returns:
        The count.
    """
    if not 0.0 <= min_elevation_deg < 90.0:
        raise ValueError(f"min_elevation_deg must be in [0, 90), got {min_elevation_deg}")
    if not k_sigma > 0:
        raise ValueError(f"k_sigma must be > 0, got {k_sigma}")
    c = _circle_array(circle)
    if c is None or c.shape != (3,):
        raise ValueError("star_count needs one circle (cx, cy, r)")
    sq, x0, y0, k = _grey_square(image, c)
    key = tuple(float(v) for v in c)
    sky = _sky_of_square(camera, key, sq.shape, x0, y0, k, float(min_elevation_deg))
    if sky.sum() < 16:
        return 0
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (STAR_DISC, STAR_DISC))
    top = cv2.morphologyEx(sq, cv2.MORPH_TOPHAT, disc)
    # Noise is local (brighter sky, cloud texture and compression blocks are noisier): each
    # pixel is judged against the mean absolute top-hat of its neighbourhood (x 1.25: the
    # standard deviation of Gaussian noise), never below half a level of an integer image.
    scale = 1.25 * cv2.blur(np.abs(top - float(np.median(top[sky]))), (NOISE_BOX, NOISE_BOX))
    peak = top >= cv2.dilate(top, np.ones((3, 3), np.uint8))
    stars = peak & sky & (top > k_sigma * np.maximum(scale, 0.5))
    return int(stars.sum())


def cloud_scores(
    counts: np.ndarray, *, reference: float | None = None, percentile: float = 95.0
) -> tuple[np.ndarray, float]:
    """Cloud score per frame from its star count.

    Args:
        counts: (N,) star counts (NaN for a frame not counted).
        reference: stars of a clear dark sky of this camera (the station's
            ``clear_sky_stars``), or None for the ``percentile`` of ``counts``.
        percentile: the percentile taken when there is no reference, in (0, 100].

    Returns:
        ((N,) float64 scores in [0, 1], NaN where the count is NaN or the reference is not
        positive; the reference used).
    """
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    counts = np.asarray(counts, dtype=np.float64)
    if reference is None:
        ok = counts[np.isfinite(counts)]
        reference = float(np.percentile(ok, percentile)) if ok.size else math.nan
    reference = float(reference)
    if not reference > 0:
        return np.full(counts.shape, np.nan), reference
    return 1.0 - np.clip(counts / reference, 0.0, 1.0), reference
