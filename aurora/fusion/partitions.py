"""Fusion input: the checks on partitions, and their compression to signatures.

A partition is one clustering of the ``n`` images: one integer label per image, -1 =
unassigned. Internally the partitions of one fusion are an int64 array (P, n), one row per
partition (the estimators take the transpose, (n_samples, n_partitions), as scikit-learn does).
Images with the same label vector across the partitions (the same "signature") are
indistinguishable to the voting, which therefore works on the ``m <= n`` unique signatures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from aurora.infra.errors import AuroraError

__all__ = [
    "FusionError",
    "Signatures",
    "compress_partitions",
    "validate_partitions",
]


class FusionError(AuroraError, ValueError):
    """Invalid input to the fusion stage (partitions, weights, thresholds, rankings, models)."""


def validate_partitions(partitions: Any) -> np.ndarray:
    """Check and convert partitions to an int64 array.

    Args:
        partitions: array-like (P, n) of integer labels, -1 = unassigned.

    Returns:
        int64 array (P, n).

    Raises:
        FusionError: not 2-D, no partitions, non-integer values, or labels below -1.
    """
    arr = np.asarray(partitions)
    if arr.ndim != 2:
        raise FusionError(f"partitions must be a 2-D array (P, n), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise FusionError("partitions must contain at least one partition (P >= 1)")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise FusionError("partitions must hold integer labels (found non-integer floats)")
    elif arr.dtype.kind not in "iub":
        raise FusionError(f"partitions must hold integer labels, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < -1:
        p = int(np.argmax((arr < -1).any(axis=1)))
        raise FusionError(
            f"partition {p} has label {int(arr[p].min())}; labels must be >= 0, or -1 = unassigned"
        )
    return arr


@dataclass(frozen=True)
class Signatures:
    """Unique label vectors of a set of partitions.

    Attributes:
        table: (m, P) int32 compact labels per partition (0..k_p-1), -1 = unassigned.
        inverse: (n,) int64 signature index of each image.
        counts: (m,) int64 number of images per signature.
    """

    table: np.ndarray
    inverse: np.ndarray
    counts: np.ndarray

    @property
    def n_labels(self) -> np.ndarray:
        """(P,) number of distinct non-negative labels per partition."""
        return (self.table.max(axis=0) + 1).astype(np.int64)


def compress_partitions(partitions: np.ndarray) -> Signatures:
    """Relabel each partition compactly and collapse identical label vectors.

    Args:
        partitions: validated int array (P, n).

    Returns:
        The unique signatures, with the image -> signature map and multiplicities.
    """
    n_part, n = partitions.shape
    compact = np.empty((n, n_part), dtype=np.int32)
    for p in range(n_part):
        uniq, inv = np.unique(partitions[p], return_inverse=True)
        inv = inv.astype(np.int32)
        if uniq.size and uniq[0] == -1:
            inv -= 1
        compact[:, p] = inv
    if n == 0:
        return Signatures(compact, np.zeros(0, np.int64), np.zeros(0, np.int64))
    kmax = int(compact.max()) + 1
    small = compact.astype(np.int8 if kmax < 127 else np.int16 if kmax < 32767 else np.int32)
    table, inverse, counts = np.unique(small, axis=0, return_inverse=True, return_counts=True)
    return Signatures(table.astype(np.int32), inverse.reshape(-1).astype(np.int64), counts)
