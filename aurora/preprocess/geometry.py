"""The fisheye sky circle: found in the image (:func:`find_sky_circle`), its bounding square
cut out (:func:`crop_square`), and the map from a resized square back to original pixels."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from aurora.preprocess.config import CIRCLE_SEARCH_SIZE, SkyCircleError
from aurora.preprocess.pixels import brightness


@dataclass(frozen=True)
class SkyCircle:
    """The fisheye sky circle in original image pixels (pixel centres at integers)."""

    cx: float
    cy: float
    r: float


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
    grey = brightness(rgb)
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


def _shrink(img: np.ndarray, f: int) -> np.ndarray:
    """Average f x f blocks (the last partial rows/columns are dropped): pixel i of the result
    is centred on original coordinate f * i + (f - 1) / 2."""
    if f <= 1:
        return img
    h, w = img.shape[:2]
    hh, ww = max(1, h // f), max(1, w // f)
    # INTER_AREA has a fast path for exact integer factors.
    return cv2.resize(img[: hh * f, : ww * f], (ww, hh), interpolation=cv2.INTER_AREA)


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


def square_to_orig(circle: SkyCircle, work: int) -> tuple[float, float, float]:
    """Affine map of a ``work``-sized square to original pixels: (x0, y0, scale)."""
    x0, y0, n = _square_bounds(circle)
    return float(x0), float(y0), n / work
