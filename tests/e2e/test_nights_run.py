"""The time-aware half of a run, end to end on the session's tiny sky (one night of 24 frames
at the KHO station): screening accounting,
``screen.csv``, keograms, events, the report's panels, ``mode=apply``, and the settings."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_cfg

from aurora.infra.errors import SettingsError

EVENT_HEADER = "night,start,end,duration_s,group,share,activity_mean,activity_peak,peak_time,onset"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def night(tiny_sky: Path) -> Path:
    """The session's tiny sky: 24 frames a minute apart, named like KHO frames (one night at
    the station kho_sony), whose encoder the session has trained already."""
    return tiny_sky


@pytest.fixture(scope="module")
def overrides(night: Path, tiny_cache: Path) -> list[str]:
    return [
        "debug=tiny",
        "data=folder",
        f"data.root={night}",
        f"paths.cache_dir={tiny_cache}",
        "grid.n_clusters=[3,4]",
        "fusion.min_cluster_size=4",
        # North up, so that a keogram column is one image column (the test below).
        "stations.kho_sony.camera.north_deg=0",
        "screen.exclude=[cloud]",
    ]


@pytest.fixture(scope="module")
def night_run(overrides: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from aurora.run import run_cluster

    run_dir = tmp_path_factory.mktemp("night_run")
    run_cluster(compose_cfg("cluster", overrides), run_dir)
    return run_dir


def test_every_input_ends_in_one_file_and_screened_ones_say_why(
    night: Path, night_run: Path
) -> None:
    frames = sorted(p.name for p in night.glob("*.jpg"))
    labelled = [r["path"] for r in _rows(night_run / "labels.csv")]
    rejected = _rows(night_run / "rejected.csv")
    assert sorted(labelled + [r["path"] for r in rejected]) == frames
    screened = [r for r in rejected if r["reason"] == "screened"]
    assert screened, "the tiny sky shows few stars at 64 px: some frames are cloud"
    assert {r["detail"] for r in screened} == {"cloud"}
    screen = {r["path"]: r for r in _rows(night_run / "screen.csv")}
    assert set(screen) == set(labelled) | {r["path"] for r in screened}
    assert all(screen[r["path"]]["cloud"] == "1" for r in screened)
    assert all(screen[p]["excluded"] == "0" for p in labelled)


def test_screen_csv_columns(night_run: Path) -> None:
    header = (night_run / "screen.csv").read_text().splitlines()[0].split(",")
    assert header[:2] == ["path", "time"]
    for col in ("sun_elevation", "moon_elevation", "daylight", "twilight", "moon", "cloud"):
        assert col in header
    rows = _rows(night_run / "screen.csv")
    # LYR-Sony-... names: the KHO station, so the Sun and Moon come from the ephemeris.
    assert {r["station"] for r in rows} == {"kho_sony"}
    assert all(-90.0 <= float(r["sun_elevation"]) <= 90.0 for r in rows)
    assert all(r["daylight"] == str(int(float(r["sun_elevation"]) > -6.0)) for r in rows)


def test_keogram_holds_every_frame_with_real_columns(night: Path, night_run: Path) -> None:
    import cv2

    from aurora.nights import load_keogram

    (npz,) = sorted((night_run / "keograms").glob("*.npz"))
    keo = load_keogram(npz)
    screen = _rows(night_run / "screen.csv")
    assert keo.keogram.shape[1] == len(screen) == len(keo.paths)
    assert np.all(np.diff(keo.times.astype(np.int64)) > 0)
    excluded = {r["path"] for r in screen if r["excluded"] == "1"}
    assert [p in excluded for p in keo.paths] == list(keo.groups == -2)
    # A keogram column is one image column (a north-up camera), top to bottom.
    t = len(keo.paths) // 2
    image = cv2.cvtColor(cv2.imread(str(night / keo.paths[t])), cv2.COLOR_BGR2RGB)
    column = keo.keogram[:, t]
    assert any(np.array_equal(image[:, c], column) for c in range(image.shape[1]))
    assert (night_run / "keograms" / f"{npz.stem}.png").is_file()


def test_events_cover_the_grouped_frames_of_the_night(night_run: Path) -> None:
    text = (night_run / "events.csv").read_text().splitlines()
    assert text[0] == EVENT_HEADER
    events = _rows(night_run / "events.csv")
    assert events
    starts = [e["start"] for e in events]
    assert starts == sorted(starts)
    assert all(e["start"] <= e["end"] for e in events)
    assert all(e["onset"] in ("0", "1") for e in events)


def test_report_shows_the_nights(night_run: Path) -> None:
    page = (night_run / "report" / "index.html").read_text()
    assert 'id="nights"' in page
    assert list((night_run / "report" / "figures").glob("night_*.png"))


def test_apply_writes_the_same_for_new_nights(
    night: Path, night_run: Path, overrides: list[str], tmp_path: Path
) -> None:
    from aurora.run import run_apply

    cfg = compose_cfg("cluster", [*overrides, "mode=apply", f"solution={night_run}/solution"])
    run_apply(cfg, tmp_path)
    frames = sorted(p.name for p in night.glob("*.jpg"))
    labelled = [r["path"] for r in _rows(tmp_path / "labels.csv")]
    rejected = [r["path"] for r in _rows(tmp_path / "rejected.csv")]
    assert sorted(labelled + rejected) == frames
    assert (tmp_path / "events.csv").read_text().splitlines()[0] == EVENT_HEADER
    assert list((tmp_path / "keograms").glob("*.npz"))
    screened = {r["path"] for r in _rows(night_run / "rejected.csv")}
    assert set(rejected) == screened  # the same frames screened out as in the run


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("data.station=nowhere", "data.station"),
        ("screen.exclude=[sunny]", "screen.exclude"),
        ("nights.gap=0", "nights.gap"),
        ("nights.activity.window=0", "nights.activity.window"),
        ("screen.daylight_deg=-30", "screen"),
        ("nights.events.penalty=-1", "nights.events.penalty"),
        ("stations.yrs.latitude=95", "stations.yrs"),
    ],
)
def test_bad_settings_name_their_key(tiny_overrides: list[str], override: str, key: str) -> None:
    from aurora.run.settings import RunSettings

    with pytest.raises(SettingsError) as err:
        RunSettings.from_cfg(compose_cfg("cluster", [*tiny_overrides, override]))
    assert key in str(err.value)


def test_station_from_data_station_and_names(tiny_overrides: list[str]) -> None:
    from aurora.run.screening import stations_of
    from aurora.run.settings import RunSettings

    nights = RunSettings.from_cfg(compose_cfg("cluster", tiny_overrides)).nights
    ids = ["20140310_0600_gill_themis19_full.pgm.gz#0003", "N20031221G030001.bmp", "x.png"]
    assert stations_of(ids, nights) == ["themis_gill", "yrs", None]
    named = RunSettings.from_cfg(compose_cfg("cluster", [*tiny_overrides, "data.station=yrs"]))
    assert stations_of(ids, named.nights) == ["yrs"] * 3


def test_readme_station_overrides_compose(tiny_overrides: list[str]) -> None:
    """The README's station, screening and nights overrides, as written there."""
    from aurora.run.settings import RunSettings

    custom = "+stations.mycam={name:mycam,latitude:69.3,longitude:16.0,camera:{north_deg:0}}"
    cfg = compose_cfg(
        "cluster",
        [
            *tiny_overrides,
            custom,
            "data.station=mycam",
            "stations.kho_sony.camera.north_deg=-28",
            "screen.exclude=[]",
            "nights.enabled=false",
        ],
    )
    nights = RunSettings.from_cfg(cfg).nights
    assert nights.station == "mycam" and nights.stations["mycam"].latitude == 69.3
    assert nights.stations["kho_sony"].camera.north_deg == -28.0
    assert nights.exclude == () and nights.enabled is False


def test_too_dark_frames_are_counted_in_the_night_they_fall_in() -> None:
    from aurora.run.nights import _within

    night = np.array(["2024-01-01T22:00", "2024-01-02T02:00"], "datetime64[ms]")
    dark = np.array(
        ["2024-01-01T21:30", "2024-01-02T03:59", "2024-01-02T04:01", "2024-01-01T12:00"],
        "datetime64[ms]",
    )
    assert _within(dark, night, 7200) == 2  # within 2 h before the first or after the last frame
    assert _within(dark[:0], night, 7200) == 0


def test_summary_counts_too_dark_per_night(night_run: Path) -> None:
    import json

    nights = json.loads((night_run / "summary.json").read_text())["nights"]
    assert nights and all("too_dark" in n and "flags" in n for n in nights)
