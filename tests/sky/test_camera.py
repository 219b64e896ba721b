"""aurora.sky.camera: pixel <-> sky round trips, known directions, the meridian, the sky mask."""

from __future__ import annotations

import numpy as np
import pytest

from aurora.sky.camera import (
    angular_distance,
    meridian_pixels,
    pixel_to_sky,
    sky_mask,
    sky_to_pixel,
)
from aurora.sky.station import Camera

CIRCLE = (40.0, 38.0, 30.0)  # cx, cy, r


@pytest.mark.parametrize(
    "camera",
    [
        Camera(),
        Camera(north_deg=-28.2, fov_deg=166.9),
        Camera(north_deg=135.0, mirrored=True, zenith=(41.5, 36.0), horizon_radius=28.0),
        Camera(
            projection="table",
            table_zenith_deg=(0.0, 30.0, 60.0, 95.0),
            table_radius_px=(0.0, 9.0, 19.0, 33.0),
        ),
    ],
)
def test_round_trip(camera: Camera) -> None:
    rng = np.random.default_rng(0)
    az = rng.uniform(0, 360, 200)
    el = rng.uniform(1, 89, 200)
    x, y = sky_to_pixel(az, el, camera=camera, circle=CIRCLE)
    az2, el2 = pixel_to_sky(x, y, camera=camera, circle=CIRCLE)
    assert np.allclose(el2, el, atol=1e-9)
    assert np.allclose(angular_distance(az, el, az2, el2), 0.0, atol=1e-6)
    # and pixel -> sky -> pixel
    px = rng.uniform(20, 60, 100)
    py = rng.uniform(20, 56, 100)
    a, e = pixel_to_sky(px, py, camera=camera, circle=CIRCLE)
    qx, qy = sky_to_pixel(a, e, camera=camera, circle=CIRCLE)
    assert np.allclose(qx, px, atol=1e-9) and np.allclose(qy, py, atol=1e-9)


def test_known_directions_north_up() -> None:
    cam = Camera()  # north up, east left, equidistant 180
    cx, cy, r = CIRCLE
    x, y = sky_to_pixel([0, 90, 180, 270], [0, 0, 0, 0], camera=cam, circle=CIRCLE)
    assert np.allclose(x, [cx, cx - r, cx, cx + r]) and np.allclose(y, [cy - r, cy, cy + r, cy])
    x, y = sky_to_pixel(0.0, 45.0, camera=cam, circle=CIRCLE)  # half way to the horizon
    assert np.isclose(x, cx) and np.isclose(y, cy - r / 2)
    mirrored = Camera(mirrored=True)
    x, _ = sky_to_pixel(90.0, 0.0, camera=mirrored, circle=CIRCLE)
    assert np.isclose(x, cx + r)  # east on the right


def test_north_deg_is_clockwise_from_up() -> None:
    cam = Camera(north_deg=90.0)  # north points to the image's right
    cx, cy, r = CIRCLE
    x, y = sky_to_pixel(0.0, 0.0, camera=cam, circle=CIRCLE)
    assert np.isclose(x, cx + r) and np.isclose(y, cy)
    x, y = sky_to_pixel(90.0, 0.0, camera=cam, circle=CIRCLE)  # east: 90 deg counter-clockwise
    assert np.isclose(x, cx) and np.isclose(y, cy - r)


def test_per_frame_circles_broadcast() -> None:
    circles = np.array([[10.0, 10.0, 5.0], [20.0, 30.0, 10.0]])
    x, y = sky_to_pixel(np.array([0.0, 0.0]), np.array([0.0, 0.0]), camera=Camera(), circle=circles)
    assert np.allclose(x, [10, 20]) and np.allclose(y, [5, 20])


def test_angular_distance_known() -> None:
    assert np.isclose(angular_distance(0, 0, 90, 0), 90.0)
    assert np.isclose(angular_distance(10, 90, 200, 90), 0.0, atol=1e-6)  # the zenith
    assert np.isclose(angular_distance(0, 0, 180, 0), 180.0)
    assert np.isclose(angular_distance(123, 10, 123, 55), 45.0)


def test_meridian_north_up_is_the_zenith_column() -> None:
    cam = Camera(zenith=(219.0, 219.0), horizon_radius=220.0)
    rows, cols = meridian_pixels(cam, None, (440, 440))
    assert np.array_equal(rows, np.arange(440)) and np.all(cols == 219)
    # the detected circle's centre when the camera gives none; rounding halves up
    rows, cols = meridian_pixels(Camera(), (20.5, 30.0, 25.0), (64, 48))
    assert np.array_equal(rows, np.arange(64)) and np.all(cols == 21)


def test_meridian_other_orientations() -> None:
    # north down: bottom row first
    rows, cols = meridian_pixels(Camera(north_deg=180.0), (20.0, 30.0, 25.0), (64, 48))
    assert np.array_equal(rows, np.arange(63, -1, -1)) and np.all(cols == 20)
    # north to the right: the zenith row, right to left
    rows, cols = meridian_pixels(Camera(north_deg=90.0), (20.0, 30.0, 25.0), (64, 48))
    assert np.array_equal(cols, np.arange(47, -1, -1)) and np.all(rows == 30)
    # tilted: every pixel lies within half a pixel of the line through the zenith, north first
    cam = Camera(north_deg=-28.2)
    rows, cols = meridian_pixels(cam, (40.0, 38.0, 30.0), (80, 80))
    a = np.deg2rad(-28.2)
    nx, ny = np.sin(a), -np.cos(a)
    off = (cols - 40.0) * ny - (rows - 38.0) * nx  # distance across the line
    assert np.all(np.abs(off) <= 0.5 + 1e-9)
    along = (cols - 40.0) * nx + (rows - 38.0) * ny
    assert np.all(np.diff(along) < 0)  # north to south


def test_yrs_mask_is_the_matlab_mask() -> None:
    cam = Camera(zenith=(219.0, 219.0), horizon_radius=220.0)
    mask = sky_mask(cam, None, (440, 440))
    # auroralActMonitor.m: (j-220)^2 + (k-220)^2 < 220^2 over 1-based j, k = 1..440
    want = np.zeros((440, 440), bool)
    for j in range(1, 441):
        for k in range(1, 441):
            want[j - 1, k - 1] = (j - 220) ** 2 + (k - 220) ** 2 < 220**2
    assert np.array_equal(mask, want)


def test_sky_mask_elevation() -> None:
    cam = Camera()
    m0 = sky_mask(cam, CIRCLE, (80, 80))
    m30 = sky_mask(cam, CIRCLE, (80, 80), min_elevation_deg=30.0)
    assert m30.sum() < m0.sum() and not (m30 & ~m0).any()
    yy, xx = np.nonzero(m30)
    _, el = pixel_to_sky(xx, yy, camera=cam, circle=CIRCLE)
    assert el.min() > 30.0


def test_needs_a_circle() -> None:
    with pytest.raises(ValueError, match="pass the sky circle"):
        sky_to_pixel(0.0, 10.0, camera=Camera())
