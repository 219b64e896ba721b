"""Co-association majority voting over many partitions, as a scikit-learn clusterer.

Definition (exact, for any input). For partitions ``l_1..l_P`` of ``n`` images (label -1 =
unassigned) and non-negative weights ``w_p`` (default 1)::

    c(i, j) = (1/P) * sum_p w_p * [l_p(i) == l_p(j) >= 0]

Images ``i != j`` are joined when ``c(i, j) > threshold`` (strictly), transitively; groups with
fewer than ``min_cluster_size`` images get -1 and the others are numbered 0..K-1 in the order of
their smallest image index.

The estimator takes the partitions as the columns of ``X`` (n_samples, n_partitions). How the
graph is built without an n x n matrix, and how ``c > t`` is decided exactly, is in
:mod:`aurora.fusion.graph`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils.validation import validate_data

from aurora.fusion.graph import components_for_thresholds, finalize_labels
from aurora.fusion.params import validate_min_cluster_size, validate_threshold, validate_weights
from aurora.fusion.partitions import FusionError, compress_partitions, validate_partitions

__all__ = ["CoAssociationVoting", "FusionError"]


class CoAssociationVoting(ClusterMixin, BaseEstimator):
    """Fuse partitions by co-association majority voting (see module docstring).

    Args:
        threshold: join two images when c(i, j) > threshold (strict); any finite number,
            useful in [0, mean weight] (:func:`aurora.fusion.params.validate_threshold`).
        min_cluster_size: groups with fewer images get label -1 (>= 0).
        weights: optional (n_partitions,) non-negative partition weights (normalisation stays
            1/P).
        max_block_entries: memory/speed knob: multiply-adds per sparse product block.
        progress: tqdm bar; ``None`` = only for large inputs.

    Attributes:
        labels_: (n_samples,) int64 fused labels, -1 = unassigned.
        n_features_in_: number P of partitions fused.
        n_groups_: number K of groups kept.
        group_sizes_: (K,) images per group.
        n_unassigned_: images labelled -1.
        n_signatures_: number of unique label vectors (rows of ``X``).
        n_signature_edges_: signature pairs with c > threshold.
    """

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        min_cluster_size: int = 1,
        weights: Sequence[float] | None = None,
        max_block_entries: int = 4_000_000,
        progress: bool | None = None,
    ) -> None:
        self.threshold = threshold
        self.min_cluster_size = min_cluster_size
        self.weights = weights
        self.max_block_entries = max_block_entries
        self.progress = progress

    def fit(self, X: Any, y: Any = None) -> CoAssociationVoting:
        """Fuse the partitions in the columns of ``X``.

        Args:
            X: (n_samples, n_partitions) integer labels, column p = partition p, -1 =
                unassigned.
            y: ignored.

        Returns:
            self, with ``labels_`` (n_samples,).

        Raises:
            FusionError: ``X`` not 2-D, no partition, non-integer labels or labels below -1;
                bad ``threshold``, ``min_cluster_size`` or ``weights``
                (:class:`aurora.fusion.params.FusionParameterError`, naming the parameter).
        """
        try:
            X = validate_data(self, X, dtype=None, ensure_all_finite=False, ensure_min_samples=0)
        except ValueError as exc:
            raise FusionError(
                f"X must be a 2-D array (n_samples, n_partitions) of integer labels: {exc}"
            ) from exc
        parts = validate_partitions(X.T)
        min_size = validate_min_cluster_size(self.min_cluster_size)
        w = validate_weights(self.weights, parts.shape[0])
        threshold = validate_threshold(self.threshold, weights=w)
        sigs = compress_partitions(parts)
        (res,) = components_for_thresholds(
            sigs, [threshold], w,
            max_block_entries=self.max_block_entries, progress=self.progress,
        )  # fmt: skip
        self.labels_ = finalize_labels(res, sigs.inverse, min_size)
        self.group_sizes_ = np.bincount(self.labels_[self.labels_ >= 0]).astype(np.int64)
        self.n_groups_ = int(self.group_sizes_.size)
        self.n_unassigned_ = int((self.labels_ < 0).sum())
        self.n_signatures_ = int(sigs.table.shape[0])
        self.n_signature_edges_ = int(res.n_edges)
        return self
