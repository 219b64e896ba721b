"""Fitting a grid cell on a sample of a large data set (``grid.fit_sample``) and assigning the
rest: which rows, and how every row gets a label."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def fit_sample_rows(
    n: int,
    fit_sample: int | None,
    *,
    times: Sequence[Any] | None = None,
    seed: int = 0,
    keep: np.ndarray | None = None,
) -> np.ndarray | None:
    """The rows a grid cell fits its reducer and clusterer on, or None for all of them.

    Above ``fit_sample`` rows, ``fit_sample`` rows evenly spaced in time (in the order of
    ``times``; a seeded random order where there are none), so that no night is missed, plus
    the rows in ``keep`` (those named by constraints). At or below it: None, and nothing changes.

    Args:
        n: number of rows.
        fit_sample: the most rows to fit on (None = no limit).
        times: (n,) datetimes or None per row.
        seed: seed of the offset and of the order of rows without a time.
        keep: row indices that must be in the sample.

    Returns:
        Sorted (m,) int64 row indices, or None.
    """
    if fit_sample is None or n <= int(fit_sample):
        return None
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    if times is not None:
        stamp = np.array([t.timestamp() if t is not None else np.inf for t in times])
        order = order[np.argsort(stamp[order], kind="stable")]  # untimed rows: random, last
    pos = np.floor((np.arange(int(fit_sample)) + rng.random()) * n / int(fit_sample))
    rows = order[np.minimum(pos.astype(np.int64), n - 1)]
    if keep is not None and len(keep):
        rows = np.concatenate([rows, np.asarray(keep, dtype=np.int64).ravel()])
    return np.unique(rows)


def fit_on_rows(est: Any, emb: np.ndarray, fit_rows: np.ndarray, constraints: dict) -> np.ndarray:
    """Fit ``est`` on the sampled rows; labels for every row (``predict``, else the nearest
    sampled row's label)."""
    from sklearn.neighbors import KNeighborsClassifier

    est.fit(emb[fit_rows], **constraints)
    fitted = np.asarray(est.labels_, dtype=np.int64)
    if hasattr(est, "predict"):
        labels = np.asarray(est.predict(emb), dtype=np.int64)
    else:
        knn = KNeighborsClassifier(n_neighbors=1).fit(emb[fit_rows], fitted)
        labels = np.asarray(knn.predict(emb), dtype=np.int64)
    labels[fit_rows] = fitted
    return labels


def rows_of(pairs: Any, fit_rows: np.ndarray) -> Any:
    """Constraint pairs (row indices of all rows) as indices into the sampled rows."""
    if pairs is None:
        return None
    pos = np.full(int(fit_rows.max()) + 1, -1, dtype=np.int64)
    pos[fit_rows] = np.arange(len(fit_rows))
    return pos[np.asarray(pairs, dtype=np.int64)]
