"""Synthetic colour all-sky camera images with known auroral morphology and nuisances.

The sky is rendered on a coarse grid in *linear radiance*, warped into the fisheye circle of
the full image, and only then are stars, the Moon disk, camera tone curve, noise, the black
frame and the caption added at full resolution.

Geometry. The fisheye is equidistant: a pixel at normalised radius ``rho`` (0 at the circle
centre, 1 at its edge) looks at zenith angle ``rho * 90 deg``. North is up, east is left
(looking up at the sky). Image coordinates: ``x`` is the column, ``y`` the row, pixel centres
sit at integer coordinates (so a circle exactly centred in a 480 px image has centre 239.5).

Aurora. Except for the corona, emission is a 2-D pattern in the horizontal plane (km),
extruded along slightly tilted magnetic field lines (magnetic zenith about 8 deg south) and
integrated along each pixel's line of sight over altitude shells on a spherical Earth. The
green 557.7 nm line peaks just above a sharp lower border (95-125 km) and the red 630.0 nm
line at about 220 km and a little poleward, so arcs get red upper/poleward edges and
brighten towards the horizon (van Rhijn effect) by themselves. The corona is drawn directly
as rays radiating from the magnetic zenith.

Nuisances, all drawn independently of the morphology: the Moon (saturated white disk of
known centre and radius, a glare halo that stays below saturation, and moonlit sky), thin
clouds (a smooth low-frequency veil of strength ``clouds`` in [0, 1] that dims stars and
aurora and scatters aurora-, moon- and town light; 0 means clear), star density, airglow,
town-light glow on the horizon, exposure gain, read noise, circle position and size.

``labels.csv`` columns: ``path,morphology,moon,clouds,seed,moon_x,moon_y,moon_r,circle_x,
circle_y,circle_r``. ``clouds`` is the veil strength (``0`` = clear). ``moon_*`` are empty
when there is no Moon. The image in row ``i`` is exactly
``render_sky(morphology, np.random.default_rng(seed), size, moon, clouds, when=t)`` with ``t``
parsed from the file name, encoded with :data:`JPEG_QUALITY`.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from aurora.cache import atomic_write_text

MORPHOLOGIES: tuple[str, ...] = (
    "single_arc",
    "multiple_arcs",
    "vortex",
    "patchy",
    "corona",
    "diffuse",
)
CSV_COLUMNS: tuple[str, ...] = (
    "path",
    "morphology",
    "moon",
    "clouds",
    "seed",
    "moon_x",
    "moon_y",
    "moon_r",
    "circle_x",
    "circle_y",
    "circle_r",
)
JPEG_QUALITY = 92
CLOUD_PROB = 0.35
FIRST_FRAME = datetime(2024, 12, 1, 15, 0, 0, tzinfo=UTC)
FRAME_STEP_S = 60
FRAMES_PER_NIGHT = 14 * 60  # one frame a minute for 14 h, then the next night at 15:00
FILE_PREFIX = "LYR-Sony-"

EARTH_R_KM = 6371.0
MAG_TILT = math.tan(math.radians(8.0))  # field lines lean south by ~8 deg at Svalbard
H_REF_KM = 110.0
# Altitude shells (km): dense where the green line lives, sparse in the red layer.
ALTITUDES_KM = np.array(
    [96, 102, 108, 114, 120, 127, 135, 144, 155, 170, 190, 215, 245, 280], dtype=np.float32
)
GREEN = np.array([0.24, 1.00, 0.20], dtype=np.float32)  # camera RGB response to 557.7 nm
RED = np.array([1.00, 0.10, 0.08], dtype=np.float32)  # 630.0 nm
BLUE = np.array([0.45, 0.15, 1.00], dtype=np.float32)  # 427.8 nm N2+ at the lower border
MOON_DISPLAY = 320.0  # display value of the lunar disk: above 255, so noise cannot unsaturate it


class SynthError(ValueError):
    """Raised for invalid generator arguments (unknown morphology, bad size, ...)."""


@dataclass(frozen=True)
class SkyMeta:
    """Ground truth of one rendered image (pixel units, see module docstring for axes).

    ``moon_x``, ``moon_y``, ``moon_r`` are ``None`` when there is no Moon.
    """

    morphology: str
    moon: bool
    clouds: float
    moon_x: float | None
    moon_y: float | None
    moon_r: float | None
    circle_x: float
    circle_y: float
    circle_r: float

    def row(self, path: str, seed: int) -> dict[str, str]:
        """The ``labels.csv`` row of this image, as strings in :data:`CSV_COLUMNS` order."""

        def fmt(v: float | None) -> str:
            return "" if v is None else f"{v:.2f}"

        return {
            "path": path,
            "morphology": self.morphology,
            "moon": str(int(self.moon)),
            "clouds": f"{self.clouds:.3f}",
            "seed": str(seed),
            "moon_x": fmt(self.moon_x),
            "moon_y": fmt(self.moon_y),
            "moon_r": fmt(self.moon_r),
            "circle_x": fmt(self.circle_x),
            "circle_y": fmt(self.circle_y),
            "circle_r": fmt(self.circle_r),
        }


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _Grid:
    """Coarse sky grid of G x G pixels covering the fisheye disk (arrays are (G, G))."""

    g: int
    u: np.ndarray  # to the right (west), in circle radii
    v: np.ndarray  # downwards (south)
    rho: np.ndarray  # clipped to 1
    theta: np.ndarray  # zenith angle, rad
    plane_a: np.ndarray  # (n_alt, G, G) horizontal position at each altitude shell, km
    plane_b: np.ndarray  # (a: image right = west, b: image down = south; field tilt included)
    path: np.ndarray  # (n_alt, G, G) slant path length per km of altitude (van Rhijn factor)
    dh: np.ndarray  # (n_alt, 1, 1) altitude shell thickness, km


@lru_cache(maxsize=8)
def _grid(g: int) -> _Grid:
    c = (np.arange(g, dtype=np.float32) + 0.5) / g * 2.0 - 1.0
    v, u = np.meshgrid(c, c, indexing="ij")
    rho_raw = np.sqrt(u * u + v * v)
    rho = np.minimum(rho_raw, 1.0)
    theta = rho * (np.pi / 2)
    safe = np.maximum(rho_raw, 1e-6)
    dir_a, dir_b = u / safe, v / safe
    h = ALTITUDES_KM[:, None, None]
    ratio = EARTH_R_KM / (EARTH_R_KM + h) * np.sin(theta)[None]
    ground = EARTH_R_KM * (theta[None] - np.arcsin(ratio))  # arc length to the hit point
    path = 1.0 / np.sqrt(np.maximum(1.0 - ratio * ratio, 1e-3))
    edges = np.concatenate([[ALTITUDES_KM[0] - 3], (ALTITUDES_KM[1:] + ALTITUDES_KM[:-1]) / 2])
    edges = np.concatenate([edges, [ALTITUDES_KM[-1] + 20]])
    dh = np.diff(edges).astype(np.float32)[:, None, None]
    return _Grid(
        g=g,
        u=u,
        v=v,
        rho=rho,
        theta=theta,
        plane_a=(ground * dir_a[None]).astype(np.float32),
        plane_b=(ground * dir_b[None] - (h - H_REF_KM) * MAG_TILT).astype(np.float32),
        path=path.astype(np.float32),
        dh=dh,
    )


# Densities are sampled once on an N x N raster whose radius compresses plane distance d as
# d / (d + RASTER_D0): fine (~2 km) overhead, coarse towards the horizon, like the fisheye.
RASTER_D0 = 300.0
RED_POLEWARD_KM = 10.0


@lru_cache(maxsize=8)
def _raster(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Plane coordinates (a, b) in km of the raster pixel centres, each (n, n) float32."""
    c = (np.arange(n, dtype=np.float32) + 0.5) / n * 2.0 - 1.0
    qb, qa = np.meshgrid(c, c, indexing="ij")
    q = np.sqrt(qa * qa + qb * qb)
    qc = np.clip(q, 1e-6, 0.995)
    d = RASTER_D0 * qc / (1.0 - qc)
    return (d * qa / np.maximum(q, 1e-6)).astype(np.float32), (d * qb / np.maximum(q, 1e-6)).astype(
        np.float32
    )


