"""Per-frame screening flags from the Sun, the Moon and the stars.

Flags (0/1 per frame):

- ``daylight``: the Sun is above ``daylight_deg`` (default -6: civil twilight and brighter).
- ``twilight``: the Sun is between ``twilight_deg`` and ``daylight_deg`` (default -12..-6:
  nautical twilight, the sky still visibly lit).
- ``moon``: the ephemeris puts the Moon in the camera's field of view AND a bright spot found
  in the pixels (the Moon detector's Moon, its edge glare, or the brightest point of the sky,
  :mod:`aurora.sky.spot`) lies on the sky within ``moon_tolerance_deg`` (plus the spot's own
  angular radius) of the predicted place.
- ``glare``: the detector found a Moon or edge glare that is not the Moon: the ephemeris puts
  the Moon below the field of view or far from it.
- ``cloud``: the cloud score (:mod:`aurora.sky.cloud`) is above ``cloud_threshold``.

Without a time (a frame) or a station (the run), the ephemeris columns are NaN, ``daylight``
and ``twilight`` are 0, ``moon`` is the pixel detector's Moon alone and ``glare`` its edge glare
(the behaviour before the ephemeris), and :attr:`Screening.missing` says what was missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from aurora.sky.camera import (
    _zenith_angle,
    angular_distance,
    geometry,
    pixel_to_sky,
    sky_to_pixel,
)
from aurora.sky.ephemeris import SunMoon, sun_moon, to_datetime64
from aurora.sky.station import Station

FLAGS = ("daylight", "twilight", "moon", "glare", "cloud")


@dataclass(frozen=True)
class ScreenSettings:
    """Thresholds of the screening flags.

    Attributes:
        daylight_deg: Sun elevation above which a frame is daylight (degrees).
        twilight_deg: Sun elevation above which (up to ``daylight_deg``) it is twilight.
        moon_tolerance_deg: largest angle on the sky between the predicted Moon and the edge
            of a detected spot that still confirms it. The default, 10 degrees, allows for a
            nominal camera model (orientation to a few degrees, an ideal lens) and for the
            centroid of a glow that the horizon cuts.
        cloud_threshold: cloud score above which a frame is cloudy, in [0, 1].
    """

    daylight_deg: float = -6.0
    twilight_deg: float = -12.0
    moon_tolerance_deg: float = 10.0
    cloud_threshold: float = 0.5

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, float(getattr(self, f.name)))
            if not math.isfinite(getattr(self, f.name)):
                raise ValueError(f"screen {f.name} must be finite")
        if not -90.0 <= self.twilight_deg <= self.daylight_deg <= 90.0:
            raise ValueError(
                "screen thresholds need -90 <= twilight_deg <= daylight_deg <= 90, got "
                f"{self.twilight_deg} and {self.daylight_deg}"
            )
        if not 0.0 < self.moon_tolerance_deg <= 90.0:
            raise ValueError(
                f"screen moon_tolerance_deg must be in (0, 90], got {self.moon_tolerance_deg}"
            )
        if not 0.0 <= self.cloud_threshold <= 1.0:
            raise ValueError(
                f"screen cloud_threshold must be in [0, 1], got {self.cloud_threshold}"
            )


@dataclass(frozen=True)
class Screening:
    """Flags and the numbers behind them, (N,) each; ``missing`` names what was missing
    (one line, for the log), or None.

    Flags are uint8 0/1; the rest float64 (NaN where unknown). ``moon_x``/``moon_y``: the
    predicted Moon in original pixels; ``moon_separation_deg``: the angle from the predicted
    Moon to the nearest detected spot's edge.
    """

    daylight: np.ndarray
    twilight: np.ndarray
    moon: np.ndarray
    glare: np.ndarray
    cloud: np.ndarray
    sun_elevation: np.ndarray
    moon_elevation: np.ndarray
    moon_azimuth: np.ndarray
    moon_illumination: np.ndarray
    moon_x: np.ndarray
    moon_y: np.ndarray
    moon_separation_deg: np.ndarray
    cloud_score: np.ndarray
    missing: str | None = None

    def columns(self) -> dict[str, np.ndarray]:
        """The per-frame columns in order (flags, then the numbers), for ``screen.csv``."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "missing"}


def _spot_separation(
    xyr: np.ndarray, pred_az: np.ndarray, pred_el: np.ndarray, station: Station, circle: np.ndarray
) -> np.ndarray:
    """(N,) angle from the predicted Moon to the edge of each frame's spot (NaN if none)."""
    x, y, r = xyr[:, 0], xyr[:, 1], np.nan_to_num(xyr[:, 2], nan=0.0)
    cam = station.camera
    az, el = pixel_to_sky(x, y, camera=cam, circle=circle)
    centre = angular_distance(az, el, pred_az, pred_el)
    # The spot's angular radius: its pixel radius times the lens's radial degrees per pixel there.
    zx, zy, horizon = geometry(cam, circle)
    rho = np.hypot(x - zx, y - zy)
    deg_per_px = np.abs(
        _zenith_angle(rho + 0.5, cam, horizon) - _zenith_angle(rho - 0.5, cam, horizon)
    )
    return np.maximum(centre - r * np.nan_to_num(deg_per_px, nan=0.0), 0.0)


