"""``render_sky``: one synthetic all-sky image, step by step.

On the coarse sky grid, in linear radiance: the aurora (:mod:`.emission`), the sky
background (airglow, town light), moonlight and the Moon's glare, the cloud veil, then
extinction, vignetting and exposure gain. At full resolution (:mod:`.camera`): tone curve
and warp onto the fisheye circle, stars, the Moon disk, read noise and black frame, caption.
Every random choice comes from the one generator, in a fixed order.
"""

from __future__ import annotations

import math
from datetime import datetime

import cv2
import numpy as np

from aurora.data.synth.camera import add_stars, draw_caption, draw_moon, read_out, tone, warp
from aurora.data.synth.emission import emission
from aurora.data.synth.frames import FIRST_FRAME
from aurora.data.synth.geometry import Circle, SkyGrid, draw_circle, sky_grid
from aurora.data.synth.numeric import pow2k, smooth_noise, uniform
from aurora.data.synth.truth import MORPHOLOGIES, SkyMeta, SynthError

GREEN = np.array([0.24, 1.00, 0.20], dtype=np.float32)  # camera RGB response to 557.7 nm
RED = np.array([1.00, 0.10, 0.08], dtype=np.float32)  # 630.0 nm
BLUE = np.array([0.45, 0.15, 1.00], dtype=np.float32)  # 427.8 nm N2+ at the lower border


