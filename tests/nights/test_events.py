"""Events: known change points found exactly, the onset criterion, events.csv, boundary F1."""

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from aurora.infra.errors import SettingsError
from aurora.nights import (
    EventSettings,
    boundary_f1,
    find_events,
    read_events_csv,
    write_events_csv,
)
from aurora.nights.events import EVENT_COLUMNS, majority_smooth

T0 = datetime(2024, 1, 1, 20, tzinfo=UTC)


def _night(bounds: list[int], t: int, cadence: float = 10.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    levels = rng.normal(size=(len(bounds) + 1, 6)) * 2
    seg = np.searchsorted(bounds, np.arange(t), side="right")
    feats = levels[seg] + rng.normal(scale=0.05, size=(t, 6))
    times = [T0 + timedelta(seconds=cadence * i) for i in range(t)]
    return times, feats, seg


def test_piecewise_constant_features_exact_change_points() -> None:
    bounds = [60, 150, 200, 330]
    times, feats, seg = _night(bounds, 400)
    s = EventSettings(min_event_s=300.0)  # 30 frames at 10 s
    events = find_events("n", times, features=feats, groups=seg, settings=s)
    starts = [int((e.start - T0).total_seconds() / 10) for e in events]
    assert starts == [0, *bounds]
    assert [e.group for e in events] == [0, 1, 2, 3, 4]
    assert all(e.share == 1.0 for e in events)
    assert events[-1].end == times[-1] and events[0].duration_s == 590.0


def test_uneven_cadence_min_event_in_seconds() -> None:
    # 5 s cadence: a 300 s minimum is 60 frames, so a 40-frame (200 s) blip is no event
    times, feats, seg = _night([100, 140], 300, cadence=5.0, seed=1)
    events = find_events(
        "n", times, features=feats, groups=None, settings=EventSettings(min_event_s=300.0)
    )
    assert all(e.duration_s >= 300 - 5 for e in events)


def test_groups_only_signal() -> None:
    groups = np.repeat([0, 1, 0], [50, 50, 50])
    times = [T0 + timedelta(seconds=10 * i) for i in range(150)]
    events = find_events("n", times, features=None, groups=groups, settings=EventSettings())
    assert [e.group for e in events] == [0, 1, 0]


def _onset_night(brightness_rise: float):
    t = 180
    groups = np.repeat([0, 1, 0], [60, 60, 60])
    times = [T0 + timedelta(seconds=10 * i) for i in range(t)]
    activity = np.where(groups == 1, 10.0, 1.0)
    activity[:5] = np.nan
    brightness = np.where(groups == 1, 100.0 * brightness_rise, 100.0)
    return times, groups, activity, brightness


def test_onset_into_active_group() -> None:
    times, groups, act, bri = _onset_night(1.5)
    s = EventSettings(onset_activity_ratio=3.0, onset_brightness_ratio=1.2, active_fraction=0.5)
    ev = find_events(
        "n", times, features=None, groups=groups, activity=act, brightness=bri, settings=s
    )
    assert [e.onset for e in ev] == [0, 1, 0]  # the fall back to quiet is no onset
    assert ev[1].activity_mean == 10.0 and ev[0].activity_mean == 1.0
    # no brightness rise: no onset; no brightness given: criterion 3 skipped
    _, _, _, flat = _onset_night(1.0)
    ev = find_events(
        "n", times, features=None, groups=groups, activity=act, brightness=flat, settings=s
    )
    assert [e.onset for e in ev] == [0, 0, 0]
    ev = find_events("n", times, features=None, groups=groups, activity=act, settings=s)
    assert [e.onset for e in ev] == [0, 1, 0]


def test_events_csv_roundtrip(tmp_path: Path) -> None:
    times, groups, act, bri = _onset_night(1.5)
    ev = find_events("2024-01-01", times, features=None, groups=groups, activity=act)
    path = tmp_path / "events.csv"
    write_events_csv(ev, path)
    header = path.read_text().splitlines()[0]
    assert (
        header
        == "night,start,end,duration_s,group,share,activity_mean,activity_peak,peak_time,onset"
    )
    assert tuple(header.split(",")) == EVENT_COLUMNS
    assert path.read_text().splitlines()[1].split(",")[1] == "2024-01-01T20:00:00+00:00"
    assert read_events_csv(path) == ev


def test_majority_smooth_over_time() -> None:
    sec = np.array([0.0, 10, 20, 30, 40, 1000])
    got = majority_smooth(np.array([0, 0, 1, 0, -1, 2]), sec, 20.0)
    np.testing.assert_array_equal(got, [0, 0, 0, 0, -1, 2])  # 40: tie 0/-1 keeps its own
    np.testing.assert_array_equal(majority_smooth(np.array([3, 1]), sec[:2], 0.0), [3, 1])


def test_boundary_f1_known_sets() -> None:
    s = boundary_f1([0.0, 100.0, 250.0], [10.0, 120.0, 500.0], 15.0)
    assert (s.matched, s.precision, s.recall) == (1, 1 / 3, 1 / 3)
    s = boundary_f1([100.0, 101.0], [100.0], 5.0)  # one to one: the second is a false alarm
    assert (s.precision, s.recall, s.f1) == (0.5, 1.0, pytest.approx(2 / 3))
    assert boundary_f1([], [], 1.0).f1 == 1.0 and boundary_f1([1.0], [], 1.0).f1 == 0.0


def test_boundary_f1_is_a_largest_matching() -> None:
    rng = np.random.default_rng(5)
    for _ in range(50):
        f, t = rng.uniform(0, 100, rng.integers(0, 9)), rng.uniform(0, 100, rng.integers(0, 9))
        got = boundary_f1(f, t, 7.0).matched
        if f.size and t.size:
            cost = (np.abs(f[:, None] - t[None, :]) > 7.0).astype(float)
            r, c = linear_sum_assignment(cost)
            assert got == int((cost[r, c] == 0).sum())


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("pca_dims", -1),
        ("min_event_s", 0.0),
        ("penalty", math.inf),
        ("model", "l3"),
        ("active_fraction", 0.0),
        ("onset_activity_ratio", -1.0),
    ],
)
def test_settings_validated(key: str, value: object) -> None:
    with pytest.raises(SettingsError, match=key):
        EventSettings(**{key: value})  # type: ignore[arg-type]


