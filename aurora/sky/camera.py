"""From the sky to the image and back: azimuth and elevation against pixels of a camera.

Azimuth is measured from north through east (degrees, [0, 360)); elevation above the
horizon (degrees). Pixels follow :mod:`aurora.sky.station`: x right, y down, 0-based, pixel
centres at integers. ``circle`` is the sky circle the preprocessing found, ``(cx, cy, r)`` in
original pixels (a ``SkyCircle``, a 3-sequence, or an (N, 3) array for one circle per frame);
it stands in for the zenith and the horizon radius the camera leaves as None.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aurora.sky.station import Camera

Circle = Any  # SkyCircle-like (cx, cy, r attributes), a 3-sequence, an (N, 3) array, or None


def _circle_array(circle: Circle) -> np.ndarray | None:
    if circle is None:
        return None
    if all(hasattr(circle, a) for a in ("cx", "cy", "r")):
        return np.array([circle.cx, circle.cy, circle.r], dtype=np.float64)
    arr = np.asarray(circle, dtype=np.float64)
    if arr.shape[-1] != 3:
        raise ValueError(f"circle must be (cx, cy, r) or (N, 3), got shape {arr.shape}")
    return arr


def geometry(camera: Camera, circle: Circle) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zenith pixel and horizon radius: the camera's own, else the detected circle's.

    Returns:
        (zx, zy, radius), each a float64 array (scalar, or (N,) for an (N, 3) circle).
    """
    c = _circle_array(circle)
    if (camera.zenith is None or camera.horizon_radius is None) and c is None:
        raise ValueError("camera has no zenith/horizon radius of its own: pass the sky circle")
    zx = np.asarray(camera.zenith[0] if camera.zenith is not None else c[..., 0], np.float64)
    zy = np.asarray(camera.zenith[1] if camera.zenith is not None else c[..., 1], np.float64)
    rad = camera.horizon_radius if camera.horizon_radius is not None else c[..., 2]
    return zx, zy, np.asarray(rad, np.float64)


def _radius(zenith_deg: np.ndarray, camera: Camera, horizon: np.ndarray) -> np.ndarray:
    """Pixels from the zenith at ``zenith_deg`` (NaN beyond a calibration table)."""
    if camera.projection == "table":
        zt, rt = np.asarray(camera.table_zenith_deg), np.asarray(camera.table_radius_px)
        return np.interp(zenith_deg, zt, rt, left=np.nan, right=np.nan)
    return horizon * zenith_deg / (camera.fov_deg / 2.0)


