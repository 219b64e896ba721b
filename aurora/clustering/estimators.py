"""Scikit-learn clusterers wrapped to add ``predict`` and memory guards.

Spectral and agglomerative clustering have no ``predict`` in scikit-learn; here a new point
takes the label of its nearest training point (1-nearest neighbour on the fitted labels), so
predicting the training points returns their own labels (exact duplicates with different
labels aside).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.sparse.csgraph import connected_components
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import AgglomerativeClustering, SpectralClustering
from sklearn.neighbors import NearestNeighbors, kneighbors_graph
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted

from aurora.clustering.memory import DEFAULT_MEMORY_BUDGET_BYTES, check_quadratic_memory


class _NearestNeighbourPredict(ClusterMixin, BaseEstimator):
    """Base: stores the training points and predicts by the label of the nearest one."""

    def _store_training(self, X: np.ndarray, labels: np.ndarray) -> None:
        self.labels_ = np.asarray(labels, dtype=np.int64)
        self.n_features_in_ = X.shape[1]
        self.nn_ = NearestNeighbors(n_neighbors=1).fit(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Label of the nearest training point for each row of ``X`` (m, d) -> (m,) int64."""
        check_is_fitted(self, "nn_")
        X = check_array(X, dtype=[np.float64, np.float32])
        idx = self.nn_.kneighbors(X, n_neighbors=1, return_distance=False)[:, 0]
        return self.labels_[idx]


class SparseSpectralClustering(_NearestNeighbourPredict):
    """Spectral clustering on a sparse k-nearest-neighbour affinity, with ``predict``.

    Memory is O(n × n_neighbors), so it runs at 20k+ points.

    Args:
        n_clusters: number of clusters.
        n_neighbors: neighbours in the affinity graph.
        eigen_solver: ``"arpack"``, ``"lobpcg"``, ``"amg"`` or ``None`` (scikit-learn's choice).
        assign_labels: ``"kmeans"``, ``"discretize"`` or ``"cluster_qr"``.
        n_init: K-means restarts in the embedding (``assign_labels="kmeans"``).
        random_state: seed.
        n_jobs: parallel jobs for the neighbour search.

    Attributes:
        labels_: (n,) int64 labels of the training points.
        n_graph_components_: connected components of the affinity graph (more than one when
            the data fall into groups farther apart than ``n_neighbors`` neighbours reach).
    """

    def __init__(
        self,
        *,
        n_clusters: int = 8,
        n_neighbors: int = 10,
        eigen_solver: str | None = None,
        assign_labels: str = "kmeans",
        n_init: int = 10,
        random_state: int | None = None,
        n_jobs: int | None = None,
    ) -> None:
        self.n_clusters = n_clusters
        self.n_neighbors = n_neighbors
        self.eigen_solver = eigen_solver
        self.assign_labels = assign_labels
        self.n_init = n_init
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: np.ndarray, y: None = None) -> SparseSpectralClustering:
        """Cluster ``X`` (n, d)."""
        X = check_array(X, dtype=[np.float64, np.float32])
        n = X.shape[0]
        if not 2 <= self.n_clusters < n:
            raise ValueError(f"n_clusters={self.n_clusters} must be in [2, {n}) for {n} points")
        n_neighbors = min(int(self.n_neighbors), n - 1)
        graph = kneighbors_graph(X, n_neighbors=n_neighbors, include_self=True, n_jobs=self.n_jobs)
        affinity = 0.5 * (graph + graph.T)  # symmetric, as scikit-learn does
        self.n_graph_components_ = int(connected_components(affinity, directed=False)[0])
        model = SpectralClustering(
            n_clusters=self.n_clusters,
            affinity="precomputed",
            eigen_solver=self.eigen_solver,
            assign_labels=self.assign_labels,
            n_init=self.n_init,
            random_state=self.random_state,
        )
        with warnings.catch_warnings():
            # A graph in several components is what well-separated groups give (UMAP's tight
            # clumps): the components' indicator vectors are then the first eigenvectors, and
            # with at most n_clusters components each keeps its own labels, the clustering
            # wanted. scikit-learn warns on every such fit; n_graph_components_ has the count.
            warnings.filterwarnings(
                "ignore", message="Graph is not fully connected", category=UserWarning
            )
            labels = model.fit(affinity).labels_
        self._store_training(X, labels)
        return self


class WardClustering(_NearestNeighbourPredict):
    """Ward agglomerative clustering with ``predict`` and an n² memory guard.

    Without a connectivity graph Ward needs all pairwise distances; the fit is refused
    with :class:`~aurora.clustering.memory.MemoryLimitError` when n² × 8 bytes exceeds
    ``memory_budget_bytes``. With ``connectivity_neighbors`` set, Ward merges only along a
    sparse k-nearest-neighbour graph and needs no dense matrix.

    Args:
        n_clusters: number of clusters.
        connectivity_neighbors: neighbours of the connectivity graph, or ``None`` (dense).
        memory_budget_bytes: budget for the dense path; ``None`` disables the guard.

    Attributes:
        labels_: (n,) int64 labels of the training points.
    """

    def __init__(
        self,
        *,
        n_clusters: int = 8,
        connectivity_neighbors: int | None = None,
        memory_budget_bytes: int | None = DEFAULT_MEMORY_BUDGET_BYTES,
    ) -> None:
        self.n_clusters = n_clusters
        self.connectivity_neighbors = connectivity_neighbors
        self.memory_budget_bytes = memory_budget_bytes

    def fit(self, X: np.ndarray, y: None = None) -> WardClustering:
        """Cluster ``X`` (n, d)."""
        X = check_array(X, dtype=[np.float64, np.float32])
        n = X.shape[0]
        if not 1 <= self.n_clusters <= n:
            raise ValueError(f"n_clusters={self.n_clusters} must be in [1, {n}] for {n} points")
        connectivity = None
        if self.connectivity_neighbors is None:
            check_quadratic_memory(n, "Ward agglomerative clustering", self.memory_budget_bytes)
        else:
            connectivity = kneighbors_graph(
                X, n_neighbors=min(int(self.connectivity_neighbors), n - 1), include_self=False
            )
        model = AgglomerativeClustering(
            n_clusters=self.n_clusters, linkage="ward", connectivity=connectivity
        )
        self._store_training(X, model.fit(X).labels_)
        return self
