"""Keograms: the known meridian column of every frame, dtypes kept, saved and loaded safely."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from aurora.nights import Keogram, KeogramBuilder, load_keogram, save_keogram
from aurora.nights.keogram import KeogramError


def _frames(n: int, dtype: type, channels: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    hi = 60000 if dtype == np.uint16 else 250
    shape = (32, 40, channels) if channels else (32, 40)
    return [rng.integers(0, hi, size=shape).astype(dtype) for _ in range(n)]


@pytest.mark.parametrize(("dtype", "channels"), [(np.uint8, 0), (np.uint16, 0), (np.uint8, 3)])
def test_keogram_is_the_known_column(dtype: type, channels: int) -> None:
    frames = _frames(5, dtype, channels)
    rows, cols = np.arange(32), np.full(32, 17)
    b = KeogramBuilder(rows, cols)
    t0 = datetime(2024, 1, 1, 22, tzinfo=UTC)
    for k, f in enumerate(frames):
        b.add(f, t0 + timedelta(seconds=10 * k), f"f{k}.png")
    keo = b.result()
    assert keo.keogram.dtype == dtype
    assert keo.keogram.shape == ((32, 5, 3) if channels else (32, 5))
    for k, f in enumerate(frames):
        np.testing.assert_array_equal(keo.keogram[:, k], f[:, 17])
    assert keo.times[1] - keo.times[0] == np.timedelta64(10_000, "ms")
    assert str(keo.times[0]) == "2024-01-01T22:00:00.000"


def test_slanted_meridian_and_column_is_a_copy() -> None:
    img = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)
    rows, cols = np.arange(0, 32, 2), np.arange(16)
    b = KeogramBuilder(rows, cols)
    b.add(img, None)
    img[:] = 0  # the builder must not hold a view of the frame
    np.testing.assert_array_equal(b.result().keogram[:, 0], rows * 32 + cols)


def test_mismatched_frames_and_indices_are_refused() -> None:
    b = KeogramBuilder(np.arange(4), np.zeros(4, int))
    b.add(np.zeros((8, 8), np.uint8), None)
    with pytest.raises(KeogramError, match="does not match"):
        b.add(np.zeros((8, 8), np.uint16), None)
    with pytest.raises(KeogramError, match="outside"):
        KeogramBuilder(np.arange(10), np.zeros(10, int)).add(np.zeros((8, 8), np.uint8), None)


def test_save_load_roundtrip_without_pickle(tmp_path: Path) -> None:
    keo = np.arange(12, dtype=np.uint16).reshape(4, 3)
    times = np.array(["2024-01-01T00:00:00", "NaT", "2024-01-01T00:00:20"], "datetime64[ms]")
    k = Keogram(
        keo,
        times,
        np.array(["a.png", "b\udcff.png", "c.png"]),
        activity=np.array([np.nan, 1.5, np.nan]),
        groups=np.array([0, -1, 2]),
    )
    path = tmp_path / "keograms" / "2024-01-01.npz"
    save_keogram(path, k)
    with np.load(path, allow_pickle=False) as z:  # plain arrays only
        assert set(z.files) == {"keogram", "times", "paths", "activity", "groups"}
    back = load_keogram(path)
    np.testing.assert_array_equal(back.keogram, keo)
    assert back.keogram.dtype == np.uint16
    np.testing.assert_array_equal(back.times, times)
    assert list(back.paths) == ["a.png", "b\udcff.png", "c.png"]
    np.testing.assert_array_equal(back.activity, [np.nan, 1.5, np.nan])
    assert back.feature_change is None
    with pytest.raises(KeogramError, match="activity"):
        save_keogram(path, Keogram(keo, times, np.array(["a", "b", "c"]), activity=np.ones(2)))
