"""Keograms: one column of pixels per frame, along the camera's meridian, side by side in time.

The pixels of a column are given as (rows, cols) index arrays, ordered north to south (the
camera geometry that finds them lives elsewhere), so the keogram is (L, T) for greyscale
frames and (L, T, C) for colour ones, in the frames' own dtype (uint8, uint16 kept).

On disk a night's keogram is ``keograms/NIGHT.npz`` (no pickled objects, so it loads with
``allow_pickle=False``): ``keogram``, ``times`` (T,) ``datetime64[ms]`` UTC (NaT for a frame
without a time), ``paths`` (T,) str, and optionally ``activity``, ``feature_change`` (T,)
float64 and ``groups`` (T,) int64.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from aurora.infra.errors import AuroraError

#: The optional per-frame curves a keogram file may carry, and their dtypes.
CURVES: dict[str, type] = {"activity": np.float64, "feature_change": np.float64, "groups": np.int64}


class KeogramError(AuroraError, ValueError):
    """A frame or a keogram file that does not fit (shape, dtype, length)."""


@dataclass(frozen=True)
class Keogram:
    """One night's keogram and its per-frame data.

    Attributes:
        keogram: (L, T) or (L, T, C) pixels, row 0 = north, in the frames' dtype.
        times: (T,) datetime64[ms], UTC (NaT where unknown).
        paths: (T,) str, the frame ids.
        activity: (T,) float64 or None.
        feature_change: (T,) float64 or None.
        groups: (T,) int64 or None (-1 = unassigned).
    """

    keogram: np.ndarray
    times: np.ndarray
    paths: np.ndarray
    activity: np.ndarray | None = None
    feature_change: np.ndarray | None = None
    groups: np.ndarray | None = None


def to_datetime64(times: list[datetime | None] | np.ndarray) -> np.ndarray:
    """(T,) datetime64[ms] UTC of aware (or naive = UTC) datetimes; None becomes NaT."""
    if isinstance(times, np.ndarray) and np.issubdtype(times.dtype, np.datetime64):
        return times.astype("datetime64[ms]")
    out = np.full(len(times), np.datetime64("NaT"), dtype="datetime64[ms]")
    for i, t in enumerate(times):
        if t is not None:
            naive = t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t
            out[i] = np.datetime64(naive, "ms")
    return out


def meridian_column(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(L,) or (L, C) pixels of ``image`` (H, W[, C]) at ``(rows[k], cols[k])``, a copy."""
    if image.ndim not in (2, 3):
        raise KeogramError(f"a frame must be (H, W) or (H, W, C), got shape {image.shape}")
    h, w = image.shape[:2]
    if rows.min() < 0 or cols.min() < 0 or rows.max() >= h or cols.max() >= w:
        raise KeogramError(f"meridian pixels fall outside a {h}x{w} frame")
    return image[rows, cols].copy()


class KeogramBuilder:
    """Build a keogram one frame at a time, keeping only the columns (never whole frames).

    Args:
        rows: (L,) row index of each keogram pixel, north to south.
        cols: (L,) column index of each keogram pixel.
    """

    def __init__(self, rows: np.ndarray, cols: np.ndarray) -> None:
        self.rows = np.asarray(rows, dtype=np.intp)
        self.cols = np.asarray(cols, dtype=np.intp)
        if self.rows.ndim != 1 or self.rows.shape != self.cols.shape or self.rows.size == 0:
            raise KeogramError(
                f"rows and cols must be two non-empty (L,) arrays of one length, got "
                f"{self.rows.shape} and {self.cols.shape}"
            )
        self._columns: list[np.ndarray] = []
        self._times: list[datetime | None] = []
        self._paths: list[str] = []

    def __len__(self) -> int:
        return len(self._columns)

    def add(self, image: np.ndarray, time: datetime | None, path: str = "") -> None:
        """Take the column of one frame (H, W) or (H, W, C); frames come in time order."""
        column = meridian_column(image, self.rows, self.cols)
        if self._columns and (
            column.shape != self._columns[0].shape or column.dtype != self._columns[0].dtype
        ):
            raise KeogramError(
                f"{path}: column {column.shape} {column.dtype} does not match the night's "
                f"{self._columns[0].shape} {self._columns[0].dtype}"
            )
        self._columns.append(column)
        self._times.append(time)
        self._paths.append(path)

    def result(self) -> Keogram:
        """The keogram so far: (L, T) or (L, T, C)."""
        if not self._columns:
            raise KeogramError("no frame was added")
        return Keogram(
            keogram=np.stack(self._columns, axis=1),
            times=to_datetime64(self._times),
            paths=np.array(self._paths, dtype=str),
        )


def _curve(name: str, value: np.ndarray | None, t: int) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.shape != (t,):
        raise KeogramError(f"{name} must be ({t},), got {arr.shape}")
    return arr.astype(CURVES[name])


def save_keogram(path: str | Path, keogram: Keogram) -> None:
    """Write ``keogram`` to ``path`` (``.npz``, compressed, no pickled objects).

    Raises:
        KeogramError: its arrays do not agree in length.
    """
    t = keogram.keogram.shape[1] if keogram.keogram.ndim >= 2 else -1
    if keogram.keogram.ndim not in (2, 3) or keogram.times.shape != (t,):
        raise KeogramError(
            f"keogram {keogram.keogram.shape} and times {keogram.times.shape} do not agree"
        )
    arrays: dict[str, np.ndarray] = {
        "keogram": keogram.keogram,
        "times": to_datetime64(keogram.times),
        "paths": np.asarray(keogram.paths, dtype=str).reshape(t),
    }
    for name in CURVES:
        value = _curve(name, getattr(keogram, name), t)
        if value is not None:
            arrays[name] = value
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)  # type: ignore[arg-type]


def load_keogram(path: str | Path) -> Keogram:
    """Read a keogram written by :func:`save_keogram` (never unpickles).

    Raises:
        KeogramError: a key is missing or the arrays do not agree in length.
    """
    with np.load(path, allow_pickle=False) as z:
        missing = {"keogram", "times", "paths"} - set(z.files)
        if missing:
            raise KeogramError(f"{path}: missing {sorted(missing)}")
        keo = z["keogram"]
        t = keo.shape[1] if keo.ndim in (2, 3) else -1
        times, paths = z["times"], z["paths"]
        if t < 0 or times.shape != (t,) or paths.shape != (t,):
            raise KeogramError(f"{path}: keogram {keo.shape}, times {times.shape} disagree")
        curves = {n: _curve(n, z[n], t) if n in z.files else None for n in CURVES}
    return Keogram(keogram=keo, times=times.astype("datetime64[ms]"), paths=paths, **curves)
