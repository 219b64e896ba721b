"""Tests of the synthetic night (``python -m aurora.data.synth DIR --night``): tiny frames."""

from __future__ import annotations

import csv
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from aurora.data import synth
from aurora.data.synth import (
    EVENT_COLUMNS,
    NIGHT_COLUMNS,
    NightSpec,
    SynthError,
    generate_night,
    parse_span,
    plan_events,
    read_events,
)
from aurora.data.timestamps import parse_timestamp

# 3 h, one frame a minute, 3 onsets: 180 frames of 64 px (about 2 s).
SPEC = NightSpec(seed=5, duration_s=3 * 3600, cadence_s=60, onsets=3)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("night")
    generate_night(out, SPEC, size=64, jobs=2)
    return out


def test_events_tile_the_night(night: Path) -> None:
    header = (night / "events.csv").read_text().splitlines()[0]
    assert header == ",".join(EVENT_COLUMNS)
    events = read_events(night / "events.csv")
    assert events[0]["start"] == SPEC.start
    assert events[-1]["end"] == SPEC.start + timedelta(seconds=SPEC.duration_s)
    for a, b in zip(events, events[1:], strict=False):
        assert a["end"] == b["start"]  # no gap, no overlap
        assert a["morphology"] != b["morphology"]  # every boundary is a change of form
    for i, e in enumerate(events):
        assert e["event"] == i and e["end"] > e["start"]
        assert e["duration_s"] == (e["end"] - e["start"]).total_seconds() >= 300
        assert e["morphology"] in synth.MORPHOLOGIES
    assert sum(e["onset"] for e in events) == 3
    labels = _rows(night / "labels.csv")
    assert sum(e["frames"] for e in events) == len(labels) == 180
    for r in labels:
        e = events[int(r["event"])]
        assert e["start"] <= _utc(r["time"]) < e["end"]
        assert (r["morphology"], r["phase"]) == (e["morphology"], e["phase"])
        # the onset frame is the first frame of an onset event, and only that one
        assert r["onset"] == str(int(e["onset"] == 1 and _utc(r["time"]) == e["start"]))
    assert sum(r["onset"] == "1" for r in labels) == 3


def test_default_night_has_onsets_and_crosses_midnight() -> None:
    spec = NightSpec()
    assert spec.n_slots == 360 and spec.cadence_s == 60
    assert spec.slot_time(0).date() != spec.slot_time(spec.n_slots - 1).date()
    for seed in range(20):
        events = plan_events(NightSpec(seed=seed))
        assert sum(e.onset for e in events) >= 3
        assert events[0].first == 0 and events[-1].stop == spec.n_slots
        assert all(a.stop == b.first for a, b in zip(events, events[1:], strict=False))
        assert all(5 <= e.stop - e.first <= 60 for e in events)  # minutes to an hour


def test_file_names_parse_to_the_truth_times(night: Path) -> None:
    labels = _rows(night / "labels.csv")
    assert (night / "labels.csv").read_text().splitlines()[0] == ",".join(NIGHT_COLUMNS)
    assert sorted(p.name for p in night.glob("*.jpg")) == [r["path"] for r in labels]
    times = [parse_timestamp(r["path"]) for r in labels]
    assert times == [_utc(r["time"]) for r in labels]
    assert times[0] == SPEC.start
    assert set(np.diff([t.timestamp() for t in times])) == {60.0}


def _sky_frames(night: Path) -> tuple[np.ndarray, list[dict[str, str]]]:
    """Frames as (N, M, 3) float arrays of the pixels inside the sky circle, and the labels."""
    labels = _rows(night / "labels.csv")
    imgs = np.stack([cv2.imread(str(night / r["path"])) for r in labels]).astype(np.float32)
    cx, cy, cr = (float(labels[0][k]) for k in ("circle_x", "circle_y", "circle_r"))
    yy, xx = np.mgrid[: imgs.shape[1], : imgs.shape[2]]
    return imgs[:, np.hypot(xx - cx, yy - cy) < 0.95 * cr], labels


