"""Reducers of our own (scikit-learn style); sklearn's and umap's are used directly from YAML."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from aurora.infra.errors import SettingsError


def components_for_variance(X: np.ndarray, variance: float) -> int:
    """Fewest principal components of ``X`` (N, D) whose explained variance reaches ``variance``."""
    if not 0.0 < variance <= 1.0:
        raise SettingsError("variance", variance, "a fraction of the variance in (0, 1]")
    Xc = np.asarray(X, dtype=np.float64) - np.mean(X, axis=0)
    ev = np.linalg.svd(Xc, compute_uv=False) ** 2
    cum = np.cumsum(ev) / ev.sum()
    # A small tolerance so that variance=1.0 is reached despite rounding of the last sum.
    return int(min(np.searchsorted(cum, variance - 1e-9) + 1, len(ev)))


class VarianceMatchedUMAP(TransformerMixin, BaseEstimator):
    """UMAP to the dimension that keeps ``variance`` of the PCA variance of the same features.

    The thesis reduced with UMAP to as many dimensions as PCA needs for 80% of the variance.

    Args:
        variance: fraction of PCA variance that sets the UMAP dimension.
        n_neighbors, min_dist, metric: passed to :class:`umap.UMAP`.
        max_components: upper bound on the dimension (None = no bound).
        random_state: seed (None = the run seed, filled in by
            :func:`aurora.infra.config.make_estimator`).

    Attributes:
        n_components_: the chosen dimension.
        umap_: the fitted :class:`umap.UMAP`.
        embedding_: (N, n_components_) embedding of the training data.
    """

    def __init__(
        self,
        *,
        variance: float = 0.8,
        n_neighbors: int = 15,
        min_dist: float = 0.0,
        metric: str = "euclidean",
        max_components: int | None = None,
        random_state: int | None = None,
    ) -> None:
        self.variance = variance
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.max_components = max_components
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: Any = None) -> VarianceMatchedUMAP:
        """Choose the dimension from PCA, then fit UMAP on ``X`` (N, D)."""
        import umap

        n = components_for_variance(X, self.variance)
        if self.max_components is not None:
            n = min(n, int(self.max_components))
        # UMAP's spectral initialisation needs fewer dimensions than points.
        n = max(1, min(n, X.shape[0] - 2))
        self.n_components_ = n
        self.umap_ = umap.UMAP(
            n_components=n,
            n_neighbors=self.n_neighbors,
            min_dist=self.min_dist,
            metric=self.metric,
            random_state=self.random_state,
            # A seeded UMAP runs on one thread; saying so spares its warning on every fit.
            n_jobs=1 if self.random_state is not None else -1,
        ).fit(X)
        self.embedding_ = np.asarray(self.umap_.embedding_)
        return self

    def fit_transform(self, X: np.ndarray, y: Any = None, **fit_params: Any) -> np.ndarray:
        """Fit and return the (N, n_components_) training embedding."""
        return self.fit(X).embedding_

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Embed new points (M, D) -> (M, n_components_)."""
        return np.asarray(self.umap_.transform(X))
