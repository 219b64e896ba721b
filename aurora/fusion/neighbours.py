"""Label new images with the fused groups by nearest neighbours in the embedding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.neighbors import NearestNeighbors
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from aurora.fusion.partitions import FusionError
from aurora.infra.atomic import atomic_save_npz

__all__ = ["FusedNeighbours"]

_FORMAT = "aurora.fusion.FusedNeighbours/1"


class FusedNeighbours(ClassifierMixin, BaseEstimator):
    """k-nearest-neighbour vote over the images that fusion assigned to a group.

    Args:
        n_neighbors: neighbours that vote; ties go to the label of the nearest voter.
        max_distance: a new point whose nearest assigned image is farther gets -1
            (``None`` = no limit).

    Attributes:
        embedding_: (m, d) float32 reference points (assigned images only).
        labels_: (m,) int64 their fused labels.
        classes_: (K,) int64 the distinct fused labels.
        n_features_in_: d.
    """

    def __init__(self, *, n_neighbors: int = 1, max_distance: float | None = None) -> None:
        self.n_neighbors = n_neighbors
        self.max_distance = max_distance

    def fit(self, X: Any, y: Any) -> FusedNeighbours:
        """Keep the assigned images of the embedding.

        Args:
            X: (n, d) embedding of the fused images.
            y: (n,) their fused labels; images labelled -1 are left out.

        Returns:
            self.

        Raises:
            FusionError: shapes that do not match, labels that are not integers,
                ``n_neighbors < 1``, no assigned image, or NaN/infinite coordinates of an
                assigned image.
        """
        try:
            x, y = validate_data(self, X, y, dtype=np.float32, ensure_all_finite=False)
            check_classification_targets(y)
        except ValueError as exc:
            raise FusionError(f"embedding X (n, d) and labels y (n,) needed: {exc}") from exc
        if y.dtype.kind not in "iuf":
            raise FusionError(f"labels y must be integers (-1 = unassigned), got dtype {y.dtype}")
        if self.n_neighbors < 1:
            raise FusionError(f"n_neighbors must be >= 1, got {self.n_neighbors}")
        keep = y >= 0
        if not keep.any():
            raise FusionError("no assigned image (all labels are -1): nothing to learn from")
        if not np.all(np.isfinite(x[keep])):
            raise FusionError("embedding contains NaN or infinite values")
        self.embedding_ = np.ascontiguousarray(x[keep])
        self.labels_ = y[keep].astype(np.int64)
        self._build()
        return self

    def _build(self) -> None:
        self.classes_ = np.unique(self.labels_)
        self._nn = NearestNeighbors(n_neighbors=min(self.n_neighbors, len(self.labels_)))
        self._nn.fit(self.embedding_)

    def _new_points(self, X: Any) -> np.ndarray:
        """(q, d) float32 query points, checked against the fitted dimension."""
        check_is_fitted(self)
        try:
            return validate_data(self, X, dtype=np.float32, reset=False, ensure_min_samples=0)
        except ValueError as exc:
            raise FusionError(
                f"new points must be finite, of shape (q, {self.n_features_in_}): {exc}"
            ) from exc

    def kneighbors(
        self, X: Any, n_neighbors: int | None = None, return_distance: bool = True
    ) -> tuple[np.ndarray, np.ndarray] | np.ndarray:
        """Nearest assigned images of new points, nearest first.

        Args:
            X: (q, d) embedding of new images.
            n_neighbors: neighbours per point; ``None`` = the voters (``n_neighbors``, at most
                the number of assigned images).
            return_distance: also return the distances.

        Returns:
            distances (q, k) float64 and indices (q, k) into ``embedding_`` / ``labels_``, or
            the indices alone when ``return_distance`` is false. The distance of each point to
            the nearest assigned image is ``kneighbors(X)[0][:, 0]``.
        """
        q = self._new_points(X)
        k = self._nn.n_neighbors if n_neighbors is None else int(n_neighbors)
        if not 1 <= k <= len(self.labels_):
            raise FusionError(f"n_neighbors must be in 1..{len(self.labels_)}, got {n_neighbors}")
        if q.shape[0] == 0:
            dist, idx = np.zeros((0, k), np.float64), np.zeros((0, k), np.int64)
        else:
            dist, idx = self._nn.kneighbors(q, k)
            dist = dist.astype(np.float64)
        return (dist, idx) if return_distance else idx

    def predict(self, X: Any) -> np.ndarray:
        """Fused group of new points.

        Args:
            X: (q, d) embedding of new images.

        Returns:
            (q,) int64 labels; -1 where the nearest assigned image is farther than
            ``max_distance``.
        """
        dist, idx = self.kneighbors(X)
        votes = self.labels_[idx]  # (q, k), nearest first
        if votes.shape[1] == 1:
            out = votes[:, 0].copy()
        else:
            out = np.empty(len(votes), np.int64)
            for i, row in enumerate(votes):
                vals, counts = np.unique(row, return_counts=True)
                best = vals[counts == counts.max()]
                out[i] = next(v for v in row if v in best)  # tie: nearest voter wins
        if self.max_distance is not None:
            out[dist[:, 0] > self.max_distance] = -1
        return out

    def save(self, path: str | Path) -> None:
        """Write an ``.npz`` (no pickle) that :meth:`load` reads back."""
        check_is_fitted(self)
        atomic_save_npz(
            path,
            format=np.array(_FORMAT),
            embedding=self.embedding_,
            labels=self.labels_,
            n_neighbors=np.array(self.n_neighbors, np.int64),
            max_distance=np.array(np.nan if self.max_distance is None else self.max_distance),
        )

    @classmethod
    def load(cls, path: str | Path) -> FusedNeighbours:
        """Read a model written by :meth:`save`."""
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["format"]) != _FORMAT:
                    raise FusionError(f"{path}: not a FusedNeighbours file ({z['format']})")
                md = float(z["max_distance"])
                model = cls(
                    n_neighbors=int(z["n_neighbors"]), max_distance=None if np.isnan(md) else md
                )
                model.embedding_ = z["embedding"]
                model.labels_ = z["labels"]
        except (OSError, KeyError, ValueError) as exc:
            raise FusionError(f"cannot read neighbour model {path}: {exc}") from exc
        emb, lab = model.embedding_, model.labels_
        if emb.ndim != 2 or lab.shape != (emb.shape[0],) or not emb.shape[0]:
            raise FusionError(
                f"{path}: embedding (m, d) and labels (m,) expected, got {emb.shape}, {lab.shape}"
            )
        model.n_features_in_ = int(emb.shape[1])
        model._build()
        return model