def test_trend_cost_against_line_fits() -> None:
    from aurora.nights.boundaries import trend_cost

    rng = np.random.default_rng(3)
    y = rng.normal(size=(40, 4))
    cost = trend_cost(2).fit(y)
    for a, b in [(0, 40), (5, 9), (10, 31), (37, 40)]:
        t = np.arange(a, b)
        slow = sum(
            float((np.polyval(np.polyfit(t, y[a:b, j], 1), t) - y[a:b, j]) ** 2 @ np.ones(b - a))
            for j in range(2)
        ) + float(((y[a:b, 2:] - y[a:b, 2:].mean(axis=0)) ** 2).sum())
        assert cost.error(a, b) == pytest.approx(slow, rel=1e-9, abs=1e-9)


def test_drift_inside_events_is_no_boundary() -> None:
    # three events whose features drift steadily (a ramp of 3 noise-free units) between jumps
    rng = np.random.default_rng(4)
    bounds, t = [80, 170], 260
    seg = np.searchsorted(bounds, np.arange(t), side="right")
    ramp = np.arange(t) - np.array([0, *bounds])[seg]
    slope = rng.normal(size=(3, 6)) * 0.04
    feats = rng.normal(size=(3, 6))[seg] * 4 + slope[seg] * ramp[:, None]
    feats += rng.normal(scale=0.05, size=feats.shape)
    times = [T0 + timedelta(seconds=10 * i) for i in range(t)]
    found = find_events("n", times, features=feats, groups=None, settings=EventSettings())
    starts = [int((e.start - T0).total_seconds() / 10) for e in found]
    assert starts == [0, *bounds]
    flat = find_events("n", times, features=feats, groups=None, settings=EventSettings(model="l2"))
    assert len(flat) > 3  # a piecewise-constant cost cuts the drifts into steps


def test_alternating_groups_are_one_event() -> None:
    # groups 0 and 1 alternate every 2 frames (one sky, two clusters), then group 2
    groups = np.concatenate([np.tile([0, 0, 1, 1], 25), np.full(100, 2)])
    times = [T0 + timedelta(seconds=10 * i) for i in range(200)]
    feats = np.random.default_rng(5).normal(scale=0.3, size=(200, 3))
    feats[100:] += 1.0  # the features see one change too, and give the noise its scale
    s = EventSettings(group_smooth_s=60.0, min_event_s=60.0, pca_dims=3)
    events = find_events("n", times, features=feats, groups=groups, settings=s)
    assert len(events) == 2 and events[1].group == 2
    assert abs((events[1].start - T0).total_seconds() - 1000) <= 30


def test_group_shares_over_time() -> None:
    from aurora.nights.events import group_shares

    sec = np.array([0.0, 10, 20, 30, 1000])
    got = group_shares(np.array([0, 1, 1, -1, 0]), sec, 20.0)
    want = [[1 / 2, 1 / 2], [1 / 3, 2 / 3], [0, 2 / 3], [0, 1 / 2], [1, 0]]
    np.testing.assert_allclose(got, want)
