"""Emission of each auroral form in linear radiance on the coarse sky grid, per spectral line.

A plane form (:mod:`.forms`) is extruded along the field lines and integrated along each
pixel's line of sight over the altitude shells: the green 557.7 nm line peaks just above a
sharp lower border (95-125 km), the red 630.0 nm line at about 220 km and a little poleward,
the blue 427.8 nm band hugs the lower border. The corona is drawn directly as rays radiating
from the magnetic zenith.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from aurora.data.synth.forms import DENSITIES, Density
from aurora.data.synth.geometry import ALTITUDES_KM, SkyGrid, grid_maps, raster, red_maps
from aurora.data.synth.numeric import pow2k, uniform

#: Angular bins of the corona's ray profile around the convergence point.
RAY_BINS = 1440


def emission(
    morphology: str, rng: np.random.Generator, grid: SkyGrid, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Green, red and blue emission of one form, each (G, G) float32, green's top ~1.

    Args:
        morphology: one of :data:`~aurora.data.synth.truth.MORPHOLOGIES`.
        rng: the image's generator.
        grid: the coarse sky grid.
        n: side of the plane raster the form is sampled on.
    """
    if morphology == "corona":
        return _corona(rng, grid)
    density = DENSITIES[morphology](rng)
    return _integrate(density, grid, n, rng, thin=morphology == "patchy")


def _integrate(
    density: Density, grid: SkyGrid, n: int, rng: np.random.Generator, thin: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Line-of-sight integrals of green, red, blue emission; each (G, G) float32."""
    h = ALTITUDES_KM[:, None, None]
    h_b = uniform(rng, 96, 112) if thin else uniform(rng, 98, 125)
    scale = uniform(rng, 8, 18) if thin else uniform(rng, 15, 45)
    onset = 1.0 / (1.0 + np.exp(-(h - h_b) / 3.0))
    green_prof = onset * np.exp(-np.maximum(h - h_b, 0) / scale)
    red_prof = np.exp(-0.5 * ((h - uniform(rng, 170, 220)) / 50.0) ** 2)
    # the red/green column emission ratio is drawn in render_sky; pre-scale to unit ratio
    red_prof *= float((green_prof * grid.dh).sum()) / float((red_prof * grid.dh).sum())
    if thin:  # low-altitude pulsating patches carry little 630 nm emission
        red_prof *= 0.15
    blue_prof = onset * np.exp(-np.maximum(h - h_b, 0) / 6.0)
    ra, rb = raster(n)
    field = density(ra, rb).astype(np.float32)
    mx, my = grid_maps(grid.g, n)
    dens = cv2.remap(field, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    dens = dens.reshape(grid.plane_a.shape)
    w = grid.path * grid.dh
    green = (dens * (green_prof * w)).sum(0)
    blue = (dens * (blue_prof * w)).sum(0)
    # red sits a little poleward (north = up = -b) of the green structure
    top = slice(len(ALTITUDES_KM) - 8, None)
    sx, sy = red_maps(grid.g, n, top.start)
    red_dens = cv2.remap(field, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    red = (red_dens.reshape(grid.plane_a[top].shape) * (red_prof[top] * w[top])).sum(0)
    norm = float(np.quantile(green, 0.995)) + 1e-6
    return green / norm, red / norm, blue / norm


def _circular_blur(prof: np.ndarray, sigma_bins: float) -> np.ndarray:
    """Gaussian blur of a periodic (nb,) profile, sigma in bins (via the FFT)."""
    k = np.fft.rfftfreq(prof.size) * 2 * np.pi
    return np.fft.irfft(np.fft.rfft(prof) * np.exp(-0.5 * (k * sigma_bins) ** 2), prof.size)


def _corona(rng: np.random.Generator, grid: SkyGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rays converging at the magnetic zenith, drawn in image space; each (G, G) float32."""
    mz_v = math.radians(8.0) / (np.pi / 2) + float(rng.normal(0, 0.04))
    mz_u = float(rng.normal(0, 0.04))
    du, dv = grid.u - mz_u, grid.v - mz_v
    r = np.sqrt(du * du + dv * dv)
    psi = np.arctan2(dv, du)
    prof, p_in, p_out = _ray_profile(rng, RAY_BINS)
    idx = ((psi + np.pi) / (2 * np.pi) * RAY_BINS).astype(np.int32) % RAY_BINS
    a_prof = _antialiased(prof, r, idx, grid.g)
    start, reach = p_in[idx], p_out[idx]
    radial = np.clip((r - start) / 0.05, 0, 1) / (1.0 + pow2k(r / reach, 2))
    mean = float(prof.mean())
    glow = uniform(rng, 0.1, 0.5) * mean * np.exp(-0.5 * (r / uniform(rng, 0.15, 0.4)) ** 2)
    green = a_prof * radial + glow
    # ray tops (high altitude, red) project closer to the convergence point
    red = a_prof * np.clip((r - start * 0.5) / 0.04, 0, 1) * np.exp(-(r - start) / 0.15) + glow
    blue = a_prof * radial * np.clip((r - 0.2) / 0.3, 0, 1)
    # line-of-sight enhancement towards the horizon, as for the integrated morphologies
    vr = grid.path[1]
    norm = float(np.quantile(green * vr, 0.995)) + 1e-6
    return green * vr / norm, red * vr / norm, blue * vr / norm


def _ray_profile(rng: np.random.Generator, nb: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The corona's rays around the convergence point, in ``nb`` angular bins.

    Returns:
        ``(prof, p_in, p_out)``: (nb,) summed ray brightness, and the (nb,) float32 radii
        (in circle radii) where the rays of each bin start and fade.
    """
    nb2 = nb // 2
    k = int(rng.integers(30, 120))
    centres = rng.integers(0, nb, k)
    widths = rng.uniform(0.004, 0.03, k) * nb / (2 * np.pi)
    offs = np.arange(nb)[None, :] - centres[:, None]
    offs = (offs + nb2) % nb - nb2  # wrapped bin distance, (k, nb)
    # rays cluster in a few sectors (folds of the curtain overhead)
    sector = np.zeros(nb)
    for c in rng.integers(0, nb, int(rng.integers(1, 4))):
        sector += np.exp(
            -0.5 * (((np.arange(nb) - c + nb2) % nb - nb2) / uniform(rng, 60, 250)) ** 2
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
    return prof, p_in, p_out


def _antialiased(prof: np.ndarray, r: np.ndarray, idx: np.ndarray, g: int) -> np.ndarray:
    """The ray profile seen by each grid pixel at radius ``r`` and angular bin ``idx``; (G, G).

    At radius r one grid pixel spans 2 / (g r) rad, so the profile is blurred more near the
    centre (interpolated between a few precomputed blur levels).
    """
    nb = prof.size
    levels = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    table = np.stack([_circular_blur(prof, s) for s in levels]).astype(np.float32)
    pix_bins = (3.0 / (g * np.maximum(r, 1e-3))) * nb / (2 * np.pi)
    lvl = np.clip(np.log2(np.maximum(pix_bins, 0.5) / 0.5), 0, len(levels) - 1.001)
    l0 = lvl.astype(np.int32)
    frac = (lvl - l0).astype(np.float32)
    return table[l0, idx] * (1 - frac) + table[l0 + 1, idx] * frac
