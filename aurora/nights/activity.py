"""Activity curves: how much the sky changes around each frame, in pixels and in features.

Windowed change (the activity of the YRS auroral-event papers, ``changeD`` of
``auroralActMonitor.m`` with w = 12)::

    activity[i] = sum over sky pixels p of | sum_{j=i}^{i+w-1} x_j(p) - sum_{j=i-w}^{i-1} x_j(p) |

for i = w .. T-w (0-based), NaN where a window would leave the night. For colour frames the sum
runs over the channels as well. It is computed streaming, keeping only the last 2w frames'
sky pixels and the two running window sums (int64 for integer frames: exact; float64 else).

Huge frames: with ``max_size`` set and a frame side above it, the frame is first summed over
b x b blocks (b the smallest integer bringing both sides to at most ``max_size``; the edge
remainder is dropped) and the mask becomes the blocks holding any sky pixel. Block sums keep
the native units: the result equals the native one when all pixels of a block change in the
same direction, and is a lower bound otherwise.

Feature change: ``feature_change[i] = || mean(f[i:i+w]) - mean(f[i-w:i]) ||_2``, the Euclidean
distance between the mean feature vectors of the next and the previous w frames, on the same
index convention (NaN where a window would leave the night).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import numpy as np

from aurora.infra.errors import SettingsError


def check_window(window: int, name: str = "window") -> int:
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 1:
        raise SettingsError(f"nights.activity.{name}", window, "an integer >= 1 (frames)")
    return int(window)


def block_factor(shape: tuple[int, ...], max_size: int | None) -> int:
    """The block side b that brings both sides of ``shape`` to at most ``max_size`` (1: none)."""
    if max_size is None:
        return 1
    return max(1, -(-max(shape[0], shape[1]) // max_size))


def block_sum(image: np.ndarray, b: int) -> np.ndarray:
    """(H // b, W // b[, C]) sums of ``image`` over b x b blocks (the edge remainder dropped)."""
    if b == 1:
        return image
    h, w = image.shape[0] // b * b, image.shape[1] // b * b
    acc = np.int64 if np.issubdtype(image.dtype, np.integer) else np.float64
    cut = image[:h, :w].reshape(h // b, b, w // b, b, *image.shape[2:])
    return cut.sum(axis=(1, 3), dtype=acc)


class ActivityAccumulator:
    """Windowed change of a night's frames, fed one frame at a time.

    Args:
        mask: (H, W) bool, the sky pixels.
        window: w, frames per window.
        max_size: largest frame side used as is; a larger frame is block-summed (module doc).
            None: always native resolution.
    """

    def __init__(self, mask: np.ndarray, *, window: int, max_size: int | None = None) -> None:
        self.window = check_window(window)
        if max_size is not None and (isinstance(max_size, bool) or int(max_size) < 1):
            raise SettingsError("nights.activity.max_size", max_size, "None or an integer >= 1")
        mask = np.asarray(mask)
        if mask.ndim != 2 or mask.dtype != bool:
            raise SettingsError("mask", f"{mask.shape} {mask.dtype}", "an (H, W) bool array")
        self.shape = mask.shape
        self.factor = block_factor(mask.shape, max_size)
        self._mask = block_sum(mask.astype(np.int64), self.factor) > 0
        self._ring: deque[np.ndarray] = deque()
        self._next: np.ndarray | None = None  # sum of the last w frames
        self._prev: np.ndarray | None = None  # sum of the w frames before those
        self._values: list[float] = []

    def _pixels(self, image: np.ndarray) -> np.ndarray:
        if image.shape[:2] != self.shape:
            raise SettingsError("frame", image.shape, f"frames of the mask's shape {self.shape}")
        return block_sum(image, self.factor)[self._mask]

    def add(self, image: np.ndarray) -> None:
        """Take the next frame (H, W) or (H, W, C) of the night, in time order."""
        x = self._pixels(image)
        if self._next is None:
            acc = np.int64 if np.issubdtype(x.dtype, np.integer) else np.float64
            self._next = np.zeros(x.shape, dtype=acc)
            self._prev = np.zeros(x.shape, dtype=acc)
        elif x.shape != self._next.shape:
            raise SettingsError("frame", image.shape, "frames of one shape and channel count")
        w = self.window
        self._ring.append(x)
        self._next += x
        if len(self._ring) > w:
            leaving = self._ring[-w - 1]  # moves from the next window to the previous one
            self._next -= leaving
            self._prev += leaving  # type: ignore[operator]
        if len(self._ring) > 2 * w:
            self._prev -= self._ring.popleft()  # type: ignore[operator]
        if len(self._ring) == 2 * w:
            self._values.append(float(np.abs(self._next - self._prev).sum()))  # type: ignore[operator]

    def result(self) -> np.ndarray:
        """(T,) float64 activity of the frames so far; NaN where a window does not fit."""
        t = len(self._values) + min(len(self._ring), 2 * self.window - 1)
        out = np.full(t, np.nan)
        if self._values:
            out[self.window : self.window + len(self._values)] = self._values
        return out


def activity_curve(
    frames: Iterable[np.ndarray],
    mask: np.ndarray,
    *,
    window: int,
    max_size: int | None = None,
) -> np.ndarray:
    """(T,) windowed change of ``frames`` (each (H, W[, C])), see :class:`ActivityAccumulator`."""
    acc = ActivityAccumulator(mask, window=window, max_size=max_size)
    for frame in frames:
        acc.add(frame)
    return acc.result()


def feature_change(features: np.ndarray, window: int) -> np.ndarray:
    """(T,) distance between the means of the next and the previous ``window`` feature vectors.

    Args:
        features: (T, D) the night's features, in time order.
        window: w, frames per window.

    Returns:
        (T,) float64; NaN for i < w and i > T - w.
    """
    w = check_window(window)
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise SettingsError("features", f.shape, "a (T, D) array")
    t = f.shape[0]
    out = np.full(t, np.nan)
    if t < 2 * w:
        return out
    c = np.concatenate([np.zeros((1, f.shape[1])), np.cumsum(f, axis=0)])
    i = np.arange(w, t - w + 1)
    diff = (c[i + w] - 2 * c[i] + c[i - w]) / w
    out[i] = np.linalg.norm(diff, axis=1)
    return out
