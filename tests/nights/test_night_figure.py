"""Night panel and season overview: files written, gaps left blank, north up."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
from PIL import Image

from aurora.nights.events import Event
from aurora.nights.figure import night_figure, runs, save_figure, season_figure


def _night() -> tuple[np.ndarray, np.ndarray]:
    # 40 frames at 10 s, a 1 h gap, 40 more; top half bright (north), bottom half dark
    t0 = np.datetime64("2024-01-01T22:00:00", "ms")
    step = np.timedelta64(10_000, "ms")
    times = np.concatenate(
        [t0 + step * np.arange(40), t0 + np.timedelta64(1, "h") + step * np.arange(40)]
    )
    keo = np.zeros((32, 80), np.uint16)
    keo[:16] = 3000
    keo[16:] = 100
    return keo, times


def _pixel(fig, ax, x: float, y: float) -> np.ndarray:
    fig.canvas.draw()
    buf = np.asarray(fig.canvas.buffer_rgba())
    px, py = ax.transData.transform((x, y))
    return buf[buf.shape[0] - int(round(py)), int(round(px)), :3]


def test_gap_blank_and_north_up(tmp_path: Path) -> None:
    keo, times = _night()
    start = datetime(2024, 1, 1, 22, 30, tzinfo=UTC)
    events = [
        Event("n", start - timedelta(hours=1), start, 0.0, 0, 1.0, 1.0, 1.0, None, 0),
        Event("n", start + timedelta(minutes=30), start, 0.0, 1, 1.0, 1.0, 1.0, None, 1),
    ]
    fig = night_figure(
        keo,
        times,
        groups=np.repeat([0, 1], 40),
        activity=np.arange(80.0),
        events=events,
        title="2024-01-01",
    )
    ax = fig.axes[0]
    gap = mdates.date2num(np.datetime64("2024-01-01T22:30:00"))
    inside = mdates.date2num(np.datetime64("2024-01-01T22:03:00"))
    assert (_pixel(fig, ax, gap, 8) == 255).all()  # blank, not stretched
    assert (_pixel(fig, ax, gap, 24) == 255).all()
    north, south = _pixel(fig, ax, inside, 4), _pixel(fig, ax, inside, 28)
    assert north.mean() > 200 and south.mean() < 50  # row 0 (north) drawn at the top
    assert [t.get_text() for t in ax.get_yticklabels()] == ["N", "S"]
    assert len(fig.axes) == 3
    out = save_figure(fig, tmp_path / "keograms" / "2024-01-01.png")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 500


def test_runs_split_at_gaps() -> None:
    t = np.array([0.0, 10, 20, 30, 100, 110, 120])
    assert runs(t, 3.0) == [(0, 4), (4, 7)]
    assert runs(t, 10.0) == [(0, 7)]


def test_colour_keogram_and_season(tmp_path: Path) -> None:
    keo, times = _night()
    rgb = np.stack([keo // 20] * 3, axis=-1).astype(np.uint8)
    save_figure(night_figure(rgb, times), tmp_path / "rgb.png")
    fig = season_figure(
        ["2024-01-01", "2024-01-02"],
        np.array([80, 10]),
        np.array([[0.5, 0.5], [1.0, 0.0]]),
        np.array([[0.1, 0.0], [0.0, 1.0]]),
        ["twilight", "moon"],
    )
    assert save_figure(fig, tmp_path / "season.png").stat().st_size > 1000


def test_season_without_groups_warns_nothing(tmp_path: Path) -> None:
    """A night whose frames are all unassigned: no group legend, and no matplotlib warning."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = season_figure(
            ["2024-01-01"], np.array([5]), np.zeros((1, 0)), np.zeros((1, 1)), ["moon"]
        )
        assert save_figure(fig, tmp_path / "season.png").stat().st_size > 1000
