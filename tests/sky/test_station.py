"""aurora.sky.station and names: validation, the Hydra entries, stations from file names."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from aurora.sky.names import THEMIS_SITES, station_from_name
from aurora.sky.station import Camera, Station

CONF = ROOT / "conf" / "station"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"latitude": 91.0}, "latitude must be in"),
        ({"latitude": -90.5}, "latitude must be in"),
        ({"longitude": 400.0}, "longitude must be in"),
        ({"name": " "}, "name must be"),
        ({"clear_sky_stars": 0}, "clear_sky_stars must be > 0"),
    ],
)
def test_station_validation(kwargs: dict, message: str) -> None:
    base = {"name": "x", "latitude": 10.0, "longitude": 20.0}
    with pytest.raises(ValueError, match=message):
        Station(**{**base, **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fov_deg": 0.0}, r"fov_deg must be in \(0, 360\]"),
        ({"fov_deg": 361.0}, r"fov_deg must be in \(0, 360\]"),
        ({"horizon_radius": -3.0}, "horizon_radius must be > 0"),
        ({"zenith": (1.0,)}, "zenith"),
        ({"projection": "stereographic"}, "projection must be one of"),
        ({"projection": "table"}, "needs `table`"),
        (
            {"projection": "table", "table_zenith_deg": [0, 50, 40], "table_radius_px": [0, 1, 2]},
            "must increase",
        ),
    ],
)
def test_camera_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Camera(**kwargs)


def test_camera_table_file(tmp_path: Path) -> None:
    p = tmp_path / "cal.csv"
    p.write_text("zenith_deg,radius_px\n0,0\n45,50\n90,110\n")
    cam = Camera(projection="table", table=str(p))
    assert cam.table_zenith_deg == (0.0, 45.0, 90.0)
    assert cam.table_radius_px == (0.0, 50.0, 110.0)
    assert cam.max_zenith_deg == 90.0
    (tmp_path / "bad.csv").write_text("zen,r\n0,0\n")
    with pytest.raises(ValueError, match="zenith_deg,radius_px"):
        Camera(projection="table", table=str(tmp_path / "bad.csv"))


def _entry(name: str):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose(config_name=name)


@pytest.mark.parametrize(
    "name", ["kho_sony", "nipr_lyr", "yrs", *(f"themis_{s}" for s in sorted(THEMIS_SITES))]
)
def test_station_entries_instantiate(name: str) -> None:
    station = instantiate(_entry(name))
    assert isinstance(station, Station) and station.name == name
    assert isinstance(station.camera, Camera)


def test_every_entry_is_a_known_station_of_the_run() -> None:
    """Each conf/station entry is composed into the run's `stations` under its own name."""

    names = {p.stem for p in (ROOT / "conf" / "station").glob("*.yaml")}
    text = (ROOT / "conf" / "cluster.yaml").read_text()
    for name in names:
        assert f"station@stations.{name}: {name}" in text
        assert instantiate(_entry(name)).name == name


def test_yrs_camera_is_the_published_geometry() -> None:
    cam = instantiate(_entry("yrs")).camera
    assert cam.zenith == (219.0, 219.0) and cam.horizon_radius == 220.0
    assert cam.north_deg == 0.0 and not cam.mirrored


@pytest.mark.parametrize(
    ("name", "station"),
    [
        ("20140310_0600_gill_themis19_full.pgm.gz", "themis_gill"),
        ("/data/x/20140310_0605_GILL_themis19_full.pgm#0003", "themis_gill"),
        ("thg_l1_asf_gako_2011010617_v01.cdf", "themis_gako"),
        ("gako20161013123527.pgm", "themis_gako"),
        ("rank20200104000000.pgm", "themis_rank"),
        ("20140310_0600_fykn_themis19_full.pgm.gz", None),  # a site without an entry
        ("LYR-Sony-211121_170751.jpg", "kho_sony"),
        ("LYR-Sony-20171126_090010.jpg", "kho_sony"),
        ("LYR-Sony-271119_224936-ql_PIL_default.jpg", "kho_sony"),
        ("N20031221G030001.bmp", "yrs"),
        ("20140218224110.jpg", None),  # NIPR names carry no station
        ("frame_0001.png", None),
    ],
)
def test_station_from_name(name: str, station: str | None) -> None:
    assert station_from_name(name) == station


def test_every_named_station_has_an_entry() -> None:
    for site in THEMIS_SITES:
        assert (CONF / f"themis_{site}.yaml").is_file()
    for name in ("kho_sony", "yrs"):
        assert (CONF / f"{name}.yaml").is_file()
