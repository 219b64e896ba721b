"""aurora.sky.ephemeris: published Sun/Moon positions, vectorisation, missing times, offline."""

from __future__ import annotations

import socket
import urllib.request
from datetime import UTC, datetime

import numpy as np
import pytest

from aurora.sky import ephemeris
from aurora.sky.ephemeris import sun_moon


def test_sun_declination_at_the_pole_matches_horizons() -> None:
    # JPL Horizons, Sun geocentric, 2023-Jun-21 12:00 UT, airless: Dec 23.43572 deg (ICRF), from
    # https://ssd.jpl.nasa.gov/api/horizons.api?format=text&MAKE_EPHEM=YES&COMMAND=10&EPHEM_TYPE=OBSERVER&CENTER=500%40399&START_TIME=%272023-Jun-21+12%3A00%27&STOP_TIME=%272023-Jun-21+18%3A00%27&STEP_SIZE=1h&QUANTITIES=%271%2C2%2C31%27&ANG_FORMAT=DEG&APPARENT=AIRLESS&OBJ_DATA=NO
    # At the North Pole the Sun's elevation is its declination of date (at RA ~ 90 deg the
    # precession since J2000 barely moves the declination; nutation and aberration < 0.01 deg).
    sm = sun_moon([datetime(2023, 6, 21, 12, tzinfo=UTC)], latitude=90.0, longitude=0.0)
    assert abs(sm.sun_elevation[0] - 23.43572) < 0.01


def test_yrs_day_from_real_data() -> None:
    # ../shared/REAL_DATA.md: at Yellow River Station on 2003-12-21 03-14 UT the Moon was
    # 11-20 degrees below the horizon (two days before new moon), the Sun at most -12.4 degrees.
    t = np.arange(
        np.datetime64("2003-12-21T03:00"),
        np.datetime64("2003-12-21T14:01"),
        np.timedelta64(10, "m"),
    )
    sm = sun_moon(t, latitude=78.9167, longitude=11.9333)
    assert sm.moon_elevation.min() > -21.0 and sm.moon_elevation.max() < -10.5
    assert abs(sm.sun_elevation.max() - (-12.4)) < 0.1
    assert np.all(sm.moon_illumination < 0.1)


def test_gill_moon_from_the_issue() -> None:
    # Issue 27 and ../shared: at GILL 2014-03-10 06:00-06:06 UT the Moon was ~28 deg up at
    # azimuth ~260, 66 % lit.
    t = np.array(["2014-03-10T06:00:00", "2014-03-10T06:06:00"], dtype="datetime64[ns]")
    sm = sun_moon(t, latitude=56.3539, longitude=-94.6557)
    assert np.all(np.abs(sm.moon_elevation - 28.0) < 1.0)
    assert np.all(np.abs(sm.moon_azimuth - 260.0) < 2.0)
    assert np.all(np.abs(sm.moon_illumination - 0.66) < 0.01)
    assert np.all(sm.sun_elevation < -30)


def test_missing_times_and_input_kinds() -> None:
    t = [None, datetime(2014, 3, 10, 6), datetime(2014, 3, 10, 6, tzinfo=UTC), np.datetime64("NaT")]
    sm = sun_moon(t, latitude=56.3539, longitude=-94.6557)
    assert np.isnan(sm.sun_elevation[0]) and np.isnan(sm.moon_illumination[3])
    assert sm.moon_elevation[1] == sm.moon_elevation[2]  # naive = UTC
    assert np.isfinite(sm.moon_azimuth[1:3]).all()
    none = sun_moon(np.array(["NaT"], dtype="datetime64[ns]"), latitude=0.0, longitude=0.0)
    assert np.isnan(none.sun_elevation).all()


def test_vectorised_equals_one_by_one() -> None:
    t = np.array(["2021-11-21T17:07:51", "2022-01-01T00:00:00"], dtype="datetime64[ns]")
    both = sun_moon(t, latitude=78.148, longitude=16.043, altitude_m=520)
    for i in range(2):
        one = sun_moon(t[i : i + 1], latitude=78.148, longitude=16.043, altitude_m=520)
        assert np.isclose(one.moon_elevation[0], both.moon_elevation[i], atol=1e-9)


def test_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Load from scratch with every way out blocked: the bundled files suffice."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    import skyfield.iokit

    monkeypatch.setattr(skyfield.iokit, "download", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    ephemeris._load.cache_clear()
    try:
        sm = sun_moon([datetime(2014, 3, 10, 6)], latitude=56.3539, longitude=-94.6557)
    finally:
        ephemeris._load.cache_clear()
    assert np.isfinite(sm.moon_elevation).all()
