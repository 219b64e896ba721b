"""The sky as a whole: how dark and how bright it is, filling holes (the Moon, edge glare)
with the sky around them, removing scattered moonlight and the smooth background, and the
contrast stretches."""

from __future__ import annotations

import cv2
import numpy as np

from aurora.preprocess.pixels import brightness, disk

# --------------------------------------------------------------------------- darkness


def value_quantile(square: np.ndarray, q: float = 0.9) -> float:
    """Quantile of HSV value (max of R, G, B) inside the inscribed disk of a square image."""
    v = brightness(square)[disk(square.shape[0])]
    hist = np.bincount(v, minlength=256)
    return float(np.searchsorted(np.cumsum(hist), q * v.size))


def sky_floor(square: np.ndarray, q: float = 0.1) -> float:
    """Quantile of HSV value over the inner 90% of the inscribed disk (the horizon band, with
    its obstructions and vignetting, left out): how bright the darkest sky is."""
    v = brightness(square)[disk(square.shape[0], 0.9)]
    hist = np.bincount(v, minlength=256)
    return float(np.searchsorted(np.cumsum(hist), q * v.size))


# --------------------------------------------------------------------------- Moon hole


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
    inside = disk(size)
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
    v = brightness(square).astype(np.float32)
    yy, xx = np.ogrid[:size, :size]
    d = np.sqrt((xx - x) ** 2 + (yy - y) ** 2)
    inside = disk(size)
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


# --------------------------------------------------------------------------- background


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
    inside = disk(size)
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
    inside = disk(size, 0.97)
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
    out[~disk(size, 0.94)] = 0
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
