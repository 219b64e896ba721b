"""aurora.sky.screen: the flags' logic on known cases."""

from __future__ import annotations

import numpy as np
import pytest

from aurora.sky.camera import sky_to_pixel
from aurora.sky.ephemeris import sun_moon
from aurora.sky.screen import ScreenSettings, screen_frames
from aurora.sky.station import Camera, Station

GILL = Station("themis_gill", 56.3539, -94.6557, 0.0, Camera())
YRS = Station("yrs", 78.9167, 11.9333, 0.0, Camera(zenith=(219.0, 219.0), horizon_radius=220.0))
T_GILL = np.array(["2014-03-10T06:00:00"] * 3, dtype="datetime64[ns]")  # Moon 28 deg up, az 259
T_YRS = np.array(["2003-12-21T08:00:00"] * 2, dtype="datetime64[ns]")  # Moon below the horizon
CIRC = np.array([[128.0, 128.0, 128.0]] * 3)
NAN3 = np.full((3, 3), np.nan)


def _no_spots(n: int) -> dict:
    return {
        "moon": np.zeros(n, bool),
        "moon_xyr": np.full((n, 3), np.nan),
        "glare": np.zeros(n, bool),
        "glare_xyr": np.full((n, 3), np.nan),
    }


def test_moon_confirmed_near_prediction_only() -> None:
    sm = sun_moon(T_GILL[:1], latitude=GILL.latitude, longitude=GILL.longitude)
    px, py = sky_to_pixel(sm.moon_azimuth, sm.moon_elevation, camera=GILL.camera, circle=CIRC[0])
    bright = np.array([[px[0] + 2, py[0]], [256 - px[0], 256 - py[0]], [np.nan, np.nan]])
    s = screen_frames(times=T_GILL, station=GILL, circle=CIRC, bright_xy=bright, **_no_spots(3))
    assert s.moon.tolist() == [1, 0, 0]  # at the prediction; on the far side; no spot
    assert s.glare.tolist() == [0, 0, 0]  # the brightest point never makes glare
    assert s.moon_separation_deg[0] < 2.0 and s.moon_separation_deg[1] > 90
    assert np.allclose(s.moon_x, px[0]) and np.allclose(s.moon_y, py[0])
    assert s.missing is None
    assert np.allclose(s.moon_illumination, 0.66, atol=0.01)


def test_glare_spot_radius_counts() -> None:
    sm = sun_moon(T_GILL[:1], latitude=GILL.latitude, longitude=GILL.longitude)
    px, py = sky_to_pixel(sm.moon_azimuth, sm.moon_elevation, camera=GILL.camera, circle=CIRC[0])
    spots = _no_spots(3)
    spots["glare"][:2] = True
    # centre 30 px (~21 deg) from the prediction: too far with r = 5, covers it with r = 25
    spots["glare_xyr"][:2] = [[px[0], py[0] + 30, 5.0], [px[0], py[0] + 30, 25.0]]
    s = screen_frames(times=T_GILL, station=GILL, circle=CIRC, **spots)
    assert s.moon.tolist() == [0, 1, 0]
    assert s.glare.tolist() == [1, 0, 0]


def test_moon_below_horizon_is_glare() -> None:
    spots = _no_spots(2)
    spots["moon"][0] = True
    spots["moon_xyr"][0] = [219.0, 100.0, 4.0]
    circ = np.array([[219.5, 219.5, 219.0]] * 2)
    s = screen_frames(times=T_YRS, station=YRS, circle=circ, **spots)
    assert s.moon.tolist() == [0, 0] and s.glare.tolist() == [1, 0]
    assert np.all(s.moon_elevation < 0)


def test_without_station_pixels_decide() -> None:
    spots = _no_spots(3)
    spots["moon"][0] = True
    spots["moon_xyr"][0] = [10.0, 10.0, 2.0]
    spots["glare"][1:] = True
    spots["glare_xyr"][1:] = [[1.0, 1.0, 1.0]] * 2
    spots["moon"][2] = True
    s = screen_frames(times=T_GILL, station=None, circle=CIRC, **spots)
    assert s.moon.tolist() == [1, 0, 1] and s.glare.tolist() == [0, 1, 0]
    assert np.isnan(s.sun_elevation).all() and np.isnan(s.moon_x).all()
    assert s.daylight.tolist() == [0, 0, 0] and s.twilight.tolist() == [0, 0, 0]
    assert "no station" in s.missing


def test_frames_without_time_fall_back() -> None:
    t = T_YRS.copy()
    t[1] = np.datetime64("NaT")
    spots = _no_spots(2)
    spots["moon"][:] = True
    spots["moon_xyr"][:] = [[219.0, 100.0, 4.0]] * 2
    s = screen_frames(times=t, station=YRS, circle=np.array([[219.5, 219.5, 219.0]] * 2), **spots)
    assert s.moon.tolist() == [0, 1]  # ephemeris says below; no time: the detector
    assert s.glare.tolist() == [1, 0]
    assert "no time for 1 of 2" in s.missing
    assert np.isfinite(s.sun_elevation[0]) and np.isnan(s.sun_elevation[1])


def test_daylight_twilight_thresholds() -> None:
    # Sun at GILL 06:00 UT on 2014-03-10: -37.45 deg
    t = T_GILL[:1]
    c = CIRC[:1]
    dark = screen_frames(times=t, station=GILL, circle=c, **_no_spots(1))
    assert dark.daylight[0] == 0 and dark.twilight[0] == 0
    tw = screen_frames(
        times=t, station=GILL, circle=c, settings=ScreenSettings(-30.0, -40.0), **_no_spots(1)
    )
    assert tw.daylight[0] == 0 and tw.twilight[0] == 1
    day = screen_frames(
        times=t, station=GILL, circle=c, settings=ScreenSettings(-38.0, -40.0), **_no_spots(1)
    )
    assert day.daylight[0] == 1 and day.twilight[0] == 0


def test_cloud_flag_and_columns() -> None:
    s = screen_frames(
        times=None,
        station=None,
        circle=CIRC,
        cloud_score=np.array([0.2, 0.8, np.nan]),
        **_no_spots(3),
    )
    assert s.cloud.tolist() == [0, 1, 0]
    cols = s.columns()
    assert list(cols)[:5] == ["daylight", "twilight", "moon", "glare", "cloud"]
    assert all(len(v) == 3 for v in cols.values())
    assert "no time for 3 of 3" in s.missing


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"daylight_deg": -13.0}, "twilight_deg <= daylight_deg"),
        ({"moon_tolerance_deg": 0.0}, "moon_tolerance_deg"),
        ({"cloud_threshold": 1.5}, "cloud_threshold"),
        ({"daylight_deg": float("nan")}, "finite"),
    ],
)
def test_settings_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScreenSettings(**kwargs)


def test_row_count_checked() -> None:
    with pytest.raises(ValueError, match="one row per frame"):
        screen_frames(times=T_GILL[:2], station=GILL, circle=CIRC, **_no_spots(3))
