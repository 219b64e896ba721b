"""Scoring event boundaries against true ones: one-to-one matching within a tolerance."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from aurora.errors import SettingsError


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