def render_sky(
    morphology: str,
    rng: np.random.Generator,
    size: int,
    moon: bool,
    clouds: float,
    when: datetime | None = None,
    caption: bool = True,
) -> tuple[np.ndarray, SkyMeta]:
    """Render one synthetic all-sky image.

    Args:
        morphology: one of :data:`MORPHOLOGIES`.
        rng: source of every random choice of this image (geometry, aurora, nuisances).
        size: output side in pixels (>= 32).
        moon: draw the Moon.
        clouds: cloud veil strength in [0, 1]; 0 is a clear sky.
        when: time printed in the caption (default: the first frame time).
        caption: draw the corner text.

    Returns:
        ``(image, meta)``: RGB uint8 array of shape (size, size, 3) and its ground truth.
    """
    _check(morphology, size, clouds)
    s = int(size)
    grid = sky_grid(int(np.clip(s * 2 // 7, 24, 144)))
    circle = draw_circle(rng, s)
    aur = _aurora(morphology, rng, grid, n=int(np.clip(s // 2, 64, 256)))
    sky = _background(rng, grid)
    moon_px: Circle | None = None
    glare = None
    if moon:
        moon_px, moonlit, glare = _moonlight(rng, grid, circle, s)
        sky += moonlit
    transmission = np.ones_like(grid.rho)
    if clouds > 0:
        sky, transmission = _clouds(rng, clouds, grid.g, aur, sky, glare)
    light, throughput = _exposure(rng, grid, aur, sky, glare, transmission)

    disp = warp(tone(light), circle, s)
    add_stars(disp, rng, circle, throughput)
    if moon_px is not None:
        draw_moon(disp, moon_px)
    img = read_out(disp, rng, circle)
    if caption:
        draw_caption(img, when if when is not None else FIRST_FRAME)
    return img, _meta(morphology, clouds, circle, moon_px)


def _check(morphology: str, size: int, clouds: float) -> None:
    """Raise :class:`SynthError` for an argument ``render_sky`` cannot draw."""
    if morphology not in MORPHOLOGIES:
        raise SynthError(f"unknown morphology {morphology!r}; expected one of {MORPHOLOGIES}")
    if size < 32:
        raise SynthError(f"image size must be at least 32 px, got {size}")
    if not 0.0 <= clouds <= 1.0:
        raise SynthError(f"clouds must be in [0, 1], got {clouds}")


def _aurora(morphology: str, rng: np.random.Generator, grid: SkyGrid, n: int) -> np.ndarray:
    """Auroral radiance: the form's line emissions at a drawn level and colour; (G, G, 3)."""
    green, red, blue = emission(morphology, rng, grid, n)
    level = math.exp(uniform(rng, math.log(0.25), math.log(3.0)))
    red_ratio = math.exp(uniform(rng, math.log(0.05), math.log(0.7)))
    blue_ratio = uniform(rng, 0.0, 0.15) * min(level, 1.0)
    return (
        green[..., None] * GREEN
        + (red_ratio * red)[..., None] * RED
        + (blue_ratio * blue)[..., None] * BLUE
    ) * np.float32(0.25 * level)


def _background(rng: np.random.Generator, grid: SkyGrid) -> np.ndarray:
    """Sky background: airglow (van Rhijn at 90 km) and town light on the horizon; (G, G, 3)."""
    van_rhijn = grid.path[0]
    airglow = math.exp(uniform(rng, math.log(0.004), math.log(0.022)))
    sky = (airglow * van_rhijn)[..., None] * np.array([0.55, 0.6, 0.32], np.float32)
    phi = np.arctan2(grid.v, grid.u)
    town_az = uniform(rng, -np.pi, np.pi)
    town = math.exp(uniform(rng, math.log(0.005), math.log(0.08)))
    horizon = np.exp(-(np.pi / 2 - grid.theta) / 0.2) * (0.5 + 0.5 * np.cos(phi - town_az)) ** 2
    sky += (town * horizon)[..., None] * np.array([1.0, 0.62, 0.3], np.float32)
    return sky


def _moonlight(
    rng: np.random.Generator, grid: SkyGrid, circle: Circle, size: int
) -> tuple[Circle, np.ndarray, np.ndarray]:
    """The Moon: its disk in pixels, the moonlit sky (G, G, 3) and the glare halo (G, G).

    The glare stays below saturation outside the disk; it is added after the exposure gain.
    """
    cx, cy, cr = circle
    mr = round(max(2.0, uniform(rng, 0.010, 0.02) * size), 2)
    m_rho, m_az = uniform(rng, 0.25, 0.85), uniform(rng, -np.pi, np.pi)
    mx = round(cx + m_rho * cr * math.cos(m_az), 2)
    my = round(cy + m_rho * cr * math.sin(m_az), 2)
    phase = uniform(rng, 0.3, 1.0)
    dm = np.sqrt((grid.u - (mx - cx) / cr) ** 2 + (grid.v - (my - cy) / cr) ** 2)
    r_rel = mr / cr
    lit = phase * uniform(rng, 0.08, 0.3) * (0.6 + 0.4 * np.exp(-dm / 0.8)) * np.sqrt(grid.path[0])
    moonlit = lit[..., None] * np.array([0.5, 0.6, 0.85], np.float32)
    halo = 0.9 * np.exp(-np.maximum(dm - r_rel, 0) / (r_rel * uniform(rng, 1.0, 2.5)))
    halo += phase * uniform(rng, 0.1, 0.35) / (1.0 + (dm / uniform(rng, 0.08, 0.2)) ** 2)
    return Circle(mx, my, mr), moonlit, halo.astype(np.float32)


def _clouds(
    rng: np.random.Generator,
    clouds: float,
    g: int,
    aur: np.ndarray,
    sky: np.ndarray,
    glare: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """A cloud veil of strength ``clouds`` > 0 over the (G, G) grid.

    Returns:
        ``(sky, transmission)``: the sky (G, G, 3) plus aurora-, moon- and town light
        scattered by the veil, and the veil's (G, G) transmission.
    """
    veil = smooth_noise(rng, g, g / uniform(rng, 4, 9))
    veil = np.clip(0.5 + 0.45 * veil + uniform(rng, -0.3, 0.3), 0, 1) * np.float32(clouds)
    transmission = 1.0 - 0.8 * veil
    lit = cv2.GaussianBlur(aur, (0, 0), g / 12) * 0.8 + sky * 1.5
    if glare is not None:
        lit += (0.5 * cv2.GaussianBlur(glare, (0, 0), g / 10))[..., None]
    lit += np.array([1.0, 0.7, 0.4], np.float32) * np.float32(0.04 * clouds)
    return sky + veil[..., None] * lit, transmission


def _exposure(
    rng: np.random.Generator,
    grid: SkyGrid,
    aur: np.ndarray,
    sky: np.ndarray,
    glare: np.ndarray | None,
    transmission: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Light reaching the sensor: extinction, vignetting, exposure gain, then the glare.

    Returns:
        ``(light, throughput)``: (G, G, 3) float32 linear radiance, and the (G, G) factor
        by which the same path dims a star.
    """
    van_rhijn, rho = grid.path[0], grid.rho
    extinction = np.exp(-uniform(rng, 0.05, 0.25) * (np.minimum(van_rhijn, 8.0) - 1.0))
    light = aur * (transmission * extinction)[..., None] + sky
    vignette = (1.0 - 0.35 * pow2k(rho, 2)) * np.clip((1.0 - rho) / 0.03, 0.55, 1.0)
    gain = math.exp(uniform(rng, math.log(0.6), math.log(1.6)))
    light = (light * (gain * vignette)[..., None]).astype(np.float32)
    if glare is not None:
        light += (glare * transmission)[..., None] * np.array([1.0, 0.97, 0.9], np.float32)
    return light, transmission**2 * extinction**2 * vignette * gain


def _meta(morphology: str, clouds: float, circle: Circle, moon: Circle | None) -> SkyMeta:
    """The ground truth of the image, with the Moon's fields None when there is none."""
    return SkyMeta(
        morphology=morphology,
        moon=moon is not None,
        clouds=round(float(clouds), 3),
        moon_x=None if moon is None else moon.x,
        moon_y=None if moon is None else moon.y,
        moon_r=None if moon is None else moon.r,
        circle_x=circle.x,
        circle_y=circle.y,
        circle_r=circle.r,
    )