def test_onsets_where_brightness_and_change_jump(night: Path) -> None:
    sky, labels = _sky_frames(night)
    bright = sky.mean((1, 2))
    change = np.r_[np.nan, np.abs(np.diff(sky, axis=0)).mean((1, 2))]
    events = read_events(night / "events.csv")
    firsts = np.cumsum([0] + [e["frames"] for e in events])[1:-1]  # first frame of events 1..
    jumps = []
    for k in firsts:
        rise = bright[k : k + 3].mean() / bright[k - 3 : k].mean()
        # frame-to-frame change inside the new event (the boundary frame itself left out)
        faster = change[k + 1 : k + 4].mean() / change[k - 3 : k].mean()
        jumps.append(rise > 1.2 and faster > 2.5)
    onsets = [e["onset"] == 1 for e in events[1:]]
    assert jumps == onsets
    assert [i for i, r in enumerate(labels) if r["onset"] == "1"] == [
        k for k, o in zip(firsts, onsets, strict=True) if o
    ]


def test_frames_are_near_duplicates_inside_calm_events(night: Path) -> None:
    sky, labels = _sky_frames(night)
    change = np.abs(np.diff(sky, axis=0)).mean((1, 2))  # change[i]: frame i -> i + 1
    event = np.array([int(r["event"]) for r in labels])
    calm = np.array([r["active"] == "0" for r in labels])
    inside = (event[1:] == event[:-1]) & calm[1:] & calm[:-1]
    boundary = event[1:] != event[:-1]
    assert np.median(change[inside]) < 0.25 * np.median(change[boundary])
    assert np.median(change[inside]) < 3.0  # a few grey levels: noise and a slow drift


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_same_bytes_for_any_job_count(tmp_path: Path) -> None:
    spec = NightSpec(seed=2, duration_s=30 * 60, cadence_s=60, onsets=1)
    generate_night(tmp_path / "a", spec, size=48, jobs=1)
    generate_night(tmp_path / "b", spec, size=48, jobs=2)
    other = NightSpec(seed=3, duration_s=30 * 60, cadence_s=60, onsets=1)
    generate_night(tmp_path / "c", other, size=48, jobs=1)
    a, b, c = (_hashes(tmp_path / d) for d in "abc")
    assert a == b and len(a) == 32  # 30 frames, labels.csv, events.csv
    assert sum(a[k] != c[k] for k in a) >= 30


def test_gap_leaves_frames_out(tmp_path: Path) -> None:
    spec = NightSpec(seed=1, duration_s=40 * 60, cadence_s=30, onsets=1, gap=(600, 300))
    labels_csv, events_csv = generate_night(tmp_path, spec, size=40, jobs=1)
    times = [_utc(r["time"]) for r in _rows(labels_csv)]
    assert len(times) == 80 - 10
    steps = np.diff([t.timestamp() for t in times])
    assert sorted(set(steps)) == [30.0, 330.0]  # one hole of 10 frames (5 min)
    assert times[int(np.argmax(steps))] == spec.start + timedelta(seconds=570)
    events = read_events(events_csv)
    assert sum(e["frames"] for e in events) == 70
    assert events[-1]["end"] == spec.start + timedelta(seconds=2400)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("6h", 21600), ("1h30m", 5400), ("90m", 5400), ("45s", 45), ("60", 60), ("1.5m", 90)],
)
def test_parse_span(text: str, seconds: int) -> None:
    assert parse_span(text, "duration") == seconds


@pytest.mark.parametrize(
    "args",
    [
        ["--cadence", "0"],
        ["--cadence", "1.5"],
        ["--cadence", "2h"],
        ["--duration", "abc"],
        ["--duration", "20m"],
        ["--duration", "3h", "--onsets", "8"],
        ["--onsets", "0"],
        ["--gap", "1h"],
        ["--gap", "7h+10m"],
        ["--gap", "1h+3h"],
        ["--start", "2024-13-01T00:00:00"],
        ["--size", "16"],
        ["--seed", "-1"],
        ["--prefix", "a b"],
        ["--n", "5"],
    ],
)
def test_bad_parameters_give_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    assert synth.main([str(tmp_path / "out"), "--night", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_spec_refuses_a_local_time() -> None:
    with pytest.raises(SynthError, match="UTC"):
        NightSpec(start=datetime(2024, 12, 1, 21, 0))


def test_command_line_writes_the_night(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "night"
    args = [str(out), "--night", "--duration", "30m", "--cadence", "1m", "--size", "40"]
    assert synth.main([*args, "--onsets", "1", "--jobs", "1", "--prefix", "LYR-Sony-"]) == 0
    assert "wrote 30 frames" in capsys.readouterr().out
    labels = _rows(out / "labels.csv")
    assert len(labels) == 30 and (out / "events.csv").is_file()
    assert labels[0]["path"] == "LYR-Sony-20241201_210000.jpg"
    assert parse_timestamp(labels[-1]["path"]) == datetime(2024, 12, 1, 21, 29, tzinfo=UTC)
