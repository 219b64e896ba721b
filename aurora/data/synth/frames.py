"""Frame times, KHO file names and JPEG bytes of a synthetic data set: one frame a minute, night
by night."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import cv2
import numpy as np

from aurora.data.synth.truth import SynthError

FIRST_FRAME = datetime(2024, 12, 1, 15, 0, 0, tzinfo=UTC)
FRAME_STEP_S = 60
FRAMES_PER_NIGHT = 14 * 60  # one frame a minute for 14 h, then the next night at 15:00
FILE_PREFIX = "LYR-Sony-"
JPEG_QUALITY = 92


def frame_time(index: int) -> datetime:
    """UTC time of frame ``index``: every 60 s for 14 h from 15:00, one night after another."""
    night, k = divmod(index, FRAMES_PER_NIGHT)
    return FIRST_FRAME + timedelta(days=night, seconds=k * FRAME_STEP_S)


def frame_name(when: datetime) -> str:
    """KHO file name ``LYR-Sony-YYYYMMDD_HHMMSS.jpg`` for a UTC time."""
    return f"{FILE_PREFIX}{when:%Y%m%d_%H%M%S}.jpg"


def encode_jpeg(img: np.ndarray) -> bytes:
    """JPEG bytes (quality :data:`JPEG_QUALITY`) of an RGB uint8 image."""
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:  # pragma: no cover - cv2 only fails on invalid arrays
        raise SynthError("JPEG encoding failed")
    return buf.tobytes()


def worker_init() -> None:
    """One OpenCV thread per worker process (the processes are the parallelism)."""
    cv2.setNumThreads(1)
