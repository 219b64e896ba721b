"""Activity curves against slow obvious versions of their definitions."""

import numpy as np
import pytest

from aurora.infra.errors import SettingsError
from aurora.nights import ActivityAccumulator, activity_curve, feature_change


def slow_activity(frames: list[np.ndarray], mask: np.ndarray, w: int) -> np.ndarray:
    t = len(frames)
    out = np.full(t, np.nan)
    for i in range(w, t - w + 1):
        nxt = sum(frames[j].astype(np.float64) for j in range(i, i + w))
        prv = sum(frames[j].astype(np.float64) for j in range(i - w, i))
        out[i] = np.abs(nxt - prv)[mask].sum()
    return out


def _disc(side: int) -> np.ndarray:
    j = np.arange(side)
    return (j[:, None] - side / 2) ** 2 + (j[None, :] - side / 2) ** 2 < (side / 2) ** 2


@pytest.mark.parametrize(
    ("dtype", "channels", "w", "t"),
    [
        (np.uint8, 0, 3, 11),
        (np.uint16, 0, 2, 9),
        (np.uint8, 3, 1, 5),
        (np.uint8, 0, 4, 7),
    ],
)
def test_matches_slow_definition(dtype: type, channels: int, w: int, t: int) -> None:
    rng = np.random.default_rng(1)
    shape = (24, 20, channels) if channels else (24, 20)
    hi = 65535 if dtype == np.uint16 else 255
    frames = [rng.integers(0, hi + 1, size=shape).astype(dtype) for _ in range(t)]
    mask = _disc(24)[:, :20]
    got = activity_curve(frames, mask, window=w)
    want = slow_activity(frames, mask, w)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[~np.isnan(got)], want[~np.isnan(want)])  # exact


def test_streaming_result_at_every_length() -> None:
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 255, size=(8, 8)).astype(np.uint8) for _ in range(9)]
    acc = ActivityAccumulator(np.ones((8, 8), bool), window=2)
    for k, f in enumerate(frames):
        acc.add(f)
        np.testing.assert_array_equal(acc.result(), slow_activity(frames[: k + 1], acc._mask, 2))


def test_block_sums_for_huge_frames() -> None:
    # every 4x4 block constant in each frame: block sums give the native answer exactly
    rng = np.random.default_rng(3)
    small = [rng.integers(0, 255, size=(8, 8)).astype(np.uint8) for _ in range(6)]
    frames = [np.kron(s, np.ones((4, 4), np.uint8)) for s in small]
    mask = np.ones((32, 32), bool)
    native = activity_curve(frames, mask, window=2)
    acc = ActivityAccumulator(mask, window=2, max_size=8)
    assert acc.factor == 4
    for f in frames:
        acc.add(f)
    np.testing.assert_array_equal(acc.result(), native)
    assert ActivityAccumulator(mask, window=2, max_size=32).factor == 1  # fits: native


def test_feature_change_definition() -> None:
    rng = np.random.default_rng(4)
    f = rng.normal(size=(10, 3))
    got = feature_change(f, 3)
    for i in range(10):
        if 3 <= i <= 7:
            want = np.linalg.norm(f[i : i + 3].mean(0) - f[i - 3 : i].mean(0))
            assert got[i] == pytest.approx(want, rel=1e-12)
        else:
            assert np.isnan(got[i])
    step = np.vstack([np.zeros((5, 2)), np.ones((5, 2))])
    assert np.nanargmax(feature_change(step, 2)) == 5


@pytest.mark.parametrize("w", [0, -2, 1.5, True])
def test_bad_window(w: object) -> None:
    with pytest.raises(SettingsError, match="window"):
        ActivityAccumulator(np.ones((4, 4), bool), window=w)  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="window"):
        feature_change(np.zeros((4, 2)), w)  # type: ignore[arg-type]


def test_wrong_frame_shape() -> None:
    acc = ActivityAccumulator(np.ones((4, 4), bool), window=1)
    with pytest.raises(SettingsError, match="mask's shape"):
        acc.add(np.zeros((5, 4), np.uint8))
