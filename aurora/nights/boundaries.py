"""Event boundaries: change points of a night's signal (``ruptures.Pelt``, a trend-aware cost,
a BIC-like penalty) and their scoring against true ones (one-to-one matching within a tolerance).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from aurora.infra.errors import SettingsError


@functools.cache
def _trend_cost_class() -> type:
    """:class:`CostTrend`'s class, made on first use (``ruptures`` is slow to import)."""
    from ruptures.base import BaseCost

    class CostTrend(BaseCost):  # type: ignore[misc]
        """:func:`trend_cost`'s class."""

        model = "trend"
        min_size = 3

        def __init__(self, n_trend: int) -> None:
            self.n_trend = int(n_trend)

        def fit(self, signal: np.ndarray) -> CostTrend:
            """Precompute the cumulative sums of ``signal`` (T, D); returns self."""
            self.signal = y = np.asarray(signal, dtype=np.float64)
            if y.ndim == 1:
                self.signal = y = y[:, None]
            t = np.arange(len(y), dtype=np.float64)

            def cum(a: np.ndarray) -> np.ndarray:
                return np.concatenate([np.zeros((1, *a.shape[1:])), np.cumsum(a, axis=0)])

            self._t, self._tt = cum(t), cum(t * t)
            self._y, self._yy = cum(y), cum((y * y).sum(axis=1))
            self._ty = cum(t[:, None] * y[:, : self.n_trend])
            return self

        def error(self, start: int, end: int) -> float:
            """Residual sum of squares of the frames ``start..end-1``."""
            n = end - start
            st, stt = self._t[end] - self._t[start], self._tt[end] - self._tt[start]
            sy = self._y[end] - self._y[start]
            rss = self._yy[end] - self._yy[start] - float((sy * sy).sum()) / n
            vt = stt - st * st / n
            if self.n_trend and vt > 1e-9:
                sty = self._ty[end] - self._ty[start] - st * sy[: self.n_trend] / n
                rss -= float((sty * sty).sum()) / vt
            return max(float(rss), 0.0)

    return CostTrend


def trend_cost(n_trend: int) -> Any:
    """A ``ruptures`` segment cost: least squares around a straight line in time on the first
    ``n_trend`` columns of the signal (features that drift inside an event), around the mean on
    the others (group shares); O(D) per segment from cumulative sums."""
    return _trend_cost_class()(n_trend)


def noise_variance(signal: np.ndarray, lag: int = 1) -> tuple[float, int]:
    """Noise variance per dimension of ``signal`` (T, D) and the number of noisy dimensions.

    From the differences between frames ``lag`` apart, robust to the change points themselves:
    the mean over the dimensions whose differences vary of (1.4826 MAD(diff))^2 / 2. With
    ``lag`` the shortest event, what varies faster than an event counts as noise (neighbouring
    frames are near duplicates: lag 1 would see almost none). Piecewise constant dimensions
    (MAD 0) do not count.
    """
    lag = max(1, min(int(lag), len(signal) - 1))
    if len(signal) < 3:
        return 0.0, 0
    d = signal[lag:] - signal[:-lag]
    mad = np.median(np.abs(d - np.median(d, axis=0)), axis=0) * 1.4826
    noisy = mad > 0
    if not noisy.any():
        return 0.0, 0
    return float(np.mean(mad[noisy] ** 2) / 2), int(noisy.sum())


def change_points(
    signal: np.ndarray,
    seconds: np.ndarray,
    *,
    n_features: int,
    share_variance: float = 0.0,
    min_event_s: float,
    penalty: float,
    model: str,
) -> np.ndarray:
    """Frame indices where a new event starts (sorted, excluding 0), by ``ruptures.Pelt``.

    Args:
        signal: (T, D) the night's signal, its first ``n_features`` columns the features.
        seconds: (T,) sorted frame times in seconds (for the cadence).
        n_features: how many leading columns are features (the noise is estimated on them;
            with ``model`` "trend" they may drift linearly inside an event).
        share_variance: the least noise variance (the sampling noise of the group shares in
            the other columns): sigma2 is the larger of it and the features' noise.
        min_event_s: the shortest event in seconds (at the median cadence; >= 2 frames,
            >= 3 with "trend").
        penalty: multiplier of the BIC-like penalty
            ``penalty * (parameters per segment + 1) * sigma2 * log(T)``.
        model: "trend" (:func:`trend_cost`) or a ``ruptures`` cost name ("l2", ...).
    """
    import ruptures as rpt

    t, d = signal.shape
    cadence = float(np.median(np.diff(seconds))) if t > 1 else 1.0
    min_size = max(3 if model == "trend" else 2, int(round(min_event_s / max(cadence, 1e-9))))
    if t < max(4, 2 * min_size):
        return np.zeros(0, dtype=np.int64)
    sigma2, _ = noise_variance(signal[:, :n_features] if n_features else signal, lag=min_size)
    sigma2 = max(sigma2, share_variance)
    if sigma2 <= 0:  # a noise-free signal (clean groups only): any real change is kept
        sigma2 = max(float(np.var(signal, axis=0).mean()) * 1e-6, 1e-12)
    if model == "trend":  # a mean and a slope per feature, a mean per group share
        params = 2 * n_features + (d - n_features)
        algo = rpt.Pelt(custom_cost=trend_cost(n_features), min_size=min_size, jump=1)
    else:
        params = d
        algo = rpt.Pelt(model=model, min_size=min_size, jump=1)
    ends = algo.fit(signal).predict(pen=penalty * (params + 1) * sigma2 * math.log(t))
    return np.asarray(ends[:-1], dtype=np.int64)


class BoundaryScore(NamedTuple):
    """Precision, recall and F1 of found boundaries against true ones, and the matches."""

    precision: float
    recall: float
    f1: float
    matched: int


def boundary_f1(
    found_times: Sequence[float] | np.ndarray,
    true_times: Sequence[float] | np.ndarray,
    tolerance_s: float,
) -> BoundaryScore:
    """Score boundaries by a one-to-one matching within ``tolerance_s`` seconds.

    Each true boundary matches at most one found boundary and vice versa, where
    ``|found - true| <= tolerance_s``; the matching is a largest one (greedy in time order,
    which is optimal when every true boundary has the same tolerance). Times in seconds.
    With nothing found and nothing true all three scores are 1.
    """
    if not (math.isfinite(tolerance_s) and tolerance_s >= 0):
        raise SettingsError("tolerance_s", tolerance_s, "a finite number >= 0")
    found = np.sort(np.asarray(found_times, dtype=np.float64))
    true = np.sort(np.asarray(true_times, dtype=np.float64))
    if found.size == 0 and true.size == 0:
        return BoundaryScore(1.0, 1.0, 1.0, 0)
    matched, j = 0, 0
    for x in true:
        while j < found.size and found[j] < x - tolerance_s:
            j += 1
        if j < found.size and found[j] <= x + tolerance_s:
            matched += 1
            j += 1
    p = matched / found.size if found.size else 0.0
    r = matched / true.size if true.size else 0.0
    f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return BoundaryScore(p, r, f1, matched)
