"""Frame times: file-name patterns of the common stations and a metadata CSV's time column."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aurora.data.metadata import MetadataError, parse_time, read_time_column
from aurora.data.timestamps import parse_timestamp

YRS = Path("/tmp/yrs")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # Yellow River Station: station letter(s), date, band letter, time.
        ("N20031221G030001.bmp", datetime(2003, 12, 21, 3, 0, 1)),
        ("N20031221G142701.bmp", datetime(2003, 12, 21, 14, 27, 1)),
        ("images/N20031221G235959.BMP", datetime(2003, 12, 21, 23, 59, 59)),
        ("YRS20040101V000000.bmp", datetime(2004, 1, 1)),
        ("N20031221G030001.bmp#0002", datetime(2003, 12, 21, 3, 0, 1)),
        # UCalgary one-minute stream0 files: the minute's start.
        ("20140310_0600_gill_themis19_full.pgm.gz", datetime(2014, 3, 10, 6, 0)),
        ("20140310_0605_gill_themis19_full.pgm#0019", datetime(2014, 3, 10, 6, 5)),
        ("20220308_0601_gill_blue-814_full.pgm.gz", datetime(2022, 3, 8, 6, 1)),
        # The patterns that were there before still parse.
        ("LYR-Sony-271119_224936-ql_PIL_default.jpg", datetime(2019, 11, 27, 22, 49, 36)),
        ("LYR-Sony-20171126_090010.jpg", datetime(2017, 11, 26, 9, 0, 10)),
        ("20140218224110.jpg", datetime(2014, 2, 18, 22, 41, 10)),
        ("gako20161013123527.pgm", datetime(2016, 10, 13, 12, 35, 27)),
        ("thg_l1_asf_gako_2011010617_v01.cdf#0003", datetime(2011, 1, 6, 17)),
        ("cam_20240105-231500_x.png", datetime(2024, 1, 5, 23, 15)),
    ],
)
def test_known_answers(name: str, expected: datetime) -> None:
    got = parse_timestamp(name)
    assert got == expected.replace(tzinfo=UTC)
    assert got is not None and got.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "name",
    [
        "N20031321G030001.bmp",  # month 13
        "N20030230G030001.bmp",  # 30 February
        "N20031221G250001.bmp",  # hour 25
        "N20031221G036001.bmp",  # minute 60
        "N20031221G030060.bmp",  # second 60
        "N20031221G0300011.bmp",  # seven time digits: no stamp
        "N20031221030001.bmp",  # no band letter, 15 digits after one letter
        "20141310_0600_gill_themis19_full.pgm.gz",  # month 13
        "20140310_2460_gill_themis19_full.pgm.gz",  # 24:60
        "LYR-Sony-300221_000000.jpg",
        "gako20161013253527.pgm",
        "N.bmp",
        "",
    ],
)
def test_impossible_or_absent_gives_none(name: str) -> None:
    assert parse_timestamp(name) is None


@pytest.fixture
def yrs() -> Path:
    if not (YRS / "truth.csv").is_file() or not (YRS / "images").is_dir():
        pytest.skip("/tmp/yrs is absent (build it as ../shared/REAL_DATA.md says)")
    return YRS


def test_every_yrs_name_parses_to_its_truth_time(yrs: Path) -> None:
    with open(yrs / "truth.csv", newline="") as f:
        truth = {r["path"]: r["time"] for r in csv.DictReader(f)}
    names = sorted(p.name for p in (yrs / "images").iterdir() if p.suffix.lower() == ".bmp")
    assert len(names) == len(truth) == 1849
    assert set(names) == set(truth)
    for name in names:
        want = datetime.fromisoformat(truth[name]).replace(tzinfo=UTC)
        assert parse_timestamp(name) == want, name
    # The truth table's time column, read as a metadata CSV, gives the same times.
    assert read_time_column(yrs / "truth.csv", names) == [parse_timestamp(n) for n in names]


# --------------------------------------------------------------------------- metadata CSV


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2003-12-21T03:00:01", datetime(2003, 12, 21, 3, 0, 1, tzinfo=UTC)),
        ("2003-12-21 03:00:01", datetime(2003, 12, 21, 3, 0, 1, tzinfo=UTC)),
        ("2003-12-21T03:00:01Z", datetime(2003, 12, 21, 3, 0, 1, tzinfo=UTC)),
        ("2003-12-21T11:00:01+08:00", datetime(2003, 12, 21, 3, 0, 1, tzinfo=UTC)),
        ("2003-12-20T22:00:01-05:00", datetime(2003, 12, 21, 3, 0, 1, tzinfo=UTC)),
        ("2014-03-10 06:00:00.063119 UTC", datetime(2014, 3, 10, 6, 0, 0, 63119, tzinfo=UTC)),
        (" 2003-12-21T03:00:01.500Z ", datetime(2003, 12, 21, 3, 0, 1, 500000, tzinfo=UTC)),
        ("2003-13-21T03:00:01", None),
        ("2003-12-21T25:00:01", None),
        ("yesterday", None),
        ("20031221", None),
        ("", None),
    ],
)
def test_parse_time(text: str, expected: datetime | None) -> None:
    got = parse_time(text)
    assert got == expected
    if got is not None:
        assert got.tzinfo is not None and got.utcoffset() == timedelta(0)
        assert got.tzinfo == UTC


def test_read_time_column_matches_ids(tmp_path: Path) -> None:
    table = _write(
        tmp_path / "meta.csv",
        "\ufeffpath,label,time\n"  # a BOM, as spreadsheet programs write
        "a.bmp,arc,2003-12-21T03:00:01\n"
        "./night/b.bmp,arc,2003-12-21T11:00:11+08:00\n"
        "c.bmp,arc,\n"
        "s.pgm.gz#0001,x,2014-03-10 06:00:03.042202Z\n"
        "not_in_the_data.bmp,arc,not a time either\n"  # rows for other images are ignored
        "a.bmp,arc,2003-12-21T03:00:01Z\n",  # the same time twice is fine
    )
    ids = ["night/b.bmp", "a.bmp", "c.bmp", "missing.bmp", "s.pgm.gz#0001", "s.pgm.gz#0000"]
    assert read_time_column(table, ids) == [
        datetime(2003, 12, 21, 3, 0, 11, tzinfo=UTC),
        datetime(2003, 12, 21, 3, 0, 1, tzinfo=UTC),
        None,
        None,
        datetime(2014, 3, 10, 6, 0, 3, 42202, tzinfo=UTC),
        None,
    ]
    assert read_time_column(table, []) == []


def test_read_time_column_errors_name_file_line_and_value(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.csv", "path,time\na.bmp,2003-12-21T03:00:01\nb.bmp,21/12/2003\n")
    with pytest.raises(MetadataError) as info:
        read_time_column(bad, ["a.bmp", "b.bmp"])
    message = str(info.value)
    assert "bad.csv" in message and "line 3" in message and "'21/12/2003'" in message
    assert "b.bmp" in message

    no_path = _write(tmp_path / "no_path.csv", "file,time\na.bmp,2003-12-21T03:00:01\n")
    with pytest.raises(MetadataError, match=r"no_path\.csv.*'path' column.*file, time"):
        read_time_column(no_path, ["a.bmp"])

    no_time = _write(tmp_path / "no_time.csv", "path,morphology\na.bmp,arc\n")
    with pytest.raises(MetadataError, match=r"no_time\.csv.*no 'time' column"):
        read_time_column(no_time, ["a.bmp"])
    assert read_time_column(no_time, ["a.bmp", "b.bmp"], missing_ok=True) == [None, None]

    clash = _write(
        tmp_path / "clash.csv",
        "path,time\na.bmp,2003-12-21T03:00:01\nb.bmp,\na.bmp,2003-12-21T03:00:02\n",
    )
    with pytest.raises(MetadataError, match=r"clash\.csv line 4: a\.bmp .*line 2"):
        read_time_column(clash, ["a.bmp"])

    with pytest.raises(MetadataError, match="gone.csv"):
        read_time_column(tmp_path / "gone.csv", ["a.bmp"])
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"path,time\n\xff\xfe\x00bad\n")
    with pytest.raises(MetadataError, match="binary.csv"):
        read_time_column(binary, ["a.bmp"])
