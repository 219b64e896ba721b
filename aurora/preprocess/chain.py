"""The thesis preprocessing chain in OpenCV: sky circle, dark rejection, LAB contrast, stars, Moon.

One image goes through :func:`preprocess_image`:

1. 16-bit or grey input is stretched to 8-bit RGB (:func:`to_uint8`).
2. The fisheye sky circle is found (:func:`find_sky_circle`) or taken from the config.
3. The circle's bounding square is cut out (zero padded where it leaves the frame) and resized
   to a fixed working size (:data:`WORK_SIZE`) for the decisions that must not depend on the
   output size: darkness (0.9-quantile of HSV value inside the circle), the Moon (a point
   source: :func:`_moon_test`), edge glare (:func:`_detect_glare_square`) and twilight (a
   bright sky: :func:`sky_floor`).
4. The square is resized to the output size; the Moon, edge glare and their glow are replaced
   by the sky around them (:func:`fill_hole`; optional).
5. LAB: L clipped to its percentiles inside the circle and stretched to full range (not for a
   twilight sky); a and b re-centred on 128 (optional). Grey input stays exactly grey.
6. Median blur removes stars; everything outside the circle is set to black.

The star filter works at the output resolution, after resizing, so its kernel means the same
thing for a 256 px THEMIS frame and a 2832 px KHO frame.

Rejection reasons (``PreprocessResult.rejected``; ``detail`` says more where given):

- ``too small``: a side below :data:`MIN_SEARCH_SIDE` px when the circle is searched (below
  :data:`MIN_IMAGE_SIDE` px with a fixed circle); the detail gives the size and the minimum.
- ``saturated``: at least :data:`SATURATED_FRACTION` of the frame (when no circle is found) or
  of the sky circle is at the maximum value (V >= :data:`SATURATED` for 8-bit input, sensor
  saturation for 16-bit input): nothing is left to see.
- ``too dark``: the darkness test (``PreprocessConfig.dark_threshold``).
- ``no sky circle: <why>``: no plausible sky circle in an image of usable size.
- ``bad image: <why>`` (recorded by :mod:`aurora.preprocess_store`): an array the chain does
  not understand.

The on-disk store of a whole data set lives in :mod:`aurora.preprocess_store`; its names
(:class:`PreprocessedStore`, :func:`build_preprocessed`) are re-exported here.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import cv2
import numpy as np

#: Side of the square the darkness and Moon decisions are made on (independent of ``size``).
WORK_SIZE = 256
#: Long side of the thumbnail the sky circle is searched on.
CIRCLE_SEARCH_SIZE = 320
#: V (max of R, G, B) at or above which a pixel counts as saturated.
SATURATED = 245
#: Reason recorded for images rejected by the darkness test.
TOO_DARK = "too dark"
#: Reason recorded for frames (or sky circles) almost entirely at the maximum value.
ALL_SATURATED = "saturated"
#: Fraction of the frame (or of the sky circle) at the maximum value that makes it ``saturated``.
SATURATED_FRACTION = 0.9
#: Reason recorded for images too small for the chain.
TOO_SMALL = "too small"
#: Smallest side (px) the chain handles at all (with a fixed circle from the config).
MIN_IMAGE_SIDE = 8
#: Smallest side (px) in which the sky circle can be found: the circle is fitted to at least 20
#: boundary points of a half-size thumbnail, and below about 24 px not even a flat disk well
#: inside the frame gives them (a disk filling 95% of the frame needs about 56 px).
MIN_SEARCH_SIDE = 32
#: Sky floor (0.1-quantile of V over the inner sky) at or above which the sky itself is bright
#: (twilight, daylight, a low Moon): half of full scale, far above any night sky's darkest tenth.
BRIGHT_SKY = 128.0

cv2.setNumThreads(1)  # the chain is parallel over images; OpenCV's own threads only contend


class PreprocessError(ValueError):
    """Base class of the errors raised by the preprocessing chain."""


class ImageFormatError(PreprocessError):
    """The array is not an image the chain understands (shape or dtype)."""


class SkyCircleError(PreprocessError):
    """No plausible fisheye sky circle could be found in the image."""


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings of the preprocessing chain (built from ``conf/preprocess/*.yaml``).

    Attributes:
        size: side of the square output image in pixels.
        lab_stretch: clip L (CIELAB) to ``l_percentiles`` inside the circle and stretch it to
            the full 0..255 range.
        l_percentiles: lower and upper percentiles of L used by ``lab_stretch``.
        recenter_ab: shift a and b so that their means inside the circle are 128 (neutral).
        star_kernel: median blur kernel (odd) in output pixels; 0 or 1 disables the filter.
        dark_threshold: reject the image as ``"too dark"`` when the 0.9-quantile of HSV value
            (0..255) inside the circle is below this; 0 disables the test.
        moon: ``"mask"`` replaces the Moon and its glare with local sky; ``"keep"`` leaves it.
            Detection always runs and is recorded either way.
        background: subtract the smooth sky background (airglow, moonlit and cloud-lit sky,
            twilight): the per-channel median over a window of this fraction of the image side,
            so that structures narrower than the window remain (0 disables it).
        moon_light: with ``moon="mask"``, also remove the scattered moonlight: the excess of
            the azimuthal median brightness around the Moon over the sky far from it.
        max_gain: upper limit on the contrast gain of the L stretch (and of the stretch of what
            rises above the subtracted background), so that a sky with nothing above its
            background stays dark instead of having its noise stretched to the full range
            (``None``: no limit, as in the thesis).
        circle: fixed ``(cx, cy, r)`` in original pixels for a known camera; ``None`` finds the
            circle in every image.
        u16_percentiles: percentiles stretched to 0..255 when the input is 16-bit.
        twilight_level: the image is recorded as twilight (a bright sky: twilight, daylight,
            a sky lit by a low Moon) when the 0.1-quantile of HSV value (0..255) over the inner
            90% of the circle is at or above this; its L is then not stretched, so a bright sky
            is not turned white (what rises above a subtracted ``background`` is still
            stretched, up to ``max_gain``). The default, half of full scale, is far above the
            darkest tenth of any night sky. 0 disables the test.
    """

    size: int = 224
    lab_stretch: bool = True
    l_percentiles: tuple[float, float] = (0.5, 99.5)
    recenter_ab: bool = True
    star_kernel: int = 3
    dark_threshold: float = 20.0
    moon: str = "mask"
    moon_light: bool = False
    background: float = 0.0
    max_gain: float | None = None
    circle: tuple[float, float, float] | None = None
    u16_percentiles: tuple[float, float] = (0.5, 99.9)
    twilight_level: float = BRIGHT_SKY

    def __post_init__(self) -> None:
        # Hydra hands lists (ListConfig) for tuple fields; keep the dataclass hashable and the
        # cache key independent of how the YAML spelled them.
        for name in ("l_percentiles", "u16_percentiles", "circle"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(float(v) for v in value))
        if self.size < 8:
            raise ValueError(f"preprocess.size must be at least 8, got {self.size}")
        lo, hi = self.l_percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"preprocess.l_percentiles must be 0 <= lo < hi <= 100: {lo, hi}")
        if self.star_kernel > 1 and self.star_kernel % 2 == 0:
            raise ValueError(f"preprocess.star_kernel must be odd (or 0/1), got {self.star_kernel}")
        if self.max_gain is not None and self.max_gain < 1:
            raise ValueError(f"preprocess.max_gain must be at least 1 (or null): {self.max_gain}")
        if self.moon not in ("mask", "keep"):
            raise ValueError(f"preprocess.moon must be 'mask' or 'keep', got {self.moon!r}")
        if self.circle is not None and (len(self.circle) != 3 or self.circle[2] <= 0):
            raise ValueError(f"preprocess.circle must be (cx, cy, r) with r > 0: {self.circle}")