def _moon_flags(
    sm: SunMoon,
    *,
    station: Station,
    circle: np.ndarray,
    spots: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(in field of view, separation, predicted x, predicted y) per frame."""
    cam = station.camera
    in_fov = sm.moon_elevation > 90.0 - cam.max_zenith_deg
    px, py = sky_to_pixel(sm.moon_azimuth, sm.moon_elevation, camera=cam, circle=circle)
    sep = np.full(len(circle), np.nan)
    for present, xyr in spots:
        s = _spot_separation(xyr, sm.moon_azimuth, sm.moon_elevation, station, circle)
        s = np.where(present, s, np.nan)
        sep = np.fmin(sep, s)
    return in_fov, sep, np.where(np.isfinite(sm.moon_elevation), px, np.nan), py


def _inputs(
    times: np.ndarray | None,
    circle: np.ndarray,
    moon: np.ndarray,
    moon_xyr: np.ndarray,
    glare: np.ndarray,
    glare_xyr: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """The inputs as arrays of one row per frame (checked)."""
    circle = np.asarray(circle, np.float64).reshape(-1, 3)
    n = len(circle)
    moon, glare = np.asarray(moon, bool), np.asarray(glare, bool)
    if times is None:
        t64 = np.full(n, np.datetime64("NaT"), "datetime64[ns]")
    else:
        t64 = to_datetime64(times)
    if len(t64) != n or len(moon) != n or len(glare) != n:
        raise ValueError("screen_frames: times, circle, moon and glare must have one row per frame")
    moon_xyr = np.asarray(moon_xyr, np.float64).reshape(n, 3)
    glare_xyr = np.asarray(glare_xyr, np.float64).reshape(n, 3)
    return circle, t64, moon, moon_xyr, glare, glare_xyr


def _missing(station: Station | None, t64: np.ndarray) -> str | None:
    """One line on what the ephemeris lacks, or None."""
    missing = []
    if station is None:
        missing.append("no station (set data.station=NAME): no Sun/Moon, Moon from pixels only")
    if np.isnat(t64).any():
        k = int(np.isnat(t64).sum())
        missing.append(f"no time for {k} of {len(t64)} frames: no Sun/Moon for them")
    return "; ".join(missing) or None


def screen_frames(
    *,
    times: np.ndarray | None,
    station: Station | None,
    circle: np.ndarray,
    moon: np.ndarray,
    moon_xyr: np.ndarray,
    glare: np.ndarray,
    glare_xyr: np.ndarray,
    bright_xy: np.ndarray | None = None,
    cloud_score: np.ndarray | None = None,
    settings: ScreenSettings | None = None,
) -> Screening:
    """Screening flags for N frames.

    Args:
        times: (N,) UTC times (datetime64 or datetimes; NaT/None where unknown), or None.
        station: the station, or None.
        circle: (N, 3) sky circle (cx, cy, r) per frame, original pixels.
        moon, moon_xyr: (N,) bool and (N, 3) the Moon detector's Moon (NaN when absent).
        glare, glare_xyr: (N,) bool and (N, 3) its edge glare.
        bright_xy: (N, 2) brightest point of each frame's sky (:func:`~aurora.sky.spot.
            brightest_spot`), used only to confirm a predicted Moon; or None.
        cloud_score: (N,) cloud scores (NaN: not scored), or None.
        settings: thresholds (defaults when None).

    Returns:
        :class:`Screening`.
    """
    s = settings or ScreenSettings()
    circle, t64, moon, moon_xyr, glare, glare_xyr = _inputs(
        times, circle, moon, moon_xyr, glare, glare_xyr
    )
    n = len(circle)
    missing = _missing(station, t64)
    if station is None:
        sm = SunMoon.missing(n)
    else:
        sm = sun_moon(
            t64,
            latitude=station.latitude,
            longitude=station.longitude,
            altitude_m=station.altitude_m,
        )
    known = np.isfinite(sm.moon_elevation)
    spots = [(moon, moon_xyr), (glare, glare_xyr)]
    if bright_xy is not None:
        b = np.asarray(bright_xy, np.float64).reshape(n, 2)
        spots.append((np.isfinite(b).all(axis=1), np.column_stack([b, np.zeros(n)])))
    if station is None:
        in_fov = np.zeros(n, bool)
        sep = px = py = np.full(n, np.nan)
    else:
        in_fov, sep, px, py = _moon_flags(sm, station=station, circle=circle, spots=spots)
    moon_flag = np.where(known, in_fov & (sep <= s.moon_tolerance_deg), moon)
    detected = moon | glare
    glare_flag = np.where(known, detected & ~moon_flag, glare & ~moon)
    sun = sm.sun_elevation
    score = np.full(n, np.nan) if cloud_score is None else np.asarray(cloud_score, np.float64)
    u8 = lambda a: np.asarray(a, bool).astype(np.uint8)  # noqa: E731
    return Screening(
        daylight=u8(np.nan_to_num(sun, nan=-90.0) > s.daylight_deg),
        twilight=u8((np.nan_to_num(sun, nan=-90.0) > s.twilight_deg) & ~(sun > s.daylight_deg)),
        moon=u8(moon_flag),
        glare=u8(glare_flag),
        cloud=u8(np.nan_to_num(score, nan=0.0) > s.cloud_threshold),
        sun_elevation=sun,
        moon_elevation=sm.moon_elevation,
        moon_azimuth=sm.moon_azimuth,
        moon_illumination=sm.moon_illumination,
        moon_x=np.asarray(px, np.float64),
        moon_y=np.where(known, np.asarray(py, np.float64), np.nan),
        moon_separation_deg=np.where(known, sep, np.nan),
        cloud_score=score,
        missing=missing,
    )