def _zenith_angle(radius: np.ndarray, camera: Camera, horizon: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_radius`."""
    if camera.projection == "table":
        zt, rt = np.asarray(camera.table_zenith_deg), np.asarray(camera.table_radius_px)
        return np.interp(radius, rt, zt, left=np.nan, right=np.nan)
    return radius / horizon * (camera.fov_deg / 2.0)


def _phase(azimuth_deg: np.ndarray, camera: Camera) -> np.ndarray:
    """Angle on the image, clockwise from image-up, of the direction ``azimuth_deg``."""
    sign = 1.0 if camera.mirrored else -1.0
    return np.deg2rad(camera.north_deg + sign * np.asarray(azimuth_deg, np.float64))


def sky_to_pixel(
    azimuth_deg: np.ndarray | float,
    elevation_deg: np.ndarray | float,
    *,
    camera: Camera,
    circle: Circle = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Image pixel of a direction on the sky.

    Args:
        azimuth_deg: (N,) or scalar azimuth, degrees from north through east.
        elevation_deg: (N,) or scalar elevation, degrees.
        camera: the camera model.
        circle: the detected sky circle (needed when the camera leaves zenith or radius None).

    Returns:
        (x, y) float64 arrays of the broadcast shape; an equidistant lens extrapolates below
        its horizon (so callers can test whether a direction is in the image), a table gives
        NaN outside its range.
    """
    zx, zy, horizon = geometry(camera, circle)
    r = _radius(90.0 - np.asarray(elevation_deg, np.float64), camera, horizon)
    phi = _phase(azimuth_deg, camera)
    return zx + r * np.sin(phi), zy - r * np.cos(phi)


def pixel_to_sky(
    x: np.ndarray | float, y: np.ndarray | float, *, camera: Camera, circle: Circle = None
) -> tuple[np.ndarray, np.ndarray]:
    """Direction on the sky of an image pixel (the exact inverse of :func:`sky_to_pixel`).

    Returns:
        (azimuth_deg in [0, 360), elevation_deg) float64 arrays; at the zenith pixel itself
        the azimuth is that of image-up.
    """
    zx, zy, horizon = geometry(camera, circle)
    dx, dy = np.asarray(x, np.float64) - zx, np.asarray(y, np.float64) - zy
    phi = np.rad2deg(np.arctan2(dx, -dy))
    sign = 1.0 if camera.mirrored else -1.0
    az = np.mod(sign * (phi - camera.north_deg), 360.0)
    el = 90.0 - _zenith_angle(np.hypot(dx, dy), camera, horizon)
    return az, el


def angular_distance(
    az1_deg: np.ndarray | float,
    el1_deg: np.ndarray | float,
    az2_deg: np.ndarray | float,
    el2_deg: np.ndarray | float,
) -> np.ndarray:
    """Great-circle angle between two directions (degrees; haversine, accurate at 0 and 180)."""
    a1, e1 = np.deg2rad(az1_deg), np.deg2rad(el1_deg)
    a2, e2 = np.deg2rad(az2_deg), np.deg2rad(el2_deg)
    h = np.sin((e2 - e1) / 2) ** 2 + np.cos(e1) * np.cos(e2) * np.sin((a2 - a1) / 2) ** 2
    return np.rad2deg(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))


def meridian_pixels(
    camera: Camera, circle: Circle, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """The image pixels along the north-south meridian through the zenith, north first.

    The line through the zenith pixel along the image direction of north is sampled once per
    pixel along its steeper image axis and rounded to the nearest pixel (halves up). For a
    north-up camera (``north_deg`` 0) this is every row 0..H-1 at column round(zenith x).

    Args:
        camera: the camera model.
        circle: one sky circle (cx, cy, r) (or None when the camera gives its zenith).
        shape: the image shape (H, W, ...).

    Returns:
        (rows, cols) int64 arrays of equal length, ordered from north to south.
    """
    h, w = int(shape[0]), int(shape[1])
    zx, zy, _ = (float(np.ravel(v)[0]) for v in geometry(camera, circle))
    a = np.deg2rad(camera.north_deg)
    sx, sy = -np.sin(a), np.cos(a)  # image direction from north to south
    if abs(sy) >= abs(sx):
        rows = np.arange(h) if sy > 0 else np.arange(h - 1, -1, -1)
        cols = np.floor(zx + (rows - zy) * sx / sy + 0.5).astype(np.int64)
        keep = (cols >= 0) & (cols < w)
    else:
        cols = np.arange(w) if sx > 0 else np.arange(w - 1, -1, -1)
        rows = np.floor(zy + (cols - zx) * sy / sx + 0.5).astype(np.int64)
        keep = (rows >= 0) & (rows < h)
    return rows[keep].astype(np.int64), cols[keep].astype(np.int64)


def sky_mask(
    camera: Camera,
    circle: Circle,
    shape: tuple[int, ...],
    *,
    min_elevation_deg: float | None = None,
) -> np.ndarray:
    """(H, W) bool: pixels strictly inside the horizon circle about the zenith pixel, or, with
    ``min_elevation_deg``, those whose direction is strictly above that elevation."""
    h, w = int(shape[0]), int(shape[1])
    zx, zy, horizon = (float(np.ravel(v)[0]) for v in geometry(camera, circle))
    yy, xx = np.mgrid[0:h, 0:w]
    d2 = (xx - zx) ** 2 + (yy - zy) ** 2
    if min_elevation_deg is None:
        return d2 < horizon**2
    r = float(_radius(np.asarray(90.0 - min_elevation_deg), camera, np.asarray(horizon)))
    if not np.isfinite(r):
        raise ValueError(f"min_elevation_deg {min_elevation_deg} is outside the camera's table")
    return d2 < r**2