@dataclass(frozen=True)
class SkyCircle:
    """The fisheye sky circle in original image pixels (pixel centres at integers)."""

    cx: float
    cy: float
    r: float


@dataclass(frozen=True)
class SpotInfo:
    """A bright spot in original image pixels: centre and radius (NaN when absent)."""

    present: bool
    x: float = math.nan
    y: float = math.nan
    r: float = math.nan

    @classmethod
    def absent(cls) -> Self:
        """The 'nothing found' result."""
        return cls(False)


@dataclass(frozen=True)
class MoonInfo(SpotInfo):
    """Moon detection in original image pixels."""


@dataclass(frozen=True)
class GlareInfo(SpotInfo):
    """Edge glare in original image pixels: centroid and the radius of a disk of the same area."""


@dataclass
class PreprocessResult:
    """Output of :func:`preprocess_image`.

    Attributes:
        image: (size, size, 3) uint8 RGB, black outside the circle; ``None`` when rejected.
        rejected: the rejection reason (a short code, see the module docstring), or ``None``.
        circle: the sky circle used.
        moon: the Moon detection (original pixels).
        glare: saturated glare at the edge of the sky (original pixels).
        twilight: the sky itself is bright (see ``PreprocessConfig.twilight_level``).
        detail: one line on why it was rejected (size and minimum, saturated fraction), or
            ``None``.
    """

    image: np.ndarray | None
    rejected: str | None
    circle: SkyCircle
    moon: MoonInfo = field(default_factory=MoonInfo.absent)
    glare: GlareInfo = field(default_factory=GlareInfo.absent)
    twilight: bool = False
    detail: str | None = None


# --------------------------------------------------------------------------- conversion


def to_uint8(raw: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.9)) -> np.ndarray:
    """Convert any supported image array to 8-bit RGB.

    8-bit input is passed through; 16-bit (and float) input is stretched so that the given
    percentiles map to 0 and 255. Grey input is replicated to three channels, an alpha channel
    is dropped.

    Args:
        raw: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array, uint8, uint16 or float.
        percentiles: lower/upper percentiles of the stretch for non-8-bit input.

    Returns:
        (H, W, 3) uint8 RGB array.

    Raises:
        ImageFormatError: for other shapes or dtypes, or an empty image.
    """
    if raw.ndim == 3 and raw.shape[2] in (1, 3, 4):
        raw = raw[..., 0] if raw.shape[2] == 1 else raw[..., :3]
    if raw.ndim not in (2, 3) or min(raw.shape[:2]) < MIN_IMAGE_SIDE:
        raise ImageFormatError(f"expected an (H, W) or (H, W, 3) image, got shape {raw.shape}")
    if raw.dtype != np.uint8:
        if not (np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.floating)):
            raise ImageFormatError(f"unsupported image dtype {raw.dtype}")
        data = raw.astype(np.float32)
        finite = np.isfinite(data)
        if not finite.any():
            raise ImageFormatError("image has no finite pixel values")
        sat = _sensor_saturation(raw)
        if sat is not None and sat.mean() < 0.5:
            # Saturated pixels (the Moon) would otherwise set the top and darken the sky.
            finite &= ~sat if raw.ndim == 2 else ~sat[..., None]
        lo, hi = np.percentile(data[finite], percentiles)
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        data = np.nan_to_num((data - lo) * scale, nan=0.0, posinf=255.0, neginf=0.0)
        raw = np.clip(data + 0.5, 0, 255).astype(np.uint8)
    if raw.ndim == 2:
        raw = np.repeat(raw[:, :, None], 3, axis=2)
    return np.ascontiguousarray(raw)


def _brightness(rgb: np.ndarray) -> np.ndarray:
    """(H, W) uint8 HSV value, max of R, G, B (OpenCV, much faster than ``max(axis=2)``)."""
    if rgb.ndim == 2:
        return rgb
    r, g, b = cv2.split(rgb)
    return cv2.max(cv2.max(r, g), b)


def _sensor_saturation(raw: np.ndarray) -> np.ndarray | None:
    """(H, W) bool mask of sensor-saturated pixels for integer input wider than 8 bits.

    Returns ``None`` for 8-bit or float input (saturation is then read from the 8-bit image).
    """
    if raw.dtype == np.uint8 or not np.issubdtype(raw.dtype, np.integer):
        return None
    grey = raw.max(axis=2) if raw.ndim == 3 else raw
    return grey >= 0.95 * np.iinfo(raw.dtype).max


# --------------------------------------------------------------------------- sky circle


def _fit_circle(pts: np.ndarray) -> tuple[float, float, float]:
    """Algebraic least-squares circle through (N, 2) points (Kasa fit)."""
    x, y = pts[:, 0], pts[:, 1]
    a = np.column_stack([x, y, np.ones_like(x)])
    (c0, c1, c2), *_ = np.linalg.lstsq(a, x * x + y * y, rcond=None)
    cx, cy = c0 / 2.0, c1 / 2.0
    return float(cx), float(cy), float(math.sqrt(max(c2 + cx * cx + cy * cy, 0.0)))


def _ransac_circle(
    pts: np.ndarray, tol: float, n_iter: int = 64
) -> tuple[float, float, float, float]:
    """Circle through most of the (N, 2) points: RANSAC on point triples, then least squares.

    Robust to a minority of outliers such as horizon obstructions (trees, buildings, which cut
    notches into the sky) or text touching the sky.

    Returns:
        (cx, cy, r, fraction of points within ``tol`` of the circle).
    """
    rng = np.random.default_rng(0)  # deterministic: the same image gives the same circle
    a, b, c = (pts[rng.integers(0, len(pts), n_iter)] for _ in range(3))
    ax, ay, bx, by, qx, qy = a[:, 0], a[:, 1], b[:, 0], b[:, 1], c[:, 0], c[:, 1]
    d = 2.0 * (ax * (by - qy) + bx * (qy - ay) + qx * (ay - by))
    d = np.where(np.abs(d) < 1e-9, np.nan, d)
    sa, sb, sc = ax * ax + ay * ay, bx * bx + by * by, qx * qx + qy * qy
    ux = (sa * (by - qy) + sb * (qy - ay) + sc * (ay - by)) / d
    uy = (sa * (qx - bx) + sb * (ax - qx) + sc * (bx - ax)) / d
    r = np.hypot(ax - ux, ay - uy)
    res = np.abs(
        np.hypot(pts[None, :, 0] - ux[:, None], pts[None, :, 1] - uy[:, None]) - r[:, None]
    )
    counts = np.nan_to_num(res < tol).sum(axis=1)
    keep = res[int(np.argmax(counts))] < tol
    if keep.sum() < 3:
        keep[:] = True
    cx, cy, rr = _fit_circle(pts[keep])
    for _ in range(2):  # polish: refit on the points close to the least-squares circle
        near = np.abs(np.hypot(pts[:, 0] - cx, pts[:, 1] - cy) - rr) < tol
        if near.sum() < 3:
            break
        cx, cy, rr = _fit_circle(pts[near])
    frac = float(np.mean(np.abs(np.hypot(pts[:, 0] - cx, pts[:, 1] - cy) - rr) < tol))
    return cx, cy, rr, frac


