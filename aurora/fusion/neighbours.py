"""Label new images with the fused groups by nearest neighbours in the embedding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.neighbors import NearestNeighbors

from aurora.cache import atomic_save_npz
from aurora.fusion.voting import FusionError

__all__ = ["FusedNeighbours"]

_FORMAT = "aurora.fusion.FusedNeighbours/1"


class FusedNeighbours:
    """k-nearest-neighbour vote over the images that fusion assigned to a group.

    Args:
        n_neighbors: neighbours that vote; ties go to the label of the nearest voter.
        max_distance: a new point whose nearest assigned image is farther gets -1
            (``None`` = no limit).

    Attributes:
        embedding_: (m, d) float32 reference points (assigned images only).
        labels_: (m,) int64 their fused labels.
    """

    def __init__(self, n_neighbors: int = 1, max_distance: float | None = None) -> None:
        self.n_neighbors = n_neighbors
        self.max_distance = max_distance

    def fit(self, embedding: np.ndarray, labels: np.ndarray) -> FusedNeighbours:
        """Keep the assigned images of ``embedding`` (n, d) with ``labels`` (n,)."""
        x = np.asarray(embedding, dtype=np.float32)
        y = np.asarray(labels)
        if x.ndim != 2 or y.shape != (x.shape[0],):
            raise FusionError(f"embedding (n, d) and labels (n,) needed, got {x.shape}, {y.shape}")
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
        self._nn = NearestNeighbors(n_neighbors=min(self.n_neighbors, len(self.labels_)))
        self._nn.fit(self.embedding_)

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels and distances of new points.

        Args:
            x: (q, d) embedding of new images.

        Returns:
            labels (q,) int64 (-1 beyond ``max_distance``) and distances (q,) float to the
            nearest assigned image.
        """
        q = np.asarray(x, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.embedding_.shape[1]:
            raise FusionError(
                f"new points must be (q, {self.embedding_.shape[1]}), got shape {q.shape}"
            )
        if q.shape[0] == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        dist, idx = self._nn.kneighbors(q)
        votes = self.labels_[idx]  # (q, k), nearest first
        if votes.shape[1] == 1:
            out = votes[:, 0].copy()
        else:
            out = np.empty(len(q), np.int64)
            for i, row in enumerate(votes):
                vals, counts = np.unique(row, return_counts=True)
                best = vals[counts == counts.max()]
                out[i] = next(v for v in row if v in best)  # tie: nearest voter wins
        if self.max_distance is not None:
            out[dist[:, 0] > self.max_distance] = -1
        return out, dist[:, 0].astype(np.float64)

    def save(self, path: str | Path) -> None:
        """Write an ``.npz`` (no pickle) that :meth:`load` reads back."""
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
                model = cls(int(z["n_neighbors"]), None if np.isnan(md) else md)
                model.embedding_ = z["embedding"]
                model.labels_ = z["labels"]
        except (OSError, KeyError, ValueError) as exc:
            raise FusionError(f"cannot read neighbour model {path}: {exc}") from exc
        model._build()
        return model
