"""Observing sessions ("nights"): frames split where the time between them exceeds a gap.

A night is a run of frames, in time order, in which no two consecutive frames are more than
``gap`` apart. UT midnight plays no part: a session from 18 UT to 06 UT is one night. A night
is named after the UT date of its first frame (``YYYY-MM-DD``), with ``_2``, ``_3``, ... for a
second and third session starting on the same date.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import numpy as np

from aurora.infra.errors import SettingsError

#: Default gap that starts a new night.
DEFAULT_GAP = timedelta(hours=2)


class Nights(NamedTuple):
    """The night of every frame.

    Attributes:
        index: (N,) int64, the night of each frame (an index into ``names``), -1 for a frame
            without a time.
        names: the night names, in time order.
    """

    index: np.ndarray
    names: list[str]

    def frames(self, night: int) -> np.ndarray:
        """(n,) indices of the frames of night ``night``, in input order."""
        return np.flatnonzero(self.index == night)


def _utc(t: datetime) -> datetime:
    """``t`` as an aware UTC datetime (a naive one is taken as UTC)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def split_nights(
    times: Sequence[datetime | None], *, gap: timedelta | float = DEFAULT_GAP
) -> Nights:
    """Split frames into observing sessions.

    Args:
        times: (N,) acquisition times in any order (naive = UTC), None for a frame without one.
        gap: a new night starts where consecutive frames (in time order) are more than this
            apart (a timedelta, or seconds).

    Returns:
        :class:`Nights`: each frame's night (-1 without a time) and the night names.

    Raises:
        SettingsError: ``gap`` is not positive.
    """
    gap_s = gap.total_seconds() if isinstance(gap, timedelta) else float(gap)
    if not np.isfinite(gap_s) or gap_s <= 0:
        raise SettingsError("nights.gap", gap, "a positive duration")
    index = np.full(len(times), -1, dtype=np.int64)
    known = [i for i, t in enumerate(times) if t is not None]
    if not known:
        return Nights(index, [])
    stamps = np.array([_utc(times[i]).timestamp() for i in known])  # type: ignore[union-attr]
    order = np.argsort(stamps, kind="stable")
    sorted_s = stamps[order]
    starts = np.concatenate([[True], np.diff(sorted_s) > gap_s])
    night_of_sorted = np.cumsum(starts) - 1
    index[np.asarray(known)[order]] = night_of_sorted
    names: list[str] = []
    used: dict[str, int] = {}
    for first in sorted_s[starts]:
        date = datetime.fromtimestamp(first, UTC).strftime("%Y-%m-%d")
        used[date] = used.get(date, 0) + 1
        names.append(date if used[date] == 1 else f"{date}_{used[date]}")
    return Nights(index, names)