def find_sky_circle(rgb: np.ndarray) -> SkyCircle:
    """Find the fisheye sky circle automatically.

    Works on a thumbnail of the brightness (max of R, G, B). A rough circle comes from the
    largest region brighter than just above the black level outside the lens (an opening first
    detaches captions and corner text); it is then refined ray by ray: along each ray from the
    centre the edge is where the brightness falls below half-way between the sky just inside
    and the black level (unbiased by blur and independent of how bright the sky is). Rays that
    leave the frame before the edge (a circle clipped by the frame, as in THEMIS or full KHO
    frames) are skipped, and RANSAC ignores rays cut short by trees, buildings or text.

    Args:
        rgb: (H, W, 3) uint8 RGB image (or (H, W) grey).

    Returns:
        The circle in original pixel coordinates (pixel centres at integers).

    Raises:
        SkyCircleError: when no sky region or no plausible circle is found.
    """
    h, w = rgb.shape[:2]
    grey = _brightness(rgb)
    f = max(1, math.ceil(max(h, w) / CIRCLE_SEARCH_SIZE))
    small = _shrink(grey, f)
    th, tw = small.shape
    sx = sy = 1.0 / f
    hist = np.bincount(small.ravel(), minlength=256)
    bg = float(np.searchsorted(np.cumsum(hist), 0.01 * small.size))
    # Typical sky level: the median of what is above the black level (the sky may cover
    # less than half of a wide frame).
    lit = np.cumsum(hist[int(bg) + 2 :])
    sky = bg + 2 + float(np.searchsorted(lit, 0.5 * lit[-1])) if len(lit) and lit[-1] else bg
    if sky - bg < 2.0:
        raise SkyCircleError(f"no sky region brighter than the black level ({bg:.0f})")
    # Rough circle on a half-size thumbnail: the largest bright region and RANSAC on its edge.
    half = _shrink(small, 2)
    hw, hh = half.shape[1], half.shape[0]
    blur = cv2.GaussianBlur(half, (0, 0), 1.0)
    mask = (blur > bg + max(1.5, 0.12 * (sky - bg))).astype(np.uint8)
    k = max(3, round(0.025 * max(hw, hh)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n < 2:
        raise SkyCircleError("no bright region found for the sky circle")
    region = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    pts = max(contours, key=len).reshape(-1, 2).astype(np.float64)
    on_edge = (pts[:, 0] <= 1) | (pts[:, 1] <= 1) | (pts[:, 0] >= hw - 2) | (pts[:, 1] >= hh - 2)
    pts = pts[~on_edge]
    if len(pts) < 20:
        raise SkyCircleError("the sky region has too little free boundary to fit a circle")
    pts = pts[:: max(1, len(pts) // 150)]
    fx, fy = tw / hw, th / hh
    pts = np.column_stack([(pts[:, 0] + 0.5) * fx - 0.5, (pts[:, 1] + 0.5) * fy - 0.5])
    cx, cy, r, inliers = _ransac_circle(pts, tol=max(1.0, 0.015 * min(tw, th)))
    if not (math.isfinite(r) and 4 < r < 2 * max(tw, th)):
        raise SkyCircleError("the sky region boundary gives no circle")
    small = cv2.GaussianBlur(small.astype(np.float32), (0, 0), 1.0)
    refined = _refine_circle(small, bg, cx, cy, r)
    if refined is not None:
        cx, cy, r, inliers = refined
    circle = SkyCircle((cx + 0.5) / sx - 0.5, (cy + 0.5) / sy - 0.5, r / sx)
    _validate_circle(circle, h, w, inliers)
    return circle


def _refine_circle(
    img: np.ndarray, bg: float, cx: float, cy: float, r: float, n_angles: int = 180
) -> tuple[float, float, float, float] | None:
    """Put a rough circle on the half-way brightness crossing along rays from its centre.

    Args:
        img: (h, w) float32 lightly blurred brightness thumbnail.
        bg: black level outside the lens.
        cx, cy, r: rough circle in thumbnail pixels.

    Returns:
        (cx, cy, r, inlier fraction) in thumbnail pixels, or ``None`` when too few rays.
    """
    rho = np.arange(0.7 * r, 1.25 * r, 0.5, dtype=np.float32)
    theta = np.linspace(0, 2 * np.pi, n_angles, endpoint=False, dtype=np.float32)
    map_x = cx + np.cos(theta)[:, None] * rho[None, :]
    map_y = cy + np.sin(theta)[:, None] * rho[None, :]
    prof = cv2.remap(
        img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=-1.0
    )
    inner = (rho >= 0.75 * r) & (rho <= 0.9 * r)
    start = int(np.searchsorted(rho, 0.9 * r))
    gap = max(2, round(0.03 * r / 0.5))  # samples of black that end the sky (not a dark star gap)
    level = bg + 0.25 * (np.median(prof[:, inner], axis=1) - bg)
    below = np.zeros((n_angles, prof.shape[1] - start + 1), np.int32)
    np.cumsum(prof[:, start:] < level[:, None], axis=1, out=below[:, 1:])
    runs = (below[:, gap:] - below[:, :-gap]) == gap  # runs[:, i]: samples i..i+gap-1 all below
    found = runs.any(axis=1)
    j = start + np.argmax(runs, axis=1)
    rows = np.arange(n_angles)
    ok = (
        found
        & (prof[:, inner].min(axis=1) >= 0)  # the ray does not leave the frame inside the sky
        & (prof[rows, j] >= 0)  # the sky ends before the frame does (clipped circles)
        & (level - bg >= 1.0)
        & (j > 0)
    )
    if ok.sum() < 20:
        return None
    j, lev, th = j[ok], level[ok], theta[ok]
    p0, p1 = prof[ok, j - 1], prof[ok, j]
    t = np.clip((p0 - lev) / np.maximum(p0 - p1, 1e-6), 0.0, 1.0)
    rr = rho[j - 1] + 0.5 * t
    pts = np.column_stack([cx + np.cos(th) * rr, cy + np.sin(th) * rr])
    return _ransac_circle(pts.astype(np.float64), tol=max(1.0, 0.015 * r))


def _validate_circle(c: SkyCircle, h: int, w: int, inliers: float = 1.0) -> None:
    """Raise :class:`SkyCircleError` unless the circle is plausible for an (h, w) frame."""
    if not all(math.isfinite(v) for v in (c.cx, c.cy, c.r)):
        raise SkyCircleError(f"sky circle fit did not converge: {c}")
    if not 0.2 * min(h, w) <= c.r <= 0.75 * max(h, w):
        raise SkyCircleError(
            f"sky circle radius {c.r:.0f} px is implausible for a {w}x{h} frame "
            f"(expected {0.2 * min(h, w):.0f}..{0.75 * max(h, w):.0f})"
        )
    if not (0 <= c.cx < w and 0 <= c.cy < h):
        raise SkyCircleError(f"sky circle centre ({c.cx:.0f}, {c.cy:.0f}) is outside the frame")
    if inliers < 0.4:
        raise SkyCircleError(f"sky region boundary is not circular ({inliers:.0%} on the fit)")


# --------------------------------------------------------------------------- square crop


def _square_bounds(circle: SkyCircle) -> tuple[int, int, int]:
    """Top-left pixel (x0, y0) and side n of the circle's bounding square."""
    n = max(2, round(2.0 * circle.r))
    x0 = round(circle.cx - (n - 1) / 2.0)
    y0 = round(circle.cy - (n - 1) / 2.0)
    return x0, y0, n


def crop_square(rgb: np.ndarray, circle: SkyCircle) -> tuple[np.ndarray, int, int]:
    """Cut out the circle's bounding square, zero padded where it leaves the frame.

    Returns:
        ((n, n, ...) crop of the same dtype, x0, y0); crop pixel (j, i) is original
        pixel (x0 + j, y0 + i).
    """
    x0, y0, n = _square_bounds(circle)
    h, w = rgb.shape[:2]
    out = np.zeros((n, n, *rgb.shape[2:]), rgb.dtype)
    ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + n, w), min(y0 + n, h)
    if ax1 > ax0 and ay1 > ay0:
        out[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0] = rgb[ay0:ay1, ax0:ax1]
    return out, x0, y0


def disk_mask(size: int, scale: float = 1.0) -> np.ndarray:
    """(size, size) bool disk inscribed in the square (radius ``scale * size / 2``)."""
    c = (size - 1) / 2.0
    yy, xx = np.ogrid[:size, :size]
    return (xx - c) ** 2 + (yy - c) ** 2 <= (scale * size / 2.0) ** 2


_DISKS: dict[tuple[int, float], np.ndarray] = {}


def _disk(size: int, scale: float = 1.0) -> np.ndarray:
    key = (size, scale)
    if key not in _DISKS:
        _DISKS[key] = disk_mask(size, scale)
    return _DISKS[key]


def _shrink(img: np.ndarray, f: int) -> np.ndarray:
    """Average f x f blocks (the last partial rows/columns are dropped): pixel i of the result
    is centred on original coordinate f * i + (f - 1) / 2."""
    if f <= 1:
        return img
    h, w = img.shape[:2]
    hh, ww = max(1, h // f), max(1, w // f)
    # INTER_AREA has a fast path for exact integer factors.
    return cv2.resize(img[: hh * f, : ww * f], (ww, hh), interpolation=cv2.INTER_AREA)


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    """Anti-aliased square resize: Gaussian pyramid down to < 2x, then blur + bilinear.

    Much faster than ``INTER_AREA`` at non-integer ratios, with a similar result.
    """
    while img.shape[0] >= 2 * size:
        img = cv2.pyrDown(img)
    if img.shape[0] > size:
        img = cv2.GaussianBlur(img, (3, 3), 0)
    elif img.shape[0] == size:
        return img.copy()
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)


# --------------------------------------------------------------------------- darkness


def value_quantile(square: np.ndarray, q: float = 0.9) -> float:
    """Quantile of HSV value (max of R, G, B) inside the inscribed disk of a square image."""
    v = _brightness(square)[_disk(square.shape[0])]
    hist = np.bincount(v, minlength=256)
    return float(np.searchsorted(np.cumsum(hist), q * v.size))


def sky_floor(square: np.ndarray, q: float = 0.1) -> float:
    """Quantile of HSV value over the inner 90% of the inscribed disk (the horizon band, with
    its obstructions and vignetting, left out): how bright the darkest sky is."""
    v = _brightness(square)[_disk(square.shape[0], 0.9)]
    hist = np.bincount(v, minlength=256)
    return float(np.searchsorted(np.cumsum(hist), q * v.size))


# --------------------------------------------------------------------------- Moon


#: Largest elongation (ratio of the principal axes) of a shape that still counts as round: a
#: disc digitised on a few pixels or blurred by an off-axis lens stays well below it.
ROUND = 1.5
#: Least share of the brightness variance around a Moon that its distance from the Moon
#: explains (the rest is structure that is not centred on it): a majority.
SYMMETRIC = 0.5


def _elongation(xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, size: int) -> float:
    """Axis ratio of the (N,) pixel coordinates, the smaller of two readings: on the image, and
    on the sky (the fisheye stretches a round source at zenith angle t by t / sin t along
    the horizon, for an equidistant lens; the tangential axis is shrunk back first).

    A point source is round on the image (the lens's spot); a resolved one is round on the sky.
    """
    dx, dy = xs - xs.mean(), ys - ys.mean()
    half = size / 2.0
    ux, uy = cx - (size - 1) / 2.0, cy - (size - 1) / 2.0
    rho = math.hypot(ux, uy) / half
    t = min(rho, 1.0) * math.pi / 2
    stretch = t / math.sin(t) if t > 1e-3 else 1.0
    if rho > 1e-3:
        ux, uy = ux / (rho * half), uy / (rho * half)
    else:
        ux, uy = 1.0, 0.0
    ratios = []
    for a, b in ((dx, dy), (dx * ux + dy * uy, (dy * ux - dx * uy) / stretch)):
        # Second moments of the pixels (+1/12: each pixel is a unit square, not a point).
        saa, sbb, sab = (a * a).mean() + 1 / 12, (b * b).mean() + 1 / 12, (a * b).mean()
        root = math.sqrt(max((saa - sbb) ** 2 + 4 * sab * sab, 0.0))
        ratios.append(math.sqrt((saa + sbb + root) / max(saa + sbb - root, 1e-9)))
    return min(ratios)


def _moon_test(
    v: np.ndarray, labels: np.ndarray, index: int, cx: float, cy: float, r: float
) -> str | None:
    """Is the saturated blob ``core`` the Moon? ``None`` when it is, else why not.

    The Moon is a point source far brighter than anything else in the sky: the camera records
    a saturated, round spot with a glare around it that is the same in every direction, so all
    its isophotes are circles about the spot. Aurora that saturates is a clipped smooth bump
    on an extended form (an arc, a ray, a patch): elongated, or with a glow around it that is
    brighter along the form than across it. The tests, each with a physical threshold:

    1. the spot and a margin of 3 radii around it lie in the sky (else the glow around it cannot
       be judged: a Moon on the horizon is edge glare, :func:`_detect_glare_square`);
    2. isolated: the sky around it is clearly darker than saturation;
    3. the spot is round (:data:`ROUND`);
    4. the half-brightness region (above half-way between the local sky and the spot) closes
       around it, is round, and is centred on it (within half a spot radius);
    5. the brightness within 3 radii is mostly a function of the distance from the spot
       (:data:`SYMMETRIC` of its variance explained by ring medians).

    Args:
        v: (S, S) float32 brightness (V) of the work square.
        labels: (S, S) int32 labels of the saturated blobs; the blob is ``labels == index``.
        index: the blob's label.
        cx, cy, r: the blob's centroid and equivalent radius (pixels).
    """
    size = v.shape[0]
    half = size / 2.0
    c = (size - 1) / 2.0
    reach = 3.0 * r + 2.0
    if math.hypot(cx - c, cy - c) + reach > 0.99 * half:
        return "too near the horizon"
    # A window holding the rings used below (the local sky out to 6 r + 6).
    w = int(math.ceil(6.0 * r + 8.0))
    x0, x1 = max(0, int(cx) - w), min(size, int(cx) + w + 1)
    y0, y1 = max(0, int(cy) - w), min(size, int(cy) + w + 1)
    vw, cw = v[y0:y1, x0:x1], labels[y0:y1, x0:x1] == index
    inside = _disk(size)[y0:y1, x0:x1]
    yy, xx = np.ogrid[y0:y1, x0:x1]
    d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    ring = inside & (d >= 2.5 * r + 2) & (d <= 4.0 * r + 4)
    if ring.sum() < 8 or np.median(vw[ring]) > SATURATED - 40:
        return "not isolated (part of a bright sky)"
    ys, xs = np.nonzero(cw)
    if _elongation(xs + float(x0), ys + float(y0), cx, cy, size) > ROUND:
        return "elongated"
    far = inside & (d >= 4.0 * r + 4) & (d <= 6.0 * r + 6)
    sky = float(np.median(vw[far])) if far.sum() >= 8 else float(np.median(v[_disk(size)]))
    level = sky + 0.5 * (float(vw[cw].mean()) - sky)
    n, lab = cv2.connectedComponents(((vw >= level) & inside).astype(np.uint8), connectivity=8)
    top = int(np.argmax(np.where(cw, vw, -1.0)))
    region = lab == lab.flat[top]
    ry, rx = np.nonzero(region)
    h, wd = region.shape
    if ry.min() == 0 or rx.min() == 0 or ry.max() == h - 1 or rx.max() == wd - 1:
        return "glow not compact (open half-brightness region)"
    if math.hypot(rx.mean() + x0 - cx, ry.mean() + y0 - cy) > 0.5 * r:
        return "glow not centred on the spot"
    if _elongation(rx + float(x0), ry + float(y0), cx, cy, size) > ROUND:
        return "glow elongated"
    near = inside & (d <= reach) & ~cw
    dn, vn = d[near], vw[near]
    bins = dn.astype(np.int32)
    counts = np.bincount(bins)
    order = np.argsort(bins, kind="stable")
    fit = np.empty_like(vn)
    start = 0
    for cnt in counts:
        if cnt:
            sel = order[start : start + cnt]
            fit[sel] = np.median(vn[sel])
            start += cnt
    total = float(((vn - vn.mean()) ** 2).sum())
    explained = 1.0 - float(((vn - fit) ** 2).sum()) / max(total, 1e-6)
    if explained < SYMMETRIC:
        return "glow not symmetric about the spot"
    return None


def _detect_moon_square(
    sq: np.ndarray, sat: np.ndarray | None = None
) -> tuple[float, float, float] | None:
    """Find the Moon in a square sky image (circle inscribed).

    Candidates are saturated blobs big enough not to be a star and small compared with the
    sky; :func:`_moon_test` keeps those that look like a point source (a round spot whose glow
    is the same in every direction), which saturated aurora (hot-spots, bright arcs) is not.

    Args:
        sq: (S, S, 3) uint8 square crop at :data:`WORK_SIZE`.
        sat: optional (S, S) bool mask of saturated pixels (from 16-bit data); by default
            pixels with V >= :data:`SATURATED`, in blobs that are mostly saturated in every
            channel (:func:`_white_saturated`).

    Returns:
        (x, y, r) in square pixels (r: radius of the saturated core), or ``None``.
    """
    size = sq.shape[0]
    v = _brightness(sq)
    white = _white_saturated(sq, sat)
    sat = ((v >= SATURATED) if sat is None else sat) & _disk(size, 0.99)
    if not sat.any():
        return None
    n, labels, stats, cents = cv2.connectedComponentsWithStats(sat.astype(np.uint8), connectivity=8)
    n_white = np.bincount(labels[white], minlength=n)
    disk_area = math.pi * (size / 2.0) ** 2
    min_area, max_area = max(5.0, 1e-4 * disk_area), 0.02 * disk_area
    vf = v.astype(np.float32)
    best: tuple[float, float, float, float] | None = None
    for i in range(1, n):
        area = float(stats[i, cv2.CC_STAT_AREA])
        if not min_area <= area <= max_area or n_white[i] < 0.5 * area:
            continue  # a star, too large, or coloured (aurora)
        cx, cy = (float(u) for u in cents[i])
        r = math.sqrt(area / math.pi)
        if _moon_test(vf, labels, i, cx, cy, r) is not None:
            continue
        if best is None or area > best[3]:
            best = (cx, cy, r, area)
    return None if best is None else best[:3]


def _square_to_orig(circle: SkyCircle, work: int) -> tuple[float, float, float]:
    """Affine map of a ``work``-sized square to original pixels: (x0, y0, scale)."""
    x0, y0, n = _square_bounds(circle)
    return float(x0), float(y0), n / work


def detect_moon(rgb: np.ndarray, circle: SkyCircle) -> MoonInfo:
    """Detect the Moon (a saturated, compact, isolated blob inside the sky circle).

    Args:
        rgb: (H, W, 3) uint8 RGB image.
        circle: the sky circle of ``rgb``.

    Returns:
        Presence, centre and radius of the saturated core in original pixels.
    """
    crop, _, _ = crop_square(rgb, circle)
    return _moon_from_work(_resize(crop, WORK_SIZE), circle)


def _glare_info(
    found: tuple[float, float, float] | None, circle: SkyCircle, work: int
) -> GlareInfo:
    if found is None:
        return GlareInfo.absent()
    x0, y0, k = _square_to_orig(circle, work)
    x, y, r = found
    return GlareInfo(True, x0 + (x + 0.5) * k - 0.5, y0 + (y + 0.5) * k - 0.5, r * k)


def _moon_from_work(work: np.ndarray, circle: SkyCircle, sat: np.ndarray | None = None) -> MoonInfo:
    found = _detect_moon_square(work, sat)
    if found is None:
        return MoonInfo.absent()
    x0, y0, k = _square_to_orig(circle, work.shape[0])
    x, y, r = found
    return MoonInfo(True, x0 + (x + 0.5) * k - 0.5, y0 + (y + 0.5) * k - 0.5, r * k)


def fill_hole(square: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Replace the pixels of ``hole`` with a smooth blend of the sky around it.

    Each hole pixel becomes the inverse-square-distance weighted mean of the sky pixels on the
    hole's border (the pixels just outside it, inside the sky disk). OpenCV's inpainting
    propagates the border along straight lines, so a hole whose border is much brighter on
    one side (a Moon near the horizon, with the bright horizon band beside it) became a bright
    wedge, and it takes the black outside the sky circle as data; this blend uses the sky only
    and has no preferred direction.

    Args:
        square: (S, S, C) uint8 or float32 square sky image (sky in the inscribed disk).
        hole: (S, S) bool pixels to replace (those outside the disk are left alone).

    Returns:
        (S, S, C) copy of ``square`` (same dtype) with the hole filled.
    """
    size = square.shape[0]
    inside = _disk(size)
    hole = hole & inside
    out = square.copy()
    if not hole.any():
        return out
    band = (cv2.dilate(hole.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0) & ~hole & inside
    if not band.any():
        return out
    by, bx = (a.astype(np.float32)[None] for a in np.nonzero(band))  # (1, B)
    vals = square[band].reshape(by.shape[1], -1).astype(np.float32)  # (B, C)
    hy, hx = (a.astype(np.float32)[:, None] for a in np.nonzero(hole))  # (H, 1)
    filled = np.empty((len(hy), vals.shape[1]), np.float32)
    step = max(1, 2_000_000 // by.shape[1])  # bound the (hole, border) distance matrix
    for s in range(0, len(hy), step):
        w = (hy[s : s + step] - by) ** 2
        w += (hx[s : s + step] - bx) ** 2
        np.reciprocal(w, out=w)  # 1 / d^2; >= 1 px apart: the border is outside the hole
        filled[s : s + step] = (w @ vals) / w.sum(axis=1, keepdims=True)
    if np.issubdtype(out.dtype, np.integer):
        filled = np.clip(filled + 0.5, 0, 255)
    out[hole] = filled.reshape(out[hole].shape).astype(out.dtype)
    return out


def mask_moon(square: np.ndarray, x: float, y: float, r: float) -> np.ndarray:
    """Replace the Moon and its glare with the surrounding sky (:func:`fill_hole`).

    The glare radius is where the ring-median brightness falls back near the local sky level
    (measured further out); the disk up to there, slightly dilated, is filled.

    Args:
        square: (S, S, 3) uint8 square sky image.
        x, y, r: Moon centre and saturated-core radius in ``square`` pixels.

    Returns:
        (S, S, 3) uint8 copy with the Moon removed.
    """
    size = square.shape[0]
    v = _brightness(square).astype(np.float32)
    yy, xx = np.ogrid[:size, :size]
    d = np.sqrt((xx - x) ** 2 + (yy - y) ** 2)
    inside = _disk(size)
    r = max(r, 1.0)
    far = inside & (d >= 5 * r + 3) & (d <= 8 * r + 6)
    sky = float(np.median(v[far])) if far.sum() >= 8 else float(np.median(v[inside]))
    glare = 1.5 * r + 1
    step = max(1.0, 0.25 * r)
    while glare < 5 * r + 3:
        ring = inside & (d >= glare) & (d < glare + step)
        if ring.sum() == 0 or np.median(v[ring]) <= sky + 0.15 * (255.0 - sky):
            break
        glare += step
    return fill_hole(square, d <= 1.15 * glare + 1.5)


def _white_saturated(sq: np.ndarray, sat: np.ndarray | None) -> np.ndarray:
    """(S, S) bool: saturated in every channel (min of R, G, B >= :data:`SATURATED`), or the
    sensor's saturation mask for 16-bit data. The Moon (sunlight) saturates every channel;
    aurora saturates its emission's channel first, so a green or red auroral hot-spot is not a
    candidate on a colour camera. Grey cameras cannot tell the two apart this way."""
    if sat is not None:
        return sat
    r, g, b = cv2.split(sq) if sq.ndim == 3 else (sq, sq, sq)
    return cv2.min(cv2.min(r, g), b) >= SATURATED


def _detect_glare_square(
    sq: np.ndarray, sat: np.ndarray | None = None
) -> list[tuple[float, float, float]]:
    """Find glare at the edge of a bright sky: a white-saturated source (see
    :func:`_white_saturated`) so near the horizon that the glow around it cannot be seen all
    round (the first test of :func:`_moon_test`), with the ring around it within 40 of
    saturation, in a sky that is bright as a whole (:func:`sky_floor` at least
    :data:`BRIGHT_SKY`). A Moon or Sun low over the horizon lights the whole sky like this.
    Saturated aurora on the horizon of a dark sky does not count: on a grey camera nothing
    else tells it from glare (Yellow River Station's brightest arcs saturate at the horizon).

    Args:
        sq: (S, S, 3) uint8 square crop at :data:`WORK_SIZE`.
        sat: optional (S, S) bool mask of saturated pixels (from 16-bit data).

    Returns:
        (x, y, r) of each glare source in square pixels (centroid, radius of the disk of the
        same area), largest first; empty when there is none.
    """
    size = sq.shape[0]
    white = _white_saturated(sq, sat) & _disk(size, 0.99)
    if not white.any() or sky_floor(sq) < BRIGHT_SKY:
        return []
    n, labels, stats, cents = cv2.connectedComponentsWithStats(
        white.astype(np.uint8), connectivity=8
    )
    v = _brightness(sq)
    inside = _disk(size)
    c = (size - 1) / 2.0
    min_area = max(5.0, 1e-4 * math.pi * (size / 2.0) ** 2)
    found = []
    for i in range(1, n):
        area = float(stats[i, cv2.CC_STAT_AREA])
        if area < min_area:
            continue
        cx, cy = (float(u) for u in cents[i])
        r = math.sqrt(area / math.pi)
        if math.hypot(cx - c, cy - c) + 3.0 * r + 2.0 <= 0.99 * size / 2.0:
            continue  # away from the horizon: the Moon test judges it
        w = int(math.ceil(4.0 * r + 5.0))
        x0, x1 = max(0, int(cx) - w), min(size, int(cx) + w + 1)
        y0, y1 = max(0, int(cy) - w), min(size, int(cy) + w + 1)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        ring = inside[y0:y1, x0:x1] & (d >= 2.5 * r + 2) & (d <= 4.0 * r + 4)
        if ring.sum() >= 8 and np.median(v[y0:y1, x0:x1][ring]) > SATURATED - 40:
            found.append((cx, cy, r))
    return sorted(found, key=lambda t: -t[2])


def _ring_medians(
    pix: np.ndarray, which: np.ndarray, centres: np.ndarray, min_count: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel median brightness of each ring (a radial profile robust to aurora, which
    fills a minority of each ring).

    Args:
        pix: (M, 3) float32 pixel values.
        which: (M,) ring index of each pixel; indices outside ``0..R-1`` are ignored.
        centres: (R,) ring centres (distances).
        min_count: rings with fewer pixels are left out.

    Returns:
        The centres of the rings kept (R',) and their medians (R', 3).
    """
    valid = (which >= 0) & (which < len(centres))
    counts = np.bincount(which[valid], minlength=len(centres))
    kept = np.flatnonzero(counts >= min_count)
    prof = np.array([np.median(pix[which == b], axis=0) for b in kept], np.float32).reshape(-1, 3)
    return centres[kept], prof


def subtract_moonlight(square: np.ndarray, x: float, y: float, n_bins: int = 24) -> np.ndarray:
    """Remove scattered moonlight: the part of the sky brightness that depends on the distance
    to the Moon only.

    Scattered light (the lens glare and the moonlit sky) is, to first order, symmetric about
    the Moon. Per channel, the median over rings around the Moon gives a radial profile; its
    excess over the dimmest ring further out (made non-increasing with distance, so aurora on
    one side cannot raise the level nearer the Moon) is subtracted. Aurora, which is not
    symmetric about the Moon, fills only a minority of each ring and survives.

    Args:
        square: (S, S, 3) uint8 or float32 square sky image (sky in the inscribed disk, 0..255),
            Moon masked.
        x, y: Moon centre in ``square`` pixels.
        n_bins: rings between the Moon and 70% of the distance to the farthest sky pixel.

    Returns:
        (S, S, 3) float32 copy (0..255, not rounded: the residual is faint and is stretched
        later) with the radial moonlight excess removed inside the disk.
    """
    size = square.shape[0]
    inside = _disk(size)
    yy, xx = np.ogrid[:size, :size]
    d = np.sqrt((xx - x) ** 2 + (yy - y) ** 2).astype(np.float32)
    # Out to 70% of the farthest sky: the far rings run along the rim, darkened by vignetting.
    d_max = 0.7 * float(d[inside].max()) + 1e-3
    edges = np.linspace(0.0, d_max, n_bins + 1, dtype=np.float32)
    which = np.searchsorted(edges, d[inside], side="right") - 1  # n_bins beyond d_max
    pix = square[inside].astype(np.float32)  # (M, 3)
    centres, prof = _ring_medians(pix, which, 0.5 * (edges[1:] + edges[:-1]), min_count=4)
    if len(centres) < 2:
        return square.astype(np.float32)
    # Non-increasing with distance: running minimum outwards from the Moon, so a ring lifted
    # by aurora cannot lift the profile, and the excess over the far sky is never negative.
    prof = np.minimum.accumulate(prof, axis=0)
    excess = prof - prof[-1:]
    out = square.astype(np.float32)
    for ch in range(3):
        sub = np.interp(d[inside], centres, excess[:, ch]).astype(np.float32)
        out[..., ch][inside] -= sub
    return np.clip(out, 0, 255)


def subtract_background(square: np.ndarray, fraction: float) -> np.ndarray:
    """Remove the smooth sky background in two parts: the brightening towards the horizon
    (airglow, moonlit or cloud-lit sky seen through more atmosphere: the same at every
    azimuth, so the median over each ring about the zenith), then what is left of the glow
    locally (the per-channel median over a large window).

    Aurora fills a minority of each ring and of each window, so medians leave it in place.
    Outside the inscribed disk the image is first filled by inpainting from the rim, so the
    black frame does not pull the background down there.

    Args:
        square: (S, S, 3) uint8 or float32 square sky image (sky in the inscribed disk, 0..255).
        fraction: window side as a fraction of S (made odd, at least 3 px).

    Returns:
        (S, S, 3) float32 image of what rises above the background (0 where nothing does),
        not rounded: the residual of a moonlit or cloud-lit sky spans few grey levels, and
        rounding it before the contrast stretch would posterise it into blotches.
    """
    size = square.shape[0]
    img = np.asarray(square, np.float32)
    k = max(3, int(round(fraction * size)) | 1)
    inside = _disk(size, 0.97)
    c = (size - 1) / 2.0
    yy, xx = np.ogrid[:size, :size]
    rho = np.sqrt((xx - c) ** 2 + (yy - c) ** 2) / (size / 2.0)  # 0 at zenith, 1 at the rim
    n_rings = max(4, min(24, size // 6))
    edges = np.linspace(0.0, 0.97, n_rings + 1)
    which = np.clip(np.searchsorted(edges, rho[inside], side="right") - 1, 0, n_rings - 1)
    centres, prof = _ring_medians(img[inside], which, 0.5 * (edges[1:] + edges[:-1]))
    radial = np.stack([np.interp(rho, centres, prof[:, ch]) for ch in range(3)], axis=2)
    rest = img - radial.astype(np.float32)
    # OpenCV's median filter takes uint8 for large windows: the remainder is offset to
    # mid-grey and rounded for the (smooth) background estimate only.
    u8 = np.clip(rest + 128.5, 0, 255).astype(np.uint8)
    hole = (~inside).astype(np.uint8)
    filled = cv2.inpaint(u8, hole, 3, cv2.INPAINT_TELEA)
    bg = cv2.medianBlur(filled, k).astype(np.float32) - 128.0
    out = np.maximum(rest - bg, 0.0)
    # The last few degrees above the horizon hold the steepest van Rhijn brightening, which
    # neither median can follow: they are dropped.
    out[~_disk(size, 0.94)] = 0
    return out


# --------------------------------------------------------------------------- contrast


def stretch_residual(
    img: np.ndarray, inside: np.ndarray, percentile: float, max_gain: float | None
) -> tuple[np.ndarray, float]:
    """Scale a float sky image (what is left after subtracting moonlight or background) so
    that its bright end reaches 255, then round it to 8 bits.

    One gain for all three channels keeps the hue. Scaling before rounding keeps the faint
    residual of a moonlit sky smooth; rounding first would leave it a few grey levels that the
    L stretch then turns into blotches.

    Args:
        img: (S, S, 3) float32 image, 0..255.
        inside: (S, S) bool sky mask (the percentile is taken there).
        percentile: this percentile of the brightest channel is mapped to 255.
        max_gain: the gain is at most this (``None``: no limit).

    Returns:
        The (S, S, 3) uint8 image and the gain applied (at least 1).
    """
    peak = float(np.percentile(img.max(axis=2)[inside], percentile)) if inside.any() else 0.0
    gain = 255.0 / peak if peak > 0 else 1.0
    if max_gain is not None:
        gain = min(gain, max_gain)
    gain = max(gain, 1.0)  # never darken: the L stretch that follows decides the range
    return np.clip(img * gain + 0.5, 0, 255).astype(np.uint8), gain


def lab_contrast(
    lab: np.ndarray,
    inside: np.ndarray,
    l_percentiles: tuple[float, float] | None,
    recenter_ab: bool,
    max_gain: float | None = None,
) -> np.ndarray:
    """The thesis LAB step on an 8-bit OpenCV LAB image (L, a, b all in 0..255).

    Args:
        lab: (S, S, 3) uint8 LAB.
        inside: (S, S) bool mask of the sky (statistics are taken there only).
        l_percentiles: clip L to these percentiles and stretch it to 0..255; ``None`` skips.
        recenter_ab: shift a and b so that their means inside the sky are 128.
        max_gain: the stretch multiplies L by at most this (the upper clip point moves up).

    Returns:
        (S, S, 3) uint8 LAB.
    """
    out = lab.copy()
    if l_percentiles is not None:
        vals = lab[..., 0][inside]
        cum = np.cumsum(np.bincount(vals, minlength=256))
        lo = float(np.searchsorted(cum, l_percentiles[0] / 100.0 * vals.size))
        hi = float(np.searchsorted(cum, l_percentiles[1] / 100.0 * vals.size))
        if max_gain is not None:
            hi = max(hi, lo + 255.0 / max_gain)
        if hi > lo:
            lut = np.clip((np.arange(256) - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255)
            out[..., 0] = cv2.LUT(lab[..., 0], lut.astype(np.uint8))
    if recenter_ab:
        for ch in (1, 2):
            shift = 128.0 - float(lab[..., ch][inside].mean())
            lut = np.clip(np.arange(256) + shift + 0.5, 0, 255).astype(np.uint8)
            out[..., ch] = cv2.LUT(lab[..., ch], lut)
    return out


# --------------------------------------------------------------------------- one image


def _saturated_fraction(
    raw: np.ndarray,
    rgb: np.ndarray,
    sat: np.ndarray | None = None,
    inside: np.ndarray | None = None,
) -> float:
    """Fraction of pixels at the maximum value.

    Args:
        raw: the input as given (decides 8-bit or sensor saturation).
        rgb: (h, w, 3) uint8 image the fraction is measured on (8-bit input).
        sat: (h, w) bool sensor saturation matching ``rgb`` (wider input); computed from
            ``raw`` when ``None``.
        inside: (h, w) bool pixels that count (default: all).
    """
    if sat is None:
        sat = _sensor_saturation(raw)
    hit = _brightness(rgb) >= SATURATED if sat is None else sat
    if inside is not None:
        hit = hit[inside]
    return float(np.count_nonzero(hit)) / max(1, hit.size)


def preprocess_image(raw: np.ndarray, cfg: PreprocessConfig) -> PreprocessResult:
    """Run the whole chain on one image.

    Args:
        raw: (H, W) or (H, W, 3) RGB image, uint8 or uint16.
        cfg: chain settings.

    Returns:
        The (size, size, 3) uint8 RGB image (or a rejection), the circle, the Moon, edge
        glare and the twilight flag. With ``moon="mask"`` the Moon and the glare are replaced
        by the sky around them. A grey input gives a grey output (R = G = B).

    Raises:
        ImageFormatError: for arrays that are not images.
    """
    nan = SkyCircle(math.nan, math.nan, math.nan)
    need = MIN_IMAGE_SIDE if cfg.circle is not None else MIN_SEARCH_SIDE
    if raw.ndim in (2, 3) and min(raw.shape[:2]) < need:
        h, w = raw.shape[:2]
        why = "" if cfg.circle is not None else " to find the sky circle"
        return PreprocessResult(
            None, TOO_SMALL, nan, detail=f"{w}x{h} px, at least {need} px per side needed{why}"
        )
    rgb = to_uint8(raw, cfg.u16_percentiles)
    if cfg.circle is not None:
        circle = SkyCircle(*cfg.circle)
    else:
        try:
            circle = find_sky_circle(rgb)
        except SkyCircleError as err:
            frac = _saturated_fraction(raw, rgb)
            if frac >= SATURATED_FRACTION:
                detail = f"{frac:.0%} of the frame at the maximum value"
                return PreprocessResult(None, ALL_SATURATED, nan, detail=detail)
            whole = value_quantile(_resize(rgb, WORK_SIZE), 0.9) if cfg.dark_threshold else 255
            reason = TOO_DARK if whole < cfg.dark_threshold else f"no sky circle: {err}"
            return PreprocessResult(None, reason, nan)
    crop, _, _ = crop_square(rgb, circle)
    work = _resize(crop, WORK_SIZE)
    sat = _sensor_saturation(raw)
    if sat is not None:
        sat_sq, _, _ = crop_square(sat.astype(np.uint8) * 255, circle)
        sat = _resize(sat_sq, WORK_SIZE) >= 128
    frac = _saturated_fraction(raw, work, sat, _disk(WORK_SIZE))
    if frac >= SATURATED_FRACTION:
        detail = f"{frac:.0%} of the sky circle at the maximum value"
        return PreprocessResult(None, ALL_SATURATED, circle, detail=detail)
    moon = _moon_from_work(work, circle, sat)
    glares = _detect_glare_square(work, sat)
    glare = _glare_info(glares[0] if glares else None, circle, WORK_SIZE)
    twilight = cfg.twilight_level > 0 and sky_floor(work) >= cfg.twilight_level
    if cfg.dark_threshold > 0 and value_quantile(work, 0.9) < cfg.dark_threshold:
        return PreprocessResult(None, TOO_DARK, circle, moon, glare, twilight)

    size = cfg.size
    img = _resize(crop, size)
    grey = bool((img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all())
    if cfg.moon == "mask":
        for gx, gy, gr in glares:  # glare is masked like the Moon and its glow
            f = size / WORK_SIZE
            img = mask_moon(img, (gx + 0.5) * f - 0.5, (gy + 0.5) * f - 0.5, gr * f)
        if moon.present:
            x0, y0, k = _square_to_orig(circle, size)
            mx, my = (moon.x + 0.5 - x0) / k - 0.5, (moon.y + 0.5 - y0) / k - 0.5
            img = mask_moon(img, mx, my, moon.r / k)
            if cfg.moon_light:
                img = subtract_moonlight(img, mx, my)
    if cfg.background > 0:
        img = subtract_background(img, cfg.background)
    inside = _disk(size)
    l_gain = cfg.max_gain
    if img.dtype != np.uint8:
        img, gain = stretch_residual(img, inside, cfg.l_percentiles[1], l_gain)
        if l_gain is not None:
            # One budget for both stretches, so the cap holds for the whole chain.
            l_gain = max(1.0, l_gain / gain)
    if cfg.lab_stretch or cfg.recenter_ab:
        lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB)
        lab = lab_contrast(
            lab,
            inside,
            # A bright sky is not a night sky to stretch: its brightness is kept as recorded.
            cfg.l_percentiles if cfg.lab_stretch and not twilight else None,
            cfg.recenter_ab and not grey,  # grey: a = b = 128 already, nothing to centre
            l_gain,
        )
        img = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
        if grey:
            # LAB -> RGB rounds each channel on its own (R, G, B may differ by 1): stay grey.
            img = np.repeat(img[..., 1:2], 3, axis=2)
    if cfg.star_kernel > 1:
        img = cv2.medianBlur(img, cfg.star_kernel)
    img[~inside] = 0
    return PreprocessResult(img, None, circle, moon, glare, twilight)


# --------------------------------------------------------------------------- lazy re-exports


def __getattr__(name: str) -> Any:
    # The store module imports this one; re-export lazily to avoid an import cycle.
    if name in ("PreprocessedStore", "build_preprocessed", "open_store"):
        from aurora import preprocess_store

        return getattr(preprocess_store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------- figure


def _read_any(path: Path) -> list[tuple[str, np.ndarray]]:
    """Images of ``path`` for the figure: a file, the first frame of a multi-frame file (CDF,
    THEMIS stream0 ``.pgm[.gz]``), or a folder."""
    from aurora.data import sources

    if path.is_dir() or path.suffix.lower() in (".cdf", ".gz", ".bz2", ".pgm", ".pnm"):
        # Multi-frame files (CDF, THEMIS stream0): scan the file itself, first frame only.
        manifest = sources.scan(path)
        recs = manifest.records if path.is_dir() else manifest.records[:1]
        out = []
        for r in recs:
            try:
                out.append((r.id, sources.read_image(r)))
            except sources.ImageReadError as err:
                print(f"not drawn: {r.id}: {err}")
        out_rejected = [f"not drawn: {r.path}: {r.reason}" for r in manifest.rejected]
        print(*out_rejected, sep="\n", end="\n" if out_rejected else "")
        return out
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        return []  # not an image (e.g. a README beside the images): nothing to draw
    if img.ndim == 3:
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)
    return [(path.name, img)]


def show(paths: list[Path], out: Path, cfg: PreprocessConfig) -> None:
    """Draw originals (circle, Moon in red, edge glare dashed orange) beside their preprocessed
    versions (titled with the Moon, glare and twilight flags).

    Args:
        paths: image files.
        out: PNG file to write.
        cfg: chain settings.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    items = [item for p in paths for item in _read_any(Path(p))]
    cols = 4  # two (original, preprocessed) pairs per row
    rows = max(1, math.ceil(len(items) / 2))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (name, raw) in enumerate(items):
        a0, a1 = axes[i // 2, 2 * (i % 2)], axes[i // 2, 2 * (i % 2) + 1]
        rgb = to_uint8(raw, cfg.u16_percentiles)
        res = preprocess_image(raw, cfg)
        a0.imshow(rgb)
        a0.set_title(name, fontsize=7)
        c = res.circle
        if math.isfinite(c.r):
            a0.add_patch(Circle((c.cx, c.cy), c.r, fill=False, color="cyan", lw=1))
            a0.plot([c.cx], [c.cy], "c+")
        if res.moon.present:
            m = res.moon
            a0.add_patch(
                Circle((m.x, m.y), max(m.r * 2, 0.02 * c.r), fill=False, color="red", lw=1.2)
            )
        if res.glare.present:
            g = res.glare
            a0.add_patch(Circle((g.x, g.y), g.r, fill=False, color="orange", lw=1.2, ls="--"))
        flags = [
            f"moon={'yes' if res.moon.present else 'no'}",
            *(["glare"] if res.glare.present else []),
            *(["twilight"] if res.twilight else []),
        ]
        if res.image is not None:
            a1.imshow(res.image)
            a1.set_title(" ".join(flags), fontsize=7)
        else:
            a1.text(
                0.5,
                0.5,
                f"rejected:\n{res.rejected}",
                ha="center",
                va="center",
                fontsize=7,
                wrap=True,
                transform=a1.transAxes,
            )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _load_cfg(path: str | None, overrides: list[str]) -> PreprocessConfig:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    if path is None:
        path = str(Path(__file__).resolve().parent.parent / "conf" / "preprocess" / "full.yaml")
    conf = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(overrides))
    return instantiate(conf)


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m aurora.preprocess show IMAGES... --out grid.png``."""
    parser = argparse.ArgumentParser(prog="python -m aurora.preprocess")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser(
        "show", help="originals beside preprocessed versions, circle and Moon marked"
    )
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=Path("preprocess_grid.png"))
    p.add_argument("--config", default=None, help="YAML file (default conf/preprocess/full.yaml)")
    p.add_argument("--set", action="append", default=[], help="override, e.g. --set moon=keep")
    args = parser.parse_args(argv)
    show(args.images, args.out, _load_cfg(args.config, args.set))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
