"""The camera at full resolution: tone curve, fisheye warp, stars, Moon disk, read-out, caption.

Everything before this step is smooth linear radiance on the coarse sky grid; these steps
work on the (S, S, 3) float32 display image (0..255 before read noise) and finally the
(S, S, 3) uint8 image.
"""

from __future__ import annotations

import math
from datetime import datetime
from functools import lru_cache

import cv2
import numpy as np

from aurora.data.synth.geometry import Circle
from aurora.data.synth.numeric import uniform

MOON_DISPLAY = 320.0  # display value of the lunar disk: above 255, so noise cannot unsaturate it


@lru_cache(maxsize=4)
def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Column and row of every pixel centre; each (size, size) float32 (cached)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return xx, yy


@lru_cache(maxsize=2)
def noise_pool(size: int) -> np.ndarray:
    """A fixed per-size pool of unit Gaussian noise, cropped at random offsets per image."""
    return np.random.default_rng(0xA0B0).standard_normal((2 * size, 2 * size, 3), np.float32)


def tone(light: np.ndarray) -> np.ndarray:
    """Camera response: linear radiance (any shape) to display values 0..255, float32."""
    return (255.0 * np.power(1.0 - np.exp(-np.maximum(light, 0)), 1 / 2.2)).astype(np.float32)


def untone(disp: np.ndarray) -> np.ndarray:
    """Inverse of :func:`tone` (display values below 255 to linear radiance)."""
    v = np.clip(disp / 255.0, 0.0, 0.999) ** 2.2
    return (-np.log1p(-v)).astype(np.float32)


def warp(disp: np.ndarray, circle: Circle, size: int) -> np.ndarray:
    """Stretch the coarse (G, G, 3) grid onto the fisheye circle of a (size, size, 3) image."""
    g = disp.shape[0]
    k = 2 * circle.r / g
    m = np.array(
        [[k, 0, circle.x + (0.5 - g / 2) * k], [0, k, circle.y + (0.5 - g / 2) * k]], np.float32
    )
    return cv2.warpAffine(
        disp, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def add_stars(
    disp: np.ndarray, rng: np.random.Generator, circle: Circle, throughput: np.ndarray
) -> None:
    """Add point-source stars in place to the (S, S, 3) display image.

    Stars are added in linear units at the few pixels they touch. ``throughput`` is the
    (G, G) factor of the sky grid that dims starlight (clouds, extinction, vignette, gain).
    """
    s, g = disp.shape[0], throughput.shape[0]
    cx, cy, cr = circle
    k = 2 * cr / g
    n_stars = int(np.pi * cr * cr * math.exp(uniform(rng, math.log(4e-4), math.log(6e-3))))
    sr = cr * np.sqrt(rng.random(n_stars, dtype=np.float32))
    sa = rng.uniform(0, 2 * np.pi, n_stars).astype(np.float32)
    sx = np.clip(np.rint(cx + sr * np.cos(sa)), 0, s - 1).astype(np.int64)
    sy = np.clip(np.rint(cy + sr * np.sin(sa)), 0, s - 1).astype(np.int64)
    flux = (rng.pareto(1.6, n_stars) + 1.0) * 0.04 * (s / 480.0) ** -0.5
    gi = np.clip(((sy - cy) / k + g / 2 - 0.5).astype(np.int64), 0, g - 1)
    gj = np.clip(((sx - cx) / k + g / 2 - 0.5).astype(np.int64), 0, g - 1)
    flux *= throughput[gi, gj]
    stars = np.bincount(sy * s + sx, weights=flux, minlength=s * s).astype(np.float32)
    stars = cv2.GaussianBlur(stars.reshape(s, s), (3, 3), 0.6).reshape(-1)
    hit = np.flatnonzero(stars > 1e-3)
    flat = disp.reshape(-1, 3)
    lit_stars = untone(flat[hit]) + stars[hit, None] * np.float32([0.95, 1.0, 0.9])
    # even the brightest star stays below 240 so that the Moon is the only saturated blob
    flat[hit] = np.minimum(tone(lit_stars), flat[hit].max(-1, keepdims=True).clip(240))


def draw_moon(disp: np.ndarray, moon: Circle) -> None:
    """Paint the saturated, anti-aliased lunar disk in place on the (S, S, 3) display image."""
    s = disp.shape[0]
    xx, yy = pixel_grid(s)
    mx, my, mr = moon
    x0, x1 = max(0, int(mx - mr - 2)), min(s, int(mx + mr + 3))
    y0, y1 = max(0, int(my - mr - 2)), min(s, int(my + mr + 3))
    d = np.sqrt((xx[y0:y1, x0:x1] - mx) ** 2 + (yy[y0:y1, x0:x1] - my) ** 2)
    cov = np.clip(mr + 0.5 - d, 0, 1)[..., None]
    # above 255 so that read noise cannot pull the saturated disk below 255
    disp[y0:y1, x0:x1] = disp[y0:y1, x0:x1] * (1 - cov) + MOON_DISPLAY * cov


def read_out(disp: np.ndarray, rng: np.random.Generator, circle: Circle) -> np.ndarray:
    """Read noise, the black frame outside the circle and 8 bits: (S, S, 3) uint8.

    The noise is a per-size pool cropped at a random offset.
    """
    s = disp.shape[0]
    xx, yy = pixel_grid(s)
    oy, ox = (int(v) for v in rng.integers(0, s, size=2))
    disp = cv2.scaleAdd(noise_pool(s)[oy : oy + s, ox : ox + s], uniform(rng, 1.0, 3.5), disp)
    frame = np.float32(circle.r + 0.5) - cv2.magnitude(
        xx - np.float32(circle.x), yy - np.float32(circle.y)
    )
    np.minimum(np.maximum(frame, 0, out=frame), 1, out=frame)
    disp *= frame[..., None]
    return cv2.convertScaleAbs(disp)  # rounds and saturates; disp is >= 0 but for noise


def draw_caption(img: np.ndarray, when: datetime) -> None:
    """KHO-style corner text, drawn in place on an (S, S, 3) uint8 image."""
    s = img.shape[0]
    fs = s / 480.0
    white = (255, 255, 255)
    big, small = 0.75 * fs, 0.5 * fs
    thick_b, thick_s = max(1, round(2 * fs)), max(1, round(fs))
    font = cv2.FONT_HERSHEY_DUPLEX
    mono = cv2.FONT_HERSHEY_PLAIN
    cv2.putText(
        img, "UNIS/KHO", (int(6 * fs), int(24 * fs)), font, big, white, thick_b, cv2.LINE_AA
    )
    cv2.putText(
        img, "Sony A7s", (int(6 * fs), int(50 * fs)), font, big, white, thick_b, cv2.LINE_AA
    )
    for text, x, y in (("N", 450, 16), ("E W", 438, 32), ("S", 450, 48)):
        cv2.putText(img, text, (int(x * fs), int(y * fs)), font, small, white, thick_s, cv2.LINE_AA)
    cv2.putText(
        img,
        when.strftime("%Y-%m-%d"),
        (int(6 * fs), int(472 * fs)),
        mono,
        1.1 * fs,
        white,
        thick_s,
        cv2.LINE_AA,
    )
    cv2.putText(
        img,
        when.strftime("%H:%M:%S UT"),
        (int(362 * fs), int(472 * fs)),
        mono,
        1.1 * fs,
        white,
        thick_s,
        cv2.LINE_AA,
    )
