"""Fisheye geometry: altitude shells, the coarse sky grid, and the raster densities are drawn on.

The fisheye is equidistant: a pixel at normalised radius ``rho`` (0 at the circle centre, 1 at
its edge) looks at zenith angle ``rho * 90 deg``; north is up, east is left. Each grid pixel's
line of sight meets every altitude shell at a horizontal plane position (km) on a spherical
Earth, shifted along the magnetic field lines that lean ~8 deg south at Svalbard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from aurora.data.synth.numeric import uniform

EARTH_R_KM = 6371.0
MAG_TILT = math.tan(math.radians(8.0))  # field lines lean south by ~8 deg at Svalbard
H_REF_KM = 110.0
# Altitude shells (km): dense where the green line lives, sparse in the red layer.
ALTITUDES_KM = np.array(
    [96, 102, 108, 114, 120, 127, 135, 144, 155, 170, 190, 215, 245, 280], dtype=np.float32
)


class Circle(NamedTuple):
    """A circle in image pixels: centre column ``x``, row ``y`` and radius ``r``."""

    x: float
    y: float
    r: float


def draw_circle(rng: np.random.Generator, size: int) -> Circle:
    """The fisheye circle of a ``size`` px image, rounded to what ``labels.csv`` stores."""
    cr = round(uniform(rng, 0.43, 0.485) * size, 2)
    off = min(0.025 * size, max(0.0, size / 2 - cr - 1.0))
    cx = round((size - 1) / 2 + uniform(rng, -off, off), 2)
    cy = round((size - 1) / 2 + uniform(rng, -off, off), 2)
    return Circle(cx, cy, cr)


@dataclass(frozen=True)
class SkyGrid:
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
def sky_grid(g: int) -> SkyGrid:
    """The G x G grid (cached per size), with its lines of sight through every shell."""
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
    return SkyGrid(
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
def raster(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Plane coordinates (a, b) in km of the raster pixel centres, each (n, n) float32."""
    c = (np.arange(n, dtype=np.float32) + 0.5) / n * 2.0 - 1.0
    qb, qa = np.meshgrid(c, c, indexing="ij")
    q = np.sqrt(qa * qa + qb * qb)
    qc = np.clip(q, 1e-6, 0.995)
    d = RASTER_D0 * qc / (1.0 - qc)
    return (d * qa / np.maximum(q, 1e-6)).astype(np.float32), (d * qb / np.maximum(q, 1e-6)).astype(
        np.float32
    )


def raster_map(a: np.ndarray, b: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Raster pixel coordinates of plane points, as 2-D float32 maps for ``cv2.remap``."""
    d = np.sqrt(a * a + b * b)
    f = (1.0 / (d + RASTER_D0)) * (n / 2)
    mx = (a * f + (n / 2 - 0.5)).astype(np.float32)
    my = (b * f + (n / 2 - 0.5)).astype(np.float32)
    return mx.reshape(-1, a.shape[-1]), my.reshape(-1, a.shape[-1])


@lru_cache(maxsize=8)
def grid_maps(g: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Raster coordinates of every (shell, grid pixel); ``cv2.remap`` maps of (n_alt * G, G)."""
    grid = sky_grid(g)
    return raster_map(grid.plane_a, grid.plane_b, n)


@lru_cache(maxsize=8)
def red_maps(g: int, n: int, first: int) -> tuple[np.ndarray, np.ndarray]:
    """Maps of the upper shells, shifted so red emission sits 10 km poleward of the green."""
    grid = sky_grid(g)
    return raster_map(grid.plane_a[first:], grid.plane_b[first:] + RED_POLEWARD_KM, n)
