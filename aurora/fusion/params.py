"""One validator per fusion parameter, shared by the run's settings and the estimators.

Each takes the value and the key to name (``threshold`` for an estimator,
``fusion.threshold`` for the run's settings) and returns the value to use, or raises
:class:`FusionParameterError`: a :class:`~aurora.fusion.partitions.FusionError` to the callers
of the estimators and a :class:`~aurora.infra.errors.SettingsError` (with ``key``) to the run, so
the same rule gives the same message in both places.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from aurora.fusion.partitions import FusionError
from aurora.infra.errors import SettingsError

__all__ = [
    "FusionParameterError",
    "validate_each",
    "validate_min_cluster_size",
    "validate_n_partitions",
    "validate_target_groups",
    "validate_threshold",
    "validate_unassigned_penalty",
    "validate_weights",
]

T = TypeVar("T")


class FusionParameterError(FusionError, SettingsError):
    """A fusion parameter that cannot work: the message names its key, value and what is
    allowed (``fusion.threshold=1.5 cannot work: ...``)."""


def _number(value: Any, key: str, allowed: str) -> float:
    """``value`` as a finite float; bools, text and NaN/inf are refused."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise FusionParameterError(key, value, allowed)
    if not math.isfinite(float(value)):
        raise FusionParameterError(key, value, allowed)
    return float(value)


def _integer(value: Any, key: str, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (``3.0`` is 3)."""
    allowed = f"an integer >= {minimum}"
    x = _number(value, key, allowed)
    if not x.is_integer() or x < minimum:
        raise FusionParameterError(key, value, allowed)
    return int(x)


def validate_weights(
    weights: Any, n_partitions: int | None = None, *, key: str = "weights"
) -> np.ndarray:
    """(P,) float64 partition weights, finite and non-negative; None means all ones.

    Args:
        weights: one weight per fused partition, or None.
        n_partitions: P, the partitions fused (None: any length >= 1, as a setting is checked
            before P is known).
        key: the name in the messages.

    Returns:
        float64 array (P,); ones when ``weights`` is None (then ``n_partitions`` is needed).
    """
    if weights is None:
        return np.ones(n_partitions or 0, dtype=np.float64)
    allowed = "a list of finite non-negative numbers, one per fused partition"
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FusionParameterError(key, weights, allowed) from exc
    if w.ndim != 1 or w.size == 0 or (n_partitions is not None and w.shape != (n_partitions,)):
        want = f"shape ({n_partitions},)" if n_partitions is not None else "a non-empty list"
        raise FusionParameterError(key, weights, f"{allowed}: {want}, got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise FusionParameterError(key, weights, allowed)
    return w


def validate_threshold(
    value: Any, *, weights: Any = None, useful: bool = False, key: str = "threshold"
) -> float:
    """The co-association threshold t: a finite number.

    Images join when c(i, j) > t, and c lies in [0, mean weight] (1 unweighted). The definition
    holds for every finite t (below 0 every pair joins, at the mean weight none does), so the
    estimators take any; a run's setting must be ``useful``: within that range.

    Args:
        value: t.
        weights: the partition weights (validated), or None = all ones.
        useful: also require t in [0, mean weight].
        key: the name in the messages.
    """
    if not useful:
        return _number(value, key, "a finite number")
    top = float(np.mean(weights)) if weights is not None and len(weights) else 1.0
    allowed = f"a finite number in [0, {top:g}] (the range of the co-association)"
    t = _number(value, key, allowed)
    if not 0.0 <= t <= top:
        raise FusionParameterError(key, value, allowed)
    return t


def validate_min_cluster_size(value: Any, *, key: str = "min_cluster_size") -> int:
    """The minimum group size: an integer >= 0 (smaller groups get label -1; 0 keeps every
    group, as 1 does)."""
    return _integer(value, key, 0)


def validate_n_partitions(value: Any, *, key: str = "n_partitions") -> int:
    """Leading ranked partitions to fuse: an integer >= 1."""
    return _integer(value, key, 1)


def validate_target_groups(value: Any, *, key: str = "target_groups") -> int:
    """G, the number of equal groups the search's loss aims for: an integer >= 1."""
    return _integer(value, key, 1)


def validate_unassigned_penalty(value: Any, *, key: str = "unassigned_penalty") -> float:
    """The search's loss per unassigned image: a finite number >= 0."""
    allowed = "a finite number >= 0"
    x = _number(value, key, allowed)
    if x < 0:
        raise FusionParameterError(key, value, allowed)
    return x


def validate_each(values: Any, check: Callable[..., T], *, key: str, **kw: Any) -> tuple[T, ...]:
    """A grid of a parameter: a non-empty list (or one value), each checked by ``check``.

    Args:
        values: the list, or one value (``fusion.search.min_sizes=10``).
        check: the parameter's validator (``validate_threshold`` ...).
        key: the name in the messages.
        **kw: passed on to ``check`` (``weights=`` for thresholds).

    Returns:
        The checked values, in the order given.
    """
    items = list(values) if isinstance(values, Sequence | np.ndarray) else [values]
    if isinstance(values, str) or not items:
        raise FusionParameterError(key, values, "a non-empty list")
    out = []
    for v in items:
        try:
            out.append(check(v, key=key, **kw))
        except FusionParameterError as err:
            raise FusionParameterError(key, values, f"{err.allowed} ({v!r} is not)") from None
    return tuple(out)
