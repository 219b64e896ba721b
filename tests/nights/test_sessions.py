"""Nights: sessions split at gaps, never at UT midnight; names from the first frame's UT date."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from aurora.infra.errors import SettingsError
from aurora.nights import split_nights


def _t(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 1, day, hour, minute, tzinfo=UTC)


def test_session_across_midnight_stays_one_and_3h_gap_splits() -> None:
    # 22:00..01:50 on the 1st/2nd every 10 min, then a 3 h gap, then 04:50..05:30 on the 2nd
    first = [_t(1, 22) + timedelta(minutes=10 * k) for k in range(24)]
    second = [_t(2, 4, 50) + timedelta(minutes=10 * k) for k in range(5)]
    times = first + second
    nights = split_nights(times)
    assert nights.names == ["2024-01-01", "2024-01-02"]
    assert (nights.index[:24] == 0).all() and (nights.index[24:] == 1).all()


def test_any_order_none_and_same_date_suffix() -> None:
    times = [_t(3, 12), None, _t(3, 1), _t(3, 1, 5), _t(3, 12, 10), _t(3, 20)]
    nights = split_nights(times, gap=3600.0)
    assert nights.names == ["2024-01-03", "2024-01-03_2", "2024-01-03_3"]
    np.testing.assert_array_equal(nights.index, [1, -1, 0, 0, 1, 2])
    np.testing.assert_array_equal(nights.frames(1), [0, 4])


def test_gap_equal_does_not_split_naive_is_utc() -> None:
    times = [datetime(2024, 1, 1, 0, 0), datetime(2024, 1, 1, 2, 0)]  # exactly 2 h apart
    assert split_nights(times).names == ["2024-01-01"]
    assert split_nights([None, None]).names == []


@pytest.mark.parametrize("gap", [0, -1.0, timedelta(0), float("nan")])
def test_bad_gap(gap: object) -> None:
    with pytest.raises(SettingsError, match="nights.gap"):
        split_nights([_t(1, 1)], gap=gap)  # type: ignore[arg-type]
