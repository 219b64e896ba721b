"""Frame times and KHO file names of a synthetic data set: one frame a minute, night by night."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

FIRST_FRAME = datetime(2024, 12, 1, 15, 0, 0, tzinfo=UTC)
FRAME_STEP_S = 60
FRAMES_PER_NIGHT = 14 * 60  # one frame a minute for 14 h, then the next night at 15:00
FILE_PREFIX = "LYR-Sony-"


def frame_time(index: int) -> datetime:
    """UTC time of frame ``index``: every 60 s for 14 h from 15:00, one night after another."""
    night, k = divmod(index, FRAMES_PER_NIGHT)
    return FIRST_FRAME + timedelta(days=night, seconds=k * FRAME_STEP_S)


def frame_name(when: datetime) -> str:
    """KHO file name ``LYR-Sony-YYYYMMDD_HHMMSS.jpg`` for a UTC time."""
    return f"{FILE_PREFIX}{when:%Y%m%d_%H%M%S}.jpg"
