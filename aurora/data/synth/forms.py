"""Auroral forms as 2-D emission patterns in the horizontal plane (km), one per morphology.

Each form is drawn from a random generator and returned as a :data:`Density`, which the
emission step samples once on the plane raster and extrudes along the field lines. The
corona is not a plane pattern: it is drawn in image space by :mod:`.emission`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from aurora.data.synth.numeric import pow2k, rotate, smooth_noise, uniform

# A density maps plane coordinates (a, b) in km (float32 arrays of equal shape) to >= 0.
Density = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _arc_orientation(rng: np.random.Generator) -> float:
    """Arcs lie roughly magnetic east-west; the spread keeps orientation uninformative."""
    return float(rng.normal(0.0, 0.35))


def _one_arc(rng: np.random.Generator, angle: float, curv: float, y0: float) -> Density:
    """One curtain at offset ``y0`` km across its axis: sharp lower and softer upper edge, a
    gentle wave and bend, optional ray striations, fading out along its length."""
    w_lo = uniform(rng, 3.0, 12.0)
    w_hi = w_lo * uniform(rng, 1.0, 2.5)
    wave_amp, wave_k, wave_ph = (
        uniform(rng, 0, 30.0),
        uniform(rng, 1 / 400, 1 / 120),
        uniform(rng, 0, 6.3),
    )
    rays_k, rays_ph = uniform(rng, 1 / 25, 1 / 6), uniform(rng, 0, 6.3)
    rays_k2 = rays_k * uniform(rng, 1.3, 2.7)
    rays_m = uniform(rng, 0.0, 0.6) if rng.random() < 0.6 else 0.0
    mod_k, mod_ph, mod_m = (
        uniform(rng, 1 / 600, 1 / 200),
        uniform(rng, 0, 6.3),
        uniform(rng, 0, 0.6),
    )
    length, centre = uniform(rng, 700, 2500), uniform(rng, -300, 300)

    def density(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        x, y = rotate(a, b, angle)
        d = y - (y0 + curv * x * x + wave_amp * np.sin(wave_k * x + wave_ph))
        d = d * np.where(d < 0, 1.0 / w_lo, 1.0 / w_hi).astype(np.float32)
        out = np.exp(-0.5 * d * d) * (1.0 + mod_m * np.sin(mod_k * x + mod_ph))
        if rays_m > 0:  # rayed arc: brightness striations along the curtain
            rays = np.sin(rays_k * x + rays_ph) * np.sin(rays_k2 * x)
            out *= 1.0 - rays_m * 0.5 + rays_m * 0.5 * rays
        return out / (1.0 + pow2k((x - centre) / length, 3))

    return density


def _single_arc(rng: np.random.Generator) -> Density:
    """One east-west arc."""
    angle = _arc_orientation(rng)
    curv = float(rng.normal(0.0, 1.0 / 3000))
    return _one_arc(rng, angle, curv, uniform(rng, -250, 250))


def _multiple_arcs(rng: np.random.Generator) -> Density:
    """Two to five parallel arcs of one orientation and curvature, at unequal brightness."""
    angle = _arc_orientation(rng)
    curv = float(rng.normal(0.0, 1.0 / 3000))
    k = int(rng.integers(2, 6))
    spacing = uniform(rng, 35, 130)
    start = uniform(rng, -250, 250 - spacing * (k - 1) * 0.5)
    arcs = [
        _one_arc(rng, angle, curv, start + i * spacing * uniform(rng, 0.8, 1.2)) for i in range(k)
    ]
    weights = [uniform(rng, 0.35, 1.0) for _ in range(k)]
    weights[int(rng.integers(k))] = 1.0

    def density(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = weights[0] * arcs[0](a, b)
        for wgt, arc in zip(weights[1:], arcs[1:], strict=True):
            out += wgt * arc(a, b)
        return out

    return density


def _spiral(rng: np.random.Generator, ca: float, cb: float, radius: float) -> Density:
    """An Archimedean spiral of auroral curtain centred at (ca, cb) km, mostly with a tail."""
    turns = uniform(rng, 0.9, 2.0)
    psi_max = 2 * np.pi * turns
    r0 = uniform(rng, 0.0, 0.25) * radius
    slope = (radius - r0) / psi_max
    sense = 1.0 if rng.random() < 0.5 else -1.0
    rot = uniform(rng, 0, 2 * np.pi)
    width = uniform(rng, 5.0, 15.0)
    tail = rng.random() < 0.75
    tail_len = uniform(rng, 300, 1500)
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
                1.0 + pow2k(s / tail_len, 1) * pow2k(s / tail_len, 2)
            )
            out = np.maximum(out, on * np.exp(-0.5 * (n / width) ** 2))
        return out

    return density


def _vortex(rng: np.random.Generator) -> Density:
    """One spiral, or (30 %) two."""
    n = 1 if rng.random() < 0.7 else 2
    spirals = [
        _spiral(rng, uniform(rng, -200, 200), uniform(rng, -200, 200), uniform(rng, 70, 220))
        for _ in range(n)
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


def _band(n: int, extent: float, angle: float) -> np.ndarray:
    """Across-band coordinate (km) of an (n, n) field covering [-extent, extent]^2."""
    c = (np.arange(n, dtype=np.float32) / (n - 1) * 2 - 1) * extent
    bb, aa = np.meshgrid(c, c, indexing="ij")
    return rotate(aa, bb, angle)[1]


def _patchy(rng: np.random.Generator) -> Density:
    """Patches of pulsating aurora (~20-50 km) filling an east-west oval band."""
    extent, n = 900.0, 160  # ~11 km per cell
    px = 2 * extent / n
    scale_km = uniform(rng, 20, 50)
    f = smooth_noise(rng, n, scale_km / px)
    f2 = smooth_noise(rng, n, 3 * scale_km / px)
    thr = uniform(rng, 0.3, 0.9)
    patches = np.clip((f + 0.5 * f2 - thr) / 0.3, 0, 1) ** 1.5
    patches *= 0.6 + 0.2 * np.clip(f2 + 1.0, 0, 2)
    # patches fill an east-west oval region, not always the whole sky
    across = _band(n, extent, _arc_orientation(rng))
    band = 1.0 / (1.0 + pow2k((across - uniform(rng, -200, 200)) / uniform(rng, 250, 700), 2))
    field = (patches + uniform(rng, 0.0, 0.1)) * band
    return _field_density(field.astype(np.float32), extent)


def _diffuse(rng: np.random.Generator) -> Density:
    """A broad, weakly structured east-west band, its poleward edge sometimes sharper."""
    extent, n = 1500.0, 64
    f = smooth_noise(rng, n, uniform(rng, 3, 6))
    across = _band(n, extent, _arc_orientation(rng))
    centre, width = uniform(rng, -350, 350), uniform(rng, 250, 900)
    band = np.exp(-0.5 * ((across - centre) / width) ** 2)
    edge = uniform(rng, 0.0, 1.0)  # some diffuse aurora has a sharper poleward boundary
    band *= 1.0 - edge + edge / (1.0 + np.exp(-(across - centre + width) / 60))
    field = (band * (1.0 + uniform(rng, 0.1, 0.3) * f)).clip(0)
    return _field_density(field.astype(np.float32), extent)


#: Form of every morphology drawn in the plane (the corona is drawn in image space).
DENSITIES: dict[str, Callable[[np.random.Generator], Density]] = {
    "single_arc": _single_arc,
    "multiple_arcs": _multiple_arcs,
    "vortex": _vortex,
    "patchy": _patchy,
    "diffuse": _diffuse,
}
