"""Bright spots in the sky: the Moon (a point source, :func:`detect_moon`) and glare at the
edge of a bright sky (:func:`detect_glare_square`), found on the work square
(:data:`~aurora.preprocess.config.WORK_SIZE`) and reported in original pixels."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Self

import cv2
import numpy as np

from aurora.preprocess.config import BRIGHT_SKY, SATURATED, WORK_SIZE
from aurora.preprocess.geometry import SkyCircle, crop_square, square_to_orig
from aurora.preprocess.pixels import brightness, disk, resize
from aurora.preprocess.sky import sky_floor


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
       be judged: a Moon on the horizon is edge glare, :func:`detect_glare_square`);
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
    inside = disk(size)[y0:y1, x0:x1]
    yy, xx = np.ogrid[y0:y1, x0:x1]
    d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    ring = inside & (d >= 2.5 * r + 2) & (d <= 4.0 * r + 4)
    if ring.sum() < 8 or np.median(vw[ring]) > SATURATED - 40:
        return "not isolated (part of a bright sky)"
    ys, xs = np.nonzero(cw)
    if _elongation(xs + float(x0), ys + float(y0), cx, cy, size) > ROUND:
        return "elongated"
    far = inside & (d >= 4.0 * r + 4) & (d <= 6.0 * r + 6)
    sky = float(np.median(vw[far])) if far.sum() >= 8 else float(np.median(v[disk(size)]))
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
    v = brightness(sq)
    white = _white_saturated(sq, sat)
    sat = ((v >= SATURATED) if sat is None else sat) & disk(size, 0.99)
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


def detect_moon(rgb: np.ndarray, circle: SkyCircle) -> MoonInfo:
    """Detect the Moon (a saturated, compact, isolated blob inside the sky circle).

    Args:
        rgb: (H, W, 3) uint8 RGB image.
        circle: the sky circle of ``rgb``.

    Returns:
        Presence, centre and radius of the saturated core in original pixels.
    """
    crop, _, _ = crop_square(rgb, circle)
    return moon_from_work(resize(crop, WORK_SIZE), circle)


def moon_from_work(work: np.ndarray, circle: SkyCircle, sat: np.ndarray | None = None) -> MoonInfo:
    """The Moon in ``work``, the (S, S, 3) uint8 square of ``circle`` resized to S, in original
    pixels (``sat``: optional (S, S) bool sensor saturation of the same square)."""
    found = _detect_moon_square(work, sat)
    if found is None:
        return MoonInfo.absent()
    x0, y0, k = square_to_orig(circle, work.shape[0])
    x, y, r = found
    return MoonInfo(True, x0 + (x + 0.5) * k - 0.5, y0 + (y + 0.5) * k - 0.5, r * k)


# --------------------------------------------------------------------------- edge glare


def _white_saturated(sq: np.ndarray, sat: np.ndarray | None) -> np.ndarray:
    """(S, S) bool: saturated in every channel (min of R, G, B >= :data:`SATURATED`), or the
    sensor's saturation mask for 16-bit data. The Moon (sunlight) saturates every channel;
    aurora saturates its emission's channel first, so a green or red auroral hot-spot is not a
    candidate on a colour camera. Grey cameras cannot tell the two apart this way."""
    if sat is not None:
        return sat
    r, g, b = cv2.split(sq) if sq.ndim == 3 else (sq, sq, sq)
    return cv2.min(cv2.min(r, g), b) >= SATURATED


def detect_glare_square(
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
    white = _white_saturated(sq, sat) & disk(size, 0.99)
    if not white.any() or sky_floor(sq) < BRIGHT_SKY:
        return []
    n, labels, stats, cents = cv2.connectedComponentsWithStats(
        white.astype(np.uint8), connectivity=8
    )
    v = brightness(sq)
    inside = disk(size)
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


def glare_info(found: tuple[float, float, float] | None, circle: SkyCircle, work: int) -> GlareInfo:
    """A glare source ``(x, y, r)`` found on the ``work``-sized square of ``circle``
    (:func:`detect_glare_square`), in original pixels."""
    if found is None:
        return GlareInfo.absent()
    x0, y0, k = square_to_orig(circle, work)
    x, y, r = found
    return GlareInfo(True, x0 + (x + 0.5) * k - 0.5, y0 + (y + 0.5) * k - 0.5, r * k)
