"""The Sun and the Moon seen from a station, per frame, offline.

Positions come from skyfield with the JPL DE421 ephemeris (1900-2050) shipped by the
``skyfield-data`` package, and skyfield's own built-in UTC/leap-second and Delta T tables
(``timescale(builtin=True)``): nothing is downloaded, ever. The loader points at the
package's data folder with ``expire=False``, so an old bundled file is used as it is rather
than refreshed. Elevations are geometric (no atmospheric refraction: near the horizon the
apparent Moon is up to ~0.6 degrees higher), topocentric, from the WGS84 position.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import numpy as np

#: The bundled planetary ephemeris file (in skyfield-data's data folder).
EPHEMERIS_FILE = "de421.bsp"


@dataclass(frozen=True)
class SunMoon:
    """Sun and Moon per frame, (N,) float64 each, NaN where the frame has no time.

    Attributes:
        sun_elevation: degrees above the horizon.
        sun_azimuth: degrees from north through east.
        moon_elevation: degrees above the horizon.
        moon_azimuth: degrees from north through east.
        moon_illumination: illuminated fraction of the Moon's disc, [0, 1].
    """

    sun_elevation: np.ndarray
    sun_azimuth: np.ndarray
    moon_elevation: np.ndarray
    moon_azimuth: np.ndarray
    moon_illumination: np.ndarray

    @classmethod
    def missing(cls, n: int) -> SunMoon:
        """All NaN: no time or no station."""
        nan = np.full(n, np.nan)
        return cls(nan, nan.copy(), nan.copy(), nan.copy(), nan.copy())


def data_dir() -> str:
    """skyfield-data's folder of bundled files (read without its expiry check, which warns
    about a file aurora does not use)."""
    return str(importlib.resources.files("skyfield_data") / "data")


@lru_cache(maxsize=1)
def _load() -> tuple[Any, Any]:
    """(timescale, ephemeris), loaded once from the bundled files."""
    from skyfield.api import Loader

    load = Loader(data_dir(), verbose=False, expire=False)
    return load.timescale(builtin=True), load(EPHEMERIS_FILE)


def to_datetime64(times: Any) -> np.ndarray:
    """(N,) datetime64[ns] UTC from datetimes (naive = UTC), datetime64 or None/NaT."""
    if isinstance(times, np.ndarray) and np.issubdtype(times.dtype, np.datetime64):
        return times.astype("datetime64[ns]")
    out = np.empty(len(times), dtype="datetime64[ns]")
    for i, t in enumerate(times):
        if t is None:
            out[i] = np.datetime64("NaT")
        elif isinstance(t, datetime):
            if t.tzinfo is not None:
                t = t.astimezone(UTC).replace(tzinfo=None)
            out[i] = np.datetime64(t, "ns")
        else:
            out[i] = np.datetime64(t, "ns")
    return out


def sun_moon(times: Any, *, latitude: float, longitude: float, altitude_m: float = 0.0) -> SunMoon:
    """Sun and Moon positions seen from a place at each time, vectorised.

    Args:
        times: (N,) UTC times (datetime64, or datetimes with naive meaning UTC; NaT/None for a
            frame without a time).
        latitude: degrees north.
        longitude: degrees east.
        altitude_m: metres.

    Returns:
        :class:`SunMoon` with (N,) arrays.
    """
    from skyfield import almanac
    from skyfield.api import wgs84

    t64 = to_datetime64(times)
    n = len(t64)
    result = SunMoon.missing(n)
    ok = ~np.isnat(t64)
    if not ok.any():
        return result
    ts, eph = _load()
    ns = t64[ok].astype(np.int64)
    day_ns = 86_400 * 10**9
    days = ns // day_ns  # whole UTC days since 1970-01-01, then seconds into the day:
    secs = (ns - days * day_ns) / 1e9  # leap seconds then belong to the right day
    t = ts.utc(1970, 1, 1 + days, 0, 0, secs)
    here = eph["earth"] + wgs84.latlon(latitude, longitude, elevation_m=altitude_m)
    for body, el_out, az_out in (
        ("sun", result.sun_elevation, result.sun_azimuth),
        ("moon", result.moon_elevation, result.moon_azimuth),
    ):
        alt, az, _ = here.at(t).observe(eph[body]).apparent().altaz()
        el_out[ok], az_out[ok] = alt.degrees, az.degrees
    result.moon_illumination[ok] = almanac.fraction_illuminated(eph, "moon", t)
    return result
