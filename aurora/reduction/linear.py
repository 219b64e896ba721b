"""Reducers as arrays: an affine map read from a fitted reducer, and new images placed in an
embedding (the affine map when there is one, else nearest training images).

Nothing is pickled: :class:`LinearMap` is three arrays in an ``.npz``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.neighbors import NearestNeighbors

from aurora.infra.atomic import atomic_save_npz

#: File of the affine map in a reduction's cache entry and in a solution folder.
LINEAR_FILE = "linear.npz"
#: Rows of the training features on which an affine map read from a reducer's attributes must
#: reproduce its embedding.
_CHECK_ROWS = 512


@dataclass(frozen=True)
class LinearMap:
    """An affine reducer as arrays: ``(X - mean) @ components.T / scale``.

    Attributes:
        mean: (D,) float64 centre.
        components: (d, D) float64 directions.
        scale: (d,) float64 divisor per output (ones unless whitened).
    """

    mean: np.ndarray
    components: np.ndarray
    scale: np.ndarray

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Map (M, D) features to the (M, d) embedding."""
        return (np.asarray(X, dtype=np.float64) - self.mean) @ self.components.T / self.scale

    def save(self, path: str | Path) -> None:
        """Write the three arrays to an ``.npz`` (atomically)."""
        atomic_save_npz(path, mean=self.mean, components=self.components, scale=self.scale)

    @classmethod
    def load(cls, path: str | Path) -> LinearMap:
        """Read an ``.npz`` written by :meth:`save` (no pickle); checks the shapes agree.

        Raises:
            ValueError: missing arrays or shapes that do not form a map.
        """
        with np.load(path, allow_pickle=False) as z:
            try:
                mean, comps, scale = (np.asarray(z[k], np.float64) for k in _LINEAR_KEYS)
            except KeyError as err:
                raise ValueError(f"{path}: missing array {err}") from err
        if comps.ndim != 2 or mean.shape != (comps.shape[1],) or scale.shape != (comps.shape[0],):
            raise ValueError(
                f"{path}: mean {mean.shape}, components {comps.shape} and scale {scale.shape} "
                "do not form a (d, D) map"
            )
        if not (np.isfinite(mean).all() and np.isfinite(comps).all() and (scale > 0).all()):
            raise ValueError(f"{path}: non-finite values or a scale <= 0")
        return cls(mean, comps, scale)


_LINEAR_KEYS = ("mean", "components", "scale")


def linear_map(est: Any, features: np.ndarray, embedding: np.ndarray) -> LinearMap | None:
    """The affine map a fitted reducer applies, or None when it is not affine.

    Reads ``components_`` (and ``mean_``, ``explained_variance_`` when ``whiten``) as PCA and
    its relatives store them; a reducer with no ``components_`` is tried as the identity. The
    map is kept only if it reproduces the reducer's own embedding of its training features.

    Args:
        est: fitted reducer.
        features: (N, D) its training features.
        embedding: (N, d) what ``est.fit_transform(features)`` returned.

    Returns:
        The :class:`LinearMap`, or None.
    """
    d_in = features.shape[1]
    comps = getattr(est, "components_", None)
    if comps is not None:
        comps = np.asarray(comps, dtype=np.float64)
        mean = np.asarray(getattr(est, "mean_", np.zeros(d_in)), dtype=np.float64)
        scale = np.ones(len(comps))
        if getattr(est, "whiten", False):
            scale = np.sqrt(np.asarray(est.explained_variance_, dtype=np.float64))
    else:
        mean, comps, scale = np.zeros(d_in), np.eye(d_in), np.ones(d_in)
    if comps.ndim != 2 or comps.shape != (embedding.shape[1], d_in) or mean.shape != (d_in,):
        return None
    lin = LinearMap(mean, comps, scale)
    expected = np.asarray(embedding[:_CHECK_ROWS], dtype=np.float64)
    got = lin.transform(features[:_CHECK_ROWS])
    tol = 1e-4 * max(1.0, float(np.abs(expected).max(initial=0.0)))
    return lin if np.allclose(got, expected, rtol=1e-4, atol=tol) else None


def embed_new(
    new_features: np.ndarray,
    *,
    linear: LinearMap | None,
    train_features: np.ndarray,
    train_embedding: np.ndarray,
    n_neighbors: int = 5,
) -> np.ndarray:
    """Embed new images (M, D) -> (M, d).

    Uses the affine map when the reducer has one; otherwise the inverse-distance-weighted mean
    embedding of the ``n_neighbors`` nearest training images in feature space.
    """
    if linear is not None:
        return linear.transform(new_features)
    k = min(n_neighbors, len(train_features))
    dist, idx = NearestNeighbors(n_neighbors=k).fit(train_features).kneighbors(new_features)
    w = 1.0 / np.maximum(dist, 1e-12)
    w /= w.sum(axis=1, keepdims=True)
    return np.einsum("mk,mkd->md", w, train_embedding[idx])
