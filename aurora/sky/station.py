"""Stations and their cameras: where a camera stands and how its image maps onto the sky.

Conventions (image pixels: x to the right, y down, pixel centres at integers, 0-based):

- ``north_deg``: the angle on the displayed image from image-up to the direction of north,
  measured clockwise (towards image-right). 0: north is up; 90: north points to the right.
- ``mirrored``: False for the sky as seen from below (a plain photograph of the sky): with
  north up, east is on the LEFT (east is 90 degrees counter-clockwise from north on the
  image). True when the image is mirrored (east on the right when north is up).
- ``zenith``: the zenith pixel ``(x, y)`` in original pixels, or None for the centre of the
  sky circle the preprocessing detects.
- ``horizon_radius``: the radius in pixels of the circle that ``fov_deg / 2`` zenith angle
  maps to, or None for the detected circle's radius.
- ``projection``: ``"equidistant"`` (radius proportional to zenith angle, ``fov_deg`` across
  the horizon circle) or ``"table"`` (a calibration table of zenith angle against radius in
  original pixels, linearly interpolated; a CSV file with columns ``zenith_deg,radius_px`` or
  the two columns given inline).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

PROJECTIONS = ("equidistant", "table")


def _tuple_or_none(value: Sequence[float] | None, n: int | None, what: str) -> tuple | None:
    """``value`` as a tuple of floats (Hydra hands lists as ListConfig), or None."""
    if value is None:
        return None
    out = tuple(float(v) for v in value)
    if n is not None and len(out) != n:
        raise ValueError(f"{what} must have {n} numbers, got {len(out)}")
    return out


def _read_table(path: str | Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The two columns of a calibration CSV (``zenith_deg,radius_px``)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"camera calibration table not found: {p}")
    with p.open(newline="") as f:
        rows = list(csv.DictReader(f))
    try:
        return (
            tuple(float(r["zenith_deg"]) for r in rows),
            tuple(float(r["radius_px"]) for r in rows),
        )
    except (KeyError, ValueError) as err:
        raise ValueError(
            f"camera calibration table {p} needs numeric columns zenith_deg,radius_px"
        ) from err


@dataclass(frozen=True)
class Camera:
    """An all-sky camera's image geometry (see the module docstring for the conventions).

    Attributes:
        north_deg: angle from image-up to north, clockwise on the image, degrees.
        mirrored: east on the right when north is up (False: the usual view from below).
        zenith: zenith pixel (x, y), original pixels, or None (the detected circle's centre).
        horizon_radius: pixels from the zenith to zenith angle ``fov_deg / 2``, or None (the
            detected circle's radius).
        projection: ``"equidistant"`` or ``"table"``.
        fov_deg: full field of view across the horizon circle (equidistant), in (0, 360].
        table: path of a ``zenith_deg,radius_px`` CSV (projection ``"table"``), or None.
        table_zenith_deg: the table's zenith angles inline (increasing), when no file.
        table_radius_px: the table's radii in original pixels (increasing), when no file.
    """

    north_deg: float = 0.0
    mirrored: bool = False
    zenith: tuple[float, float] | None = None
    horizon_radius: float | None = None
    projection: str = "equidistant"
    fov_deg: float = 180.0
    table: str | None = None
    table_zenith_deg: tuple[float, ...] | None = field(default=None)
    table_radius_px: tuple[float, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "north_deg", float(self.north_deg))
        set_(self, "mirrored", bool(self.mirrored))
        set_(self, "zenith", _tuple_or_none(self.zenith, 2, "camera zenith (x, y)"))
        if not math.isfinite(self.north_deg):
            raise ValueError(f"camera north_deg must be finite, got {self.north_deg}")
        if self.zenith is not None and not all(math.isfinite(v) for v in self.zenith):
            raise ValueError(f"camera zenith must be finite, got {self.zenith}")
        if self.horizon_radius is not None:
            set_(self, "horizon_radius", float(self.horizon_radius))
            if not (math.isfinite(self.horizon_radius) and self.horizon_radius > 0):
                raise ValueError(
                    f"camera horizon_radius must be > 0 pixels, got {self.horizon_radius}"
                )
        if self.projection not in PROJECTIONS:
            raise ValueError(
                f"camera projection must be one of {PROJECTIONS}, got {self.projection!r}"
            )
        set_(self, "fov_deg", float(self.fov_deg))
        if not 0.0 < self.fov_deg <= 360.0:
            raise ValueError(f"camera fov_deg must be in (0, 360], got {self.fov_deg}")
        if self.projection == "table":
            self._init_table()

    def _init_table(self) -> None:
        if self.table is not None:
            zen, rad = _read_table(self.table)
        else:
            zen = _tuple_or_none(self.table_zenith_deg, None, "table_zenith_deg")
            rad = _tuple_or_none(self.table_radius_px, None, "table_radius_px")
            if zen is None or rad is None:
                raise ValueError("camera projection 'table' needs `table` or both table columns")
        if len(zen) != len(rad) or len(zen) < 2:
            raise ValueError("camera calibration table needs >= 2 rows of equal length")
        if any(b <= a for a, b in zip(zen, zen[1:], strict=False)) or any(
            b <= a for a, b in zip(rad, rad[1:], strict=False)
        ):
            raise ValueError("camera calibration table must increase in zenith_deg and radius_px")
        if zen[0] < 0 or zen[-1] > 180 or rad[0] < 0:
            raise ValueError("camera calibration table: zenith_deg in [0, 180], radius_px >= 0")
        object.__setattr__(self, "table_zenith_deg", zen)
        object.__setattr__(self, "table_radius_px", rad)

    @property
    def max_zenith_deg(self) -> float:
        """Largest zenith angle the camera sees (the edge of its field)."""
        if self.projection == "table":
            assert self.table_zenith_deg is not None
            return self.table_zenith_deg[-1]
        return self.fov_deg / 2.0


@dataclass(frozen=True)
class Station:
    """Where a camera stands.

    Attributes:
        name: short identifier (the config entry's name, e.g. ``themis_gill``).
        latitude: geodetic latitude, degrees north, in [-90, 90].
        longitude: degrees east, in [-180, 360).
        altitude_m: height above the WGS84 ellipsoid (or sea level), metres.
        camera: the camera's geometry.
        clear_sky_stars: stars a clear dark sky of this camera shows (the cloud score's
            reference, :mod:`aurora.sky.cloud`), or None to take it from the run's frames.
    """

    name: str
    latitude: float
    longitude: float
    altitude_m: float = 0.0
    camera: Camera = field(default_factory=Camera)
    clear_sky_stars: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("station name must be a non-empty string")
        for attr in ("latitude", "longitude", "altitude_m"):
            object.__setattr__(self, attr, float(getattr(self, attr)))
        if not -90.0 <= self.latitude <= 90.0:
            raise ValueError(f"station latitude must be in [-90, 90], got {self.latitude}")
        if not -180.0 <= self.longitude < 360.0:
            raise ValueError(f"station longitude must be in [-180, 360), got {self.longitude}")
        if not -500.0 <= self.altitude_m <= 10000.0:
            raise ValueError(f"station altitude_m must be in [-500, 10000], got {self.altitude_m}")
        if not isinstance(self.camera, Camera):
            raise ValueError(f"station camera must be a Camera, got {type(self.camera).__name__}")
        if self.clear_sky_stars is not None:
            object.__setattr__(self, "clear_sky_stars", float(self.clear_sky_stars))
            if not self.clear_sky_stars > 0:
                raise ValueError(f"station clear_sky_stars must be > 0, got {self.clear_sky_stars}")