def _raster_map(a: np.ndarray, b: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Raster pixel coordinates of plane points, as 2-D float32 maps for ``cv2.remap``."""
    d = np.sqrt(a * a + b * b)
    f = (1.0 / (d + RASTER_D0)) * (n / 2)
    mx = (a * f + (n / 2 - 0.5)).astype(np.float32)
    my = (b * f + (n / 2 - 0.5)).astype(np.float32)
    return mx.reshape(-1, a.shape[-1]), my.reshape(-1, a.shape[-1])


@lru_cache(maxsize=8)
def _grid_maps(g: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    grid = _grid(g)
    return _raster_map(grid.plane_a, grid.plane_b, n)


@lru_cache(maxsize=8)
def _red_maps(g: int, n: int, first: int) -> tuple[np.ndarray, np.ndarray]:
    """Maps of the upper shells, shifted so red emission sits 10 km poleward of the green."""
    grid = _grid(g)
    return _raster_map(grid.plane_a[first:], grid.plane_b[first:] + RED_POLEWARD_KM, n)


@lru_cache(maxsize=4)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return xx, yy


@lru_cache(maxsize=2)
def _noise_pool(size: int) -> np.ndarray:
    """A fixed per-size pool of unit Gaussian noise, cropped at random offsets per image."""
    return np.random.default_rng(0xA0B0).standard_normal((2 * size, 2 * size, 3), np.float32)


# --------------------------------------------------------------------------- emission

# A density maps plane coordinates (a, b) in km (float32 arrays of equal shape) to >= 0.
Density = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A uniform draw as a Python float (keeps float32 arrays float32 under NEP 50)."""
    return float(rng.uniform(lo, hi))


def _pow2k(x: np.ndarray, k: int) -> np.ndarray:
    """``x ** (2 ** k)`` by repeated squaring (numpy's generic power is ~100x slower)."""
    for _ in range(k):
        x = x * x
    return x


def _rotate(a: np.ndarray, b: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    ca, sa = math.cos(angle), math.sin(angle)
    return ca * a + sa * b, -sa * a + ca * b


def _arc_orientation(rng: np.random.Generator) -> float:
    """Arcs lie roughly magnetic east-west; the spread keeps orientation uninformative."""
    return float(rng.normal(0.0, 0.35))


def _one_arc(rng: np.random.Generator, angle: float, curv: float, y0: float) -> Density:
    w_lo = _u(rng, 3.0, 12.0)
    w_hi = w_lo * _u(rng, 1.0, 2.5)
    wave_amp, wave_k, wave_ph = _u(rng, 0, 30.0), _u(rng, 1 / 400, 1 / 120), _u(rng, 0, 6.3)
    rays_k, rays_ph = _u(rng, 1 / 25, 1 / 6), _u(rng, 0, 6.3)
    rays_k2 = rays_k * _u(rng, 1.3, 2.7)
    rays_m = _u(rng, 0.0, 0.6) if rng.random() < 0.6 else 0.0
    mod_k, mod_ph, mod_m = _u(rng, 1 / 600, 1 / 200), _u(rng, 0, 6.3), _u(rng, 0, 0.6)
    length, centre = _u(rng, 700, 2500), _u(rng, -300, 300)

    def density(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        x, y = _rotate(a, b, angle)
        d = y - (y0 + curv * x * x + wave_amp * np.sin(wave_k * x + wave_ph))
        d = d * np.where(d < 0, 1.0 / w_lo, 1.0 / w_hi).astype(np.float32)
        out = np.exp(-0.5 * d * d) * (1.0 + mod_m * np.sin(mod_k * x + mod_ph))
        if rays_m > 0:  # rayed arc: brightness striations along the curtain
            rays = np.sin(rays_k * x + rays_ph) * np.sin(rays_k2 * x)
            out *= 1.0 - rays_m * 0.5 + rays_m * 0.5 * rays
        return out / (1.0 + _pow2k((x - centre) / length, 3))

    return density


def _single_arc(rng: np.random.Generator) -> Density:
    angle = _arc_orientation(rng)
    curv = float(rng.normal(0.0, 1.0 / 3000))
    return _one_arc(rng, angle, curv, _u(rng, -250, 250))


def _multiple_arcs(rng: np.random.Generator) -> Density:
    angle = _arc_orientation(rng)
    curv = float(rng.normal(0.0, 1.0 / 3000))
    k = int(rng.integers(2, 6))
    spacing = _u(rng, 35, 130)
    start = _u(rng, -250, 250 - spacing * (k - 1) * 0.5)
    arcs = [_one_arc(rng, angle, curv, start + i * spacing * _u(rng, 0.8, 1.2)) for i in range(k)]
    weights = [_u(rng, 0.35, 1.0) for _ in range(k)]
    weights[int(rng.integers(k))] = 1.0

    def density(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = weights[0] * arcs[0](a, b)
        for wgt, arc in zip(weights[1:], arcs[1:], strict=True):
            out += wgt * arc(a, b)
        return out

    return density


def _spiral(rng: np.random.Generator, ca: float, cb: float, radius: float) -> Density:
    turns = _u(rng, 0.9, 2.0)
    psi_max = 2 * np.pi * turns
    r0 = _u(rng, 0.0, 0.25) * radius
    slope = (radius - r0) / psi_max
    sense = 1.0 if rng.random() < 0.5 else -1.0
    rot = _u(rng, 0, 2 * np.pi)
    width = _u(rng, 5.0, 15.0)
    tail = rng.random() < 0.75
    tail_len = _u(rng, 300, 1500)
    end_ang = rot + sense * psi_max
    end_a, end_b = ca + radius * math.cos(end_ang), cb + radius * math.sin(end_ang)
    # tangent of r = r0 + slope * psi at the outer end, in plane coordinates
    ta = slope * math.cos(end_ang) - sense * radius * math.sin(end_ang)
    tb = slope * math.sin(end_ang) + sense * radius * math.cos(end_ang)
    tn = math.hypot(ta, tb)
    ta, tb = ta / tn, tb / tn
    bend = float(rng.normal(0, 1 / 2500))

    def density(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        da, db = a - ca, b - cb
        r = np.sqrt(da * da + db * db)
        psi = np.mod(sense * (np.arctan2(db, da) - rot), 2 * np.pi).astype(np.float32)
        best = np.full(r.shape, 1e6, dtype=np.float32)
        bright = np.zeros(r.shape, dtype=np.float32)
        for k in range(int(np.ceil(turns)) + 1):
            pk = psi + np.float32(2 * np.pi * k)
            dist = np.where(pk <= psi_max, np.abs(r - (r0 + slope * pk)), np.float32(1e6))
            closer = dist < best
            best = np.where(closer, dist, best)
            bright = np.where(closer, 0.45 + 0.55 * pk / psi_max, bright)
        out = bright * np.exp(-0.5 * (best / width) ** 2)
        if tail:
            s = (a - end_a) * ta + (b - end_b) * tb
            n = -(a - end_a) * tb + (b - end_b) * ta - bend * s * s
            on = np.clip(s / 15.0 + 0.5, 0, 1) / (
                1.0 + _pow2k(s / tail_len, 1) * _pow2k(s / tail_len, 2)
            )
            out = np.maximum(out, on * np.exp(-0.5 * (n / width) ** 2))
        return out

    return density


def _vortex(rng: np.random.Generator) -> Density:
    n = 1 if rng.random() < 0.7 else 2
    spirals = [
        _spiral(rng, _u(rng, -200, 200), _u(rng, -200, 200), _u(rng, 70, 220)) for _ in range(n)
    ]
    if n == 1:
        return spirals[0]

    def density(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.maximum(spirals[0](a, b), 0.8 * spirals[1](a, b))

    return density


def _field_density(field: np.ndarray, extent: float) -> Density:
    """Bilinear lookup of a square (n, n) field covering [-extent, extent]^2 km."""
    n = field.shape[0]
    scale = (n - 1) / (2 * extent)

    def density(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        mx = ((a + extent) * scale).astype(np.float32).reshape(-1, a.shape[-1])
        my = ((b + extent) * scale).astype(np.float32).reshape(-1, a.shape[-1])
        out = cv2.remap(field, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return out.reshape(a.shape)

    return density


def _smooth_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    f = rng.standard_normal((n, n), dtype=np.float32)
    f = cv2.GaussianBlur(f, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return (f - f.mean()) / (f.std() + 1e-6)


def _band(n: int, extent: float, angle: float) -> np.ndarray:
    """Across-band coordinate (km) of an (n, n) field covering [-extent, extent]^2."""
    c = (np.arange(n, dtype=np.float32) / (n - 1) * 2 - 1) * extent
    bb, aa = np.meshgrid(c, c, indexing="ij")
    return _rotate(aa, bb, angle)[1]


def _patchy(rng: np.random.Generator) -> Density:
    extent, n = 900.0, 160  # ~11 km per cell
    px = 2 * extent / n
    scale_km = _u(rng, 20, 50)
    f = _smooth_noise(rng, n, scale_km / px)
    f2 = _smooth_noise(rng, n, 3 * scale_km / px)
    thr = _u(rng, 0.3, 0.9)
    patches = np.clip((f + 0.5 * f2 - thr) / 0.3, 0, 1) ** 1.5
    patches *= 0.6 + 0.2 * np.clip(f2 + 1.0, 0, 2)
    # patches fill an east-west oval region, not always the whole sky
    across = _band(n, extent, _arc_orientation(rng))
    band = 1.0 / (1.0 + _pow2k((across - _u(rng, -200, 200)) / _u(rng, 250, 700), 2))
    field = (patches + _u(rng, 0.0, 0.1)) * band
    return _field_density(field.astype(np.float32), extent)


def _diffuse(rng: np.random.Generator) -> Density:
    extent, n = 1500.0, 64
    f = _smooth_noise(rng, n, _u(rng, 3, 6))
    across = _band(n, extent, _arc_orientation(rng))
    centre, width = _u(rng, -350, 350), _u(rng, 250, 900)
    band = np.exp(-0.5 * ((across - centre) / width) ** 2)
    edge = _u(rng, 0.0, 1.0)  # some diffuse aurora has a sharper poleward boundary
    band *= 1.0 - edge + edge / (1.0 + np.exp(-(across - centre + width) / 60))
    field = (band * (1.0 + _u(rng, 0.1, 0.3) * f)).clip(0)
    return _field_density(field.astype(np.float32), extent)


def _integrate(
    density: Density, grid: _Grid, n: int, rng: np.random.Generator, thin: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Line-of-sight integrals of green, red, blue emission; each (G, G) float32."""
    h = ALTITUDES_KM[:, None, None]
    h_b = _u(rng, 96, 112) if thin else _u(rng, 98, 125)
    scale = _u(rng, 8, 18) if thin else _u(rng, 15, 45)
    onset = 1.0 / (1.0 + np.exp(-(h - h_b) / 3.0))
    green_prof = onset * np.exp(-np.maximum(h - h_b, 0) / scale)
    red_prof = np.exp(-0.5 * ((h - _u(rng, 170, 220)) / 50.0) ** 2)
    # the red/green column emission ratio is drawn in render_sky; pre-scale to unit ratio
    red_prof *= float((green_prof * grid.dh).sum()) / float((red_prof * grid.dh).sum())
    if thin:  # low-altitude pulsating patches carry little 630 nm emission
        red_prof *= 0.15
    blue_prof = onset * np.exp(-np.maximum(h - h_b, 0) / 6.0)
    ra, rb = _raster(n)
    field = density(ra, rb).astype(np.float32)
    mx, my = _grid_maps(grid.g, n)
    dens = cv2.remap(field, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    dens = dens.reshape(grid.plane_a.shape)
    w = grid.path * grid.dh
    green = (dens * (green_prof * w)).sum(0)
    blue = (dens * (blue_prof * w)).sum(0)
    # red sits a little poleward (north = up = -b) of the green structure
    top = slice(len(ALTITUDES_KM) - 8, None)
    sx, sy = _red_maps(grid.g, n, top.start)
    red_dens = cv2.remap(field, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    red = (red_dens.reshape(grid.plane_a[top].shape) * (red_prof[top] * w[top])).sum(0)
    norm = float(np.quantile(green, 0.995)) + 1e-6
    return green / norm, red / norm, blue / norm


def _circular_blur(prof: np.ndarray, sigma_bins: float) -> np.ndarray:
    k = np.fft.rfftfreq(prof.size) * 2 * np.pi
    return np.fft.irfft(np.fft.rfft(prof) * np.exp(-0.5 * (k * sigma_bins) ** 2), prof.size)


def _corona(rng: np.random.Generator, grid: _Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rays converging at the magnetic zenith, drawn in image space; each (G, G) float32."""
    mz_v = math.radians(8.0) / (np.pi / 2) + float(rng.normal(0, 0.04))
    mz_u = float(rng.normal(0, 0.04))
    du, dv = grid.u - mz_u, grid.v - mz_v
    r = np.sqrt(du * du + dv * dv)
    psi = np.arctan2(dv, du)
    nb = 1440
    k = int(rng.integers(30, 120))
    centres = rng.integers(0, nb, k)
    widths = rng.uniform(0.004, 0.03, k) * nb / (2 * np.pi)
    offs = np.arange(nb)[None, :] - centres[:, None]
    offs = (offs + nb // 2) % nb - nb // 2  # wrapped bin distance, (k, nb)
    # rays cluster in a few sectors (folds of the curtain overhead)
    sector = np.zeros(nb)
    for c in rng.integers(0, nb, int(rng.integers(1, 4))):
        sector += np.exp(
            -0.5 * (((np.arange(nb) - c + nb // 2) % nb - nb // 2) / _u(rng, 60, 250)) ** 2
        )
    sector /= sector.max()
    amps = (rng.pareto(2.0, k) + 0.3) * (0.25 + sector[centres])
    r_in = rng.uniform(0.02, 0.25, k) * rng.uniform(0.3, 1.0)
    r_out = r_in + rng.uniform(0.1, 0.55, k)
    rays = amps[:, None] * np.exp(-0.5 * (offs / widths[:, None]) ** 2)
    prof = rays.sum(0)
    p_in, p_out = r_in @ rays, r_out @ rays
    weak = prof < 1e-6
    p_in = np.where(weak, 0.1, p_in / np.maximum(prof, 1e-6))
    p_out = np.where(weak, 0.5, p_out / np.maximum(prof, 1e-6))
    # smooth the ray ends across neighbouring bins so that they do not step
    p_in = _circular_blur(p_in, 3.0).astype(np.float32)
    p_out = _circular_blur(p_out, 3.0).astype(np.float32)
    # anti-alias: at radius r one grid pixel spans 2 / (g r) rad, so blur more near the centre
    levels = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    table = np.stack([_circular_blur(prof, s) for s in levels]).astype(np.float32)
    pix_bins = (3.0 / (grid.g * np.maximum(r, 1e-3))) * nb / (2 * np.pi)
    lvl = np.clip(np.log2(np.maximum(pix_bins, 0.5) / 0.5), 0, len(levels) - 1.001)
    l0 = lvl.astype(np.int32)
    frac = (lvl - l0).astype(np.float32)
    idx = ((psi + np.pi) / (2 * np.pi) * nb).astype(np.int32) % nb
    a_prof = table[l0, idx] * (1 - frac) + table[l0 + 1, idx] * frac
    start, reach = p_in[idx], p_out[idx]
    radial = np.clip((r - start) / 0.05, 0, 1) / (1.0 + _pow2k(r / reach, 2))
    mean = float(prof.mean())
    glow = _u(rng, 0.1, 0.5) * mean * np.exp(-0.5 * (r / _u(rng, 0.15, 0.4)) ** 2)
    green = a_prof * radial + glow
    # ray tops (high altitude, red) project closer to the convergence point
    red = a_prof * np.clip((r - start * 0.5) / 0.04, 0, 1) * np.exp(-(r - start) / 0.15) + glow
    blue = a_prof * radial * np.clip((r - 0.2) / 0.3, 0, 1)
    # line-of-sight enhancement towards the horizon, as for the integrated morphologies
    vr = grid.path[1]
    norm = float(np.quantile(green * vr, 0.995)) + 1e-6
    return green * vr / norm, red * vr / norm, blue * vr / norm


_DENSITIES: dict[str, Callable[[np.random.Generator], Density]] = {
    "single_arc": _single_arc,
    "multiple_arcs": _multiple_arcs,
    "vortex": _vortex,
    "patchy": _patchy,
    "diffuse": _diffuse,
}


def _emission(
    morphology: str, rng: np.random.Generator, grid: _Grid, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if morphology == "corona":
        return _corona(rng, grid)
    density = _DENSITIES[morphology](rng)
    return _integrate(density, grid, n, rng, thin=morphology == "patchy")


# --------------------------------------------------------------------------- rendering


def _tone(light: np.ndarray) -> np.ndarray:
    """Camera response: linear radiance (any shape) to display values 0..255, float32."""
    return (255.0 * np.power(1.0 - np.exp(-np.maximum(light, 0)), 1 / 2.2)).astype(np.float32)


def _untone(disp: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_tone` (display values below 255 to linear radiance)."""
    v = np.clip(disp / 255.0, 0.0, 0.999) ** 2.2
    return (-np.log1p(-v)).astype(np.float32)


def _caption(img: np.ndarray, when: datetime) -> None:
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
    if morphology not in MORPHOLOGIES:
        raise SynthError(f"unknown morphology {morphology!r}; expected one of {MORPHOLOGIES}")
    if size < 32:
        raise SynthError(f"image size must be at least 32 px, got {size}")
    if not 0.0 <= clouds <= 1.0:
        raise SynthError(f"clouds must be in [0, 1], got {clouds}")
    s = int(size)
    g = int(np.clip(s * 2 // 7, 24, 144))
    n = int(np.clip(s // 2, 64, 256))
    grid = _grid(g)

    # circle geometry, rounded to what labels.csv stores
    cr = round(_u(rng, 0.43, 0.485) * s, 2)
    off = min(0.025 * s, max(0.0, s / 2 - cr - 1.0))
    cx = round((s - 1) / 2 + _u(rng, -off, off), 2)
    cy = round((s - 1) / 2 + _u(rng, -off, off), 2)

    # --- aurora, linear radiance on the coarse grid
    green, red, blue = _emission(morphology, rng, grid, n)
    level = math.exp(_u(rng, math.log(0.25), math.log(3.0)))
    red_ratio = math.exp(_u(rng, math.log(0.05), math.log(0.7)))
    blue_ratio = _u(rng, 0.0, 0.15) * min(level, 1.0)
    aur = (
        green[..., None] * GREEN
        + (red_ratio * red)[..., None] * RED
        + (blue_ratio * blue)[..., None] * BLUE
    ) * np.float32(0.25 * level)

    # --- sky background: airglow (van Rhijn at 90 km), town light, moonlight
    theta, rho = grid.theta, grid.rho
    van_rhijn = grid.path[0]
    airglow = math.exp(_u(rng, math.log(0.004), math.log(0.022)))
    sky = (airglow * van_rhijn)[..., None] * np.array([0.55, 0.6, 0.32], np.float32)
    phi = np.arctan2(grid.v, grid.u)
    town_az, town = _u(rng, -np.pi, np.pi), math.exp(_u(rng, math.log(0.005), math.log(0.08)))
    horizon = np.exp(-(np.pi / 2 - theta) / 0.2) * (0.5 + 0.5 * np.cos(phi - town_az)) ** 2
    sky += (town * horizon)[..., None] * np.array([1.0, 0.62, 0.3], np.float32)

    moon_px: tuple[float, float, float] | None = None
    glare = None
    if moon:
        mr = round(max(2.0, _u(rng, 0.010, 0.02) * s), 2)
        m_rho, m_az = _u(rng, 0.25, 0.85), _u(rng, -np.pi, np.pi)
        mx = round(cx + m_rho * cr * math.cos(m_az), 2)
        my = round(cy + m_rho * cr * math.sin(m_az), 2)
        moon_px = (mx, my, mr)
        phase = _u(rng, 0.3, 1.0)
        dm = np.sqrt((grid.u - (mx - cx) / cr) ** 2 + (grid.v - (my - cy) / cr) ** 2)
        r_rel = mr / cr
        lit = phase * _u(rng, 0.08, 0.3) * (0.6 + 0.4 * np.exp(-dm / 0.8)) * np.sqrt(van_rhijn)
        sky += lit[..., None] * np.array([0.5, 0.6, 0.85], np.float32)
        # glare: below saturation outside the disk (added after the exposure gain)
        halo = 0.9 * np.exp(-np.maximum(dm - r_rel, 0) / (r_rel * _u(rng, 1.0, 2.5)))
        halo += phase * _u(rng, 0.1, 0.35) / (1.0 + (dm / _u(rng, 0.08, 0.2)) ** 2)
        glare = halo.astype(np.float32)

    # --- clouds: transmission and scattered aurora-, moon- and town light
    transmission = np.ones_like(rho)
    if clouds > 0:
        veil = _smooth_noise(rng, g, g / _u(rng, 4, 9))
        veil = np.clip(0.5 + 0.45 * veil + _u(rng, -0.3, 0.3), 0, 1) * np.float32(clouds)
        transmission = 1.0 - 0.8 * veil
        lit = cv2.GaussianBlur(aur, (0, 0), g / 12) * 0.8 + sky * 1.5
        if glare is not None:
            lit += (0.5 * cv2.GaussianBlur(glare, (0, 0), g / 10))[..., None]
        lit += np.array([1.0, 0.7, 0.4], np.float32) * np.float32(0.04 * clouds)
        sky = sky + veil[..., None] * lit
    extinction = np.exp(-_u(rng, 0.05, 0.25) * (np.minimum(van_rhijn, 8.0) - 1.0))
    light = aur * (transmission * extinction)[..., None] + sky
    vignette = (1.0 - 0.35 * _pow2k(rho, 2)) * np.clip((1.0 - rho) / 0.03, 0.55, 1.0)
    gain = math.exp(_u(rng, math.log(0.6), math.log(1.6)))
    light = (light * (gain * vignette)[..., None]).astype(np.float32)
    if glare is not None:
        light += (glare * transmission)[..., None] * np.array([1.0, 0.97, 0.9], np.float32)

    # --- camera tone curve on the smooth coarse sky, then warp onto the fisheye circle
    k = 2 * cr / g
    m = np.array([[k, 0, cx + (0.5 - g / 2) * k], [0, k, cy + (0.5 - g / 2) * k]], np.float32)
    disp = cv2.warpAffine(
        _tone(light), m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )

    # stars: point sources added in linear units at the few pixels they touch
    n_stars = int(np.pi * cr * cr * math.exp(_u(rng, math.log(4e-4), math.log(6e-3))))
    sr = cr * np.sqrt(rng.random(n_stars, dtype=np.float32))
    sa = rng.uniform(0, 2 * np.pi, n_stars).astype(np.float32)
    sx = np.clip(np.rint(cx + sr * np.cos(sa)), 0, s - 1).astype(np.int64)
    sy = np.clip(np.rint(cy + sr * np.sin(sa)), 0, s - 1).astype(np.int64)
    flux = (rng.pareto(1.6, n_stars) + 1.0) * 0.04 * (s / 480.0) ** -0.5
    gi = np.clip(((sy - cy) / k + g / 2 - 0.5).astype(np.int64), 0, g - 1)
    gj = np.clip(((sx - cx) / k + g / 2 - 0.5).astype(np.int64), 0, g - 1)
    flux *= (transmission**2 * extinction**2 * vignette * gain)[gi, gj]
    stars = np.bincount(sy * s + sx, weights=flux, minlength=s * s).astype(np.float32)
    stars = cv2.GaussianBlur(stars.reshape(s, s), (3, 3), 0.6).reshape(-1)
    hit = np.flatnonzero(stars > 1e-3)
    flat = disp.reshape(-1, 3)
    lit_stars = _untone(flat[hit]) + stars[hit, None] * np.float32([0.95, 1.0, 0.9])
    # even the brightest star stays below 240 so that the Moon is the only saturated blob
    flat[hit] = np.minimum(_tone(lit_stars), flat[hit].max(-1, keepdims=True).clip(240))

    xx, yy = _pixel_grid(s)
    if moon_px is not None:
        mx, my, mr = moon_px
        x0, x1 = max(0, int(mx - mr - 2)), min(s, int(mx + mr + 3))
        y0, y1 = max(0, int(my - mr - 2)), min(s, int(my + mr + 3))
        d = np.sqrt((xx[y0:y1, x0:x1] - mx) ** 2 + (yy[y0:y1, x0:x1] - my) ** 2)
        cov = np.clip(mr + 0.5 - d, 0, 1)[..., None]
        # above 255 so that read noise cannot pull the saturated disk below 255
        disp[y0:y1, x0:x1] = disp[y0:y1, x0:x1] * (1 - cov) + MOON_DISPLAY * cov

    # read noise (a per-size pool cropped at a random offset), black frame, 8 bit
    oy, ox = (int(v) for v in rng.integers(0, s, size=2))
    disp = cv2.scaleAdd(_noise_pool(s)[oy : oy + s, ox : ox + s], _u(rng, 1.0, 3.5), disp)
    frame = np.float32(cr + 0.5) - cv2.magnitude(xx - np.float32(cx), yy - np.float32(cy))
    np.minimum(np.maximum(frame, 0, out=frame), 1, out=frame)
    disp *= frame[..., None]
    img = cv2.convertScaleAbs(disp)  # rounds and saturates; disp is >= 0 but for noise
    if caption:
        _caption(img, when if when is not None else FIRST_FRAME)

    meta = SkyMeta(
        morphology=morphology,
        moon=moon_px is not None,
        clouds=round(float(clouds), 3),
        moon_x=None if moon_px is None else moon_px[0],
        moon_y=None if moon_px is None else moon_px[1],
        moon_r=None if moon_px is None else moon_px[2],
        circle_x=cx,
        circle_y=cy,
        circle_r=cr,
    )
    return img, meta


# --------------------------------------------------------------------------- data set


def frame_time(index: int) -> datetime:
    """UTC time of frame ``index``: every 60 s for 14 h from 15:00, one night after another."""
    night, k = divmod(index, FRAMES_PER_NIGHT)
    return FIRST_FRAME + timedelta(days=night, seconds=k * FRAME_STEP_S)


def frame_name(when: datetime) -> str:
    """KHO file name ``LYR-Sony-YYYYMMDD_HHMMSS.jpg`` for a UTC time."""
    return f"{FILE_PREFIX}{when:%Y%m%d_%H%M%S}.jpg"


def image_seed(seed: int, index: int) -> int:
    """Per-image seed from the data-set seed and the image index (independent of job count)."""
    # Python-int shift: the same value under NumPy 1 and 2 (NumPy 1 refuses uint64 >> int).
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0]) >> 1


@dataclass(frozen=True)
class ImagePlan:
    """Everything that decides one image of a data set, before any pixel is rendered."""

    index: int
    seed: int
    morphology: str
    moon: bool
    clouds: float
    when: datetime

    @property
    def name(self) -> str:
        return frame_name(self.when)


def plan_dataset(n: int, seed: int = 0, moon_prob: float = 0.3) -> list[ImagePlan]:
    """The per-image choices of :func:`generate`, cheap to compute for large ``n``.

    Morphologies: equal counts (up to one) in an order shuffled by ``seed``. Moon and clouds
    come from each image's own seed on a stream separate from its pixels, so they are
    independent of the morphology and of the job count.
    """
    reps = -(-n // len(MORPHOLOGIES))
    morphs = np.tile(np.array(MORPHOLOGIES), reps)[:n]
    morphs = np.random.default_rng([seed, 0xC1A55]).permutation(morphs)
    plans = []
    for i in range(n):
        seed_i = image_seed(seed, i)
        r = np.random.default_rng([seed_i, 1])
        moon = bool(r.random() < moon_prob)
        clouds = round(float(r.uniform(0.15, 1.0)), 3) if r.random() < CLOUD_PROB else 0.0
        plans.append(ImagePlan(i, seed_i, str(morphs[i]), moon, clouds, frame_time(i)))
    return plans


def render_plan(plan: ImagePlan, size: int) -> tuple[np.ndarray, SkyMeta]:
    """Render the image a plan describes; (size, size, 3) RGB uint8 and its ground truth."""
    rng = np.random.default_rng(plan.seed)
    return render_sky(plan.morphology, rng, size, plan.moon, plan.clouds, plan.when)


def encode_jpeg(img: np.ndarray) -> bytes:
    """JPEG bytes (quality :data:`JPEG_QUALITY`) of an RGB uint8 image."""
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:  # pragma: no cover - cv2 only fails on invalid arrays
        raise SynthError("JPEG encoding failed")
    return buf.tobytes()


def _render_job(args: tuple[str, ImagePlan, int]) -> dict[str, str]:
    out_dir, plan, size = args
    img, meta = render_plan(plan, size)
    Path(out_dir, plan.name).write_bytes(encode_jpeg(img))
    return meta.row(plan.name, plan.seed)


def _worker_init() -> None:
    cv2.setNumThreads(1)


def generate(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    size: int = 480,
    moon_prob: float = 0.3,
    jobs: int | None = None,
) -> Path:
    """Write ``n`` synthetic JPEGs and ``labels.csv`` into ``out_dir`` (a flat folder).

    Morphologies are balanced (equal counts up to one, shuffled by ``seed``); the Moon and
    clouds are drawn per image, independently of the morphology.

    Args:
        out_dir: destination folder (created if missing).
        n: number of images (>= 1).
        seed: data-set seed; the same seed gives byte-identical files for any ``jobs``.
        size: image side in pixels.
        moon_prob: probability that an image shows the Moon.
        jobs: worker processes (default: all CPUs); 1 renders in this process.

    Returns:
        Path of the written ``labels.csv``.
    """
    if n < 1:
        raise SynthError(f"number of images must be >= 1, got {n}")
    if size < 32:
        raise SynthError(f"image size must be at least 32 px, got {size}")
    if not 0.0 <= moon_prob <= 1.0:
        raise SynthError(f"moon_prob must be in [0, 1], got {moon_prob}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks = [(str(out), p, size) for p in plan_dataset(n, seed, moon_prob)]
    jobs = min(jobs or os.cpu_count() or 1, n)
    if jobs <= 1:
        old = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            rows = [_render_job(t) for t in tasks]
        finally:
            cv2.setNumThreads(old)
    else:
        with ProcessPoolExecutor(jobs, initializer=_worker_init) as pool:
            rows = list(pool.map(_render_job, tasks, chunksize=max(1, n // (jobs * 8))))
    lines = [",".join(CSV_COLUMNS)]
    lines += [",".join(r[c] for c in CSV_COLUMNS) for r in rows]
    labels = out / "labels.csv"
    atomic_write_text(labels, "\n".join(lines) + "\n")
    return labels


def read_labels(path: str | Path) -> list[dict[str, str]]:
    """Rows of a ``labels.csv`` written by :func:`generate`, as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m aurora.data.synth OUT_DIR --n 600 --seed 0 --size 480``."""
    p = argparse.ArgumentParser(
        prog="python -m aurora.data.synth", description=__doc__.split("\n")[0]
    )
    p.add_argument("out_dir", type=Path)
    p.add_argument("--n", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=480)
    p.add_argument("--moon-prob", type=float, default=0.3)
    p.add_argument("--jobs", type=int, default=None)
    a = p.parse_args(argv)
    try:
        labels = generate(a.out_dir, a.n, a.seed, a.size, a.moon_prob, a.jobs)
    except SynthError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.n} images and {labels}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
