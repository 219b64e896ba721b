"""Frames of a synthetic night: one camera, events whose forms drift and brighten smoothly.

The camera (fisheye circle, sky background, extinction, gain, stars) is fixed for the night.
Each event draws its auroral form once from its seed; every frame of the event re-renders
that same form moved by the event's motion at the frame's time: a slow bounded drift
(a sinusoid in the plane, km) and turn for calm phases, fast ones for active phases, plus
per-frame flicker (a smooth multiplicative field) and brightness jitter. The brightness
follows the event's ``level0`` -> ``level1`` (geometric, or a fast decay after an onset).
So neighbouring frames of an event are near-duplicates, and the picture changes at the
boundaries; an onset starts with a jump of brightness and frame-to-frame change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import cv2
import numpy as np

from aurora.data.synth.camera import add_stars, draw_caption, read_out, tone, warp
from aurora.data.synth.emission import _integrate, emission
from aurora.data.synth.forms import DENSITIES, Density
from aurora.data.synth.geometry import Circle, SkyGrid, draw_circle, sky_grid
from aurora.data.synth.numeric import rotate, smooth_noise
from aurora.data.synth.schedule import NightEvent
from aurora.data.synth.sky import BLUE, GREEN, RED, _background, _exposure

DISPLAY_PER_LEVEL = 10.0  # mean display value (0..255) the aurora adds per unit of level
HALO_MEAN = 0.1  # mean over the sky of an active form's halo, relative to the form's peak


@dataclass(frozen=True)
class Motion:
    """How an event's form moves and flickers (drawn from its seed and phase).

    Attributes:
        amp_km: amplitude of the sinusoidal drift in the plane, km.
        period_s: its period, s.
        phase: its phase at the event start, rad.
        heading: direction of the drift in the plane, rad (0 = along ``b``, north-south).
        turn_rad_s: rotation speed about the zenith (the magnetic zenith for the corona), rad/s.
        flicker: amplitude of the per-frame multiplicative flicker field (0 = none).
        jitter: standard deviation of the per-frame log-brightness jitter.
    """

    amp_km: float
    period_s: float
    phase: float
    heading: float
    turn_rad_s: float
    flicker: float
    jitter: float


def event_motion(event: NightEvent) -> Motion:
    """The motion of an event: calm (quiet, growth), pulsating (recovery) or active."""
    r = np.random.default_rng([event.seed, 0x307])
    u = lambda lo, hi: float(r.uniform(lo, hi))  # noqa: E731
    sign = 1.0 if r.random() < 0.5 else -1.0
    heading = float(r.normal(0.0, 0.4))  # mostly north-south, as arcs drift
    if event.active:
        flicker = 0.8 if event.morphology == "patchy" else 0.5
        amp, period, turn = u(40, 100), u(300, 900), math.radians(u(15, 40)) / 600
        return Motion(amp, period, u(0, 6.3), heading, sign * turn, flicker, 0.12)
    if event.phase == "recovery":
        amp, period, turn = u(10, 25), u(1800, 3600), math.radians(u(0, 6)) / 3600
        return Motion(amp, period, u(0, 6.3), heading, sign * turn, 0.3, 0.04)
    amp, period, turn = u(8, 25), u(2700, 7200), math.radians(u(0, 6)) / 3600
    return Motion(amp, period, u(0, 6.3), heading, sign * turn, 0.0, 0.02)


def event_level(event: NightEvent, frac: float) -> float:
    """Brightness of an event at fraction ``frac`` in [0, 1) of its length (before jitter)."""
    l0, l1 = event.level0, event.level1
    if event.onset:  # sudden brightening, then a fast decay towards level1
        return l1 + (l0 - l1) * math.exp(-4.0 * frac)
    return l0 * (l1 / l0) ** frac


@dataclass(frozen=True)
class NightCamera:
    """The night's camera: image size and the seed of everything fixed for the night."""

    seed: int
    size: int

    @property
    def grid(self) -> SkyGrid:
        """The coarse sky grid (as ``render_sky`` chooses it for this size)."""
        return sky_grid(int(np.clip(self.size * 2 // 7, 24, 144)))

    @property
    def raster_n(self) -> int:
        """Side of the plane raster the forms are sampled on."""
        return int(np.clip(self.size // 2, 64, 256))

    @property
    def circle(self) -> Circle:
        """The fisheye circle, the same for every frame of the night."""
        return draw_circle(np.random.default_rng([self.seed, 0xC12C]), self.size)


def _moved(density: Density, offset: tuple[float, float], angle: float) -> Density:
    """The plane form turned by ``angle`` rad about the zenith and shifted by ``offset`` km."""

    def moved(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        x, y = rotate(a - np.float32(offset[0]), b - np.float32(offset[1]), angle)
        return density(x.astype(np.float32), y.astype(np.float32))

    return moved


def _form(event: NightEvent, camera: NightCamera, motion: Motion, tau: float) -> np.ndarray:
    """The event's green, red, blue emission at ``tau`` s after its start; (3, G, G).

    Active events carry a broad green halo around their form (a breakup lights up the sky
    around it), so that they brighten the whole sky and not only a few saturated pixels.
    """
    fields = _shape(event, camera, motion, tau)
    if event.active:
        grid = camera.grid
        halo = cv2.GaussianBlur(fields[0], (0, 0), grid.g / 8, borderType=cv2.BORDER_REFLECT)
        fields[0] += halo * np.float32(HALO_MEAN / (float(halo[grid.rho < 0.98].mean()) + 1e-6))
    return fields


def _shape(event: NightEvent, camera: NightCamera, motion: Motion, tau: float) -> np.ndarray:
    """The event's form alone (green, red, blue) at ``tau`` s after its start; (3, G, G)."""
    grid, n = camera.grid, camera.raster_n
    rng = np.random.default_rng([event.seed, 0xF0E])  # the same form at every frame
    angle = motion.turn_rad_s * tau
    if event.morphology == "corona":  # drawn in image space: turn the rays on the grid
        fields = np.stack(emission("corona", rng, grid, n))
        g = grid.g
        m = cv2.getRotationMatrix2D(((g - 1) / 2, (g - 1) / 2), math.degrees(angle), 1.0)
        return np.stack(
            [cv2.warpAffine(f, m, (g, g), borderMode=cv2.BORDER_REFLECT) for f in fields]
        )
    density = DENSITIES[event.morphology](rng)
    s = motion.amp_km * (math.sin(2 * math.pi * tau / motion.period_s + motion.phase))
    s -= motion.amp_km * math.sin(motion.phase)  # no jump at the event's first frame
    offset = (s * math.sin(motion.heading), s * math.cos(motion.heading))
    moved = _moved(density, offset, angle)
    return np.stack(_integrate(moved, grid, n, rng, thin=event.morphology == "patchy"))


@lru_cache(maxsize=8)
def _exposed(camera: NightCamera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The night's fixed exposure (read-only arrays).

    Returns:
        ``(unit, sky, throughput)``: the light reaching the sensor from a unit auroral
        radiance (G, G, 3), from the sky background (G, G, 3), and the star throughput (G, G).
    """
    grid = camera.grid
    sky = _background(np.random.default_rng([camera.seed, 0xB6]), grid)
    ones, zeros = np.ones_like(grid.rho), np.zeros_like(sky)
    exposure = lambda: np.random.default_rng([camera.seed, 0xE8])  # noqa: E731
    unit, _ = _exposure(exposure(), grid, np.ones_like(sky), zeros, None, ones)
    sky_light, throughput = _exposure(exposure(), grid, zeros, sky, None, ones)
    return unit, sky_light, throughput


def _scale_for(target: float, light: np.ndarray, sky: np.ndarray) -> float:
    """Factor ``s`` so that ``tone(s * light + sky)`` exceeds ``tone(sky)`` by ``target`` on
    average (bisection in log s within [1e-3, 100]; the bound if out of reach); (M, 3) arrays.
    """
    base = float(tone(sky).mean())
    lo, hi = math.log(1e-3), math.log(100.0)
    for _ in range(30):
        mid = (lo + hi) / 2
        if float(tone(light * np.float32(math.exp(mid)) + sky).mean()) - base < target:
            lo = mid
        else:
            hi = mid
    return math.exp((lo + hi) / 2)


def _aurora(
    event: NightEvent, camera: NightCamera, tau: float, frac: float, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """Light of the aurora on the sensor for one frame (G, G, 3) and its level (jittered).

    The form is scaled so that it adds ``DISPLAY_PER_LEVEL * level`` to the mean display
    value over the sky disc (camera tone curve and background included): the frame's
    brightness follows the level whatever the form (a broad diffuse glow is faint, a thin
    arc bright), so the sky brightens at onsets and not at every change of form.
    """
    motion = event_motion(event)
    green, red, blue = _form(event, camera, motion, tau)
    c = np.random.default_rng([event.seed, 0xC010])  # the event's colour
    red_ratio = math.exp(float(c.uniform(math.log(0.05), math.log(0.7))))
    blue_ratio = float(c.uniform(0.0, 0.15))
    level = event_level(event, frac) * math.exp(float(rng.normal(0.0, motion.jitter)))
    aur = (
        green[..., None] * GREEN
        + (red_ratio * red)[..., None] * RED
        + (blue_ratio * min(level, 1.0) * blue)[..., None] * BLUE
    )
    if motion.flicker > 0:
        g = camera.grid.g
        field = 1.0 + motion.flicker * smooth_noise(rng, g, g / 10)
        aur *= np.clip(field, 0.1, None)[..., None]
    unit, sky, _ = _exposed(camera)
    light = aur * unit
    disc = camera.grid.rho < 0.98
    scale = _scale_for(DISPLAY_PER_LEVEL * level, light[disc], sky[disc])
    return (light * np.float32(scale)).astype(np.float32), level


def render_night_frame(
    camera: NightCamera, event: NightEvent, slot: int, when: datetime, cadence_s: int
) -> tuple[np.ndarray, float]:
    """One frame of the night.

    Args:
        camera: the night's camera.
        event: the event the frame belongs to (``event.first <= slot < event.stop``).
        slot: the frame's slot in the night (decides its noise and flicker).
        when: the frame's UTC time (printed in the caption).
        cadence_s: seconds between slots.

    Returns:
        ``(image, level)``: RGB uint8 of shape (size, size, 3) and the auroral level drawn.
    """
    circle, s = camera.circle, camera.size
    rng = np.random.default_rng([camera.seed, 0xF4A3E, slot])
    tau = (slot - event.first) * cadence_s
    frac = (slot - event.first) / (event.stop - event.first)
    aur_light, level = _aurora(event, camera, tau, frac, rng)
    _, sky_light, throughput = _exposed(camera)
    disp = warp(tone(aur_light + sky_light), circle, s)
    add_stars(disp, np.random.default_rng([camera.seed, 0x57A2]), circle, throughput)
    img = read_out(disp, rng, circle)
    draw_caption(img, when)
    return img, level
