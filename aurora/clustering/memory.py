"""Guards for methods whose memory grows as n² (dense n×n matrices).

Such methods (Kernel PCA, Isomap, Ward agglomerative without connectivity, spectral clustering
with a dense affinity) are refused *before* they allocate, with a message that gives the size
they would need, instead of being killed by the operating system half-way through a sweep.
"""

from __future__ import annotations

from typing import Any

from aurora.infra.errors import AuroraError

DEFAULT_MEMORY_BUDGET_BYTES: int = 4 * 1024**3
"""Default budget for one dense n×n float64 matrix (4 GiB)."""


class MemoryLimitError(AuroraError, MemoryError):
    """A method would need a dense n×n matrix larger than the configured memory budget."""


def format_bytes(n_bytes: float) -> str:
    """Human-readable size, e.g. ``'3.0 GiB'``."""
    size = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


def quadratic_bytes(n_samples: int, bytes_per_entry: int = 8) -> int:
    """Size of a dense ``(n_samples, n_samples)`` matrix: n² × ``bytes_per_entry``."""
    return int(n_samples) * int(n_samples) * int(bytes_per_entry)


def check_quadratic_memory(
    n_samples: int,
    what: str,
    budget_bytes: int | None = DEFAULT_MEMORY_BUDGET_BYTES,
    bytes_per_entry: int = 8,
) -> int:
    """Refuse a dense n×n allocation that exceeds ``budget_bytes``.

    Args:
        n_samples: number of points n.
        what: name of the method, used in the message (e.g. ``"KernelPCA"``).
        budget_bytes: allowed size of the n×n matrix; ``None`` disables the check.
        bytes_per_entry: bytes per matrix entry (8 for float64).

    Returns:
        The size the matrix needs, in bytes.

    Raises:
        MemoryLimitError: when the size exceeds the budget.
    """
    need = quadratic_bytes(n_samples, bytes_per_entry)
    if budget_bytes is not None and need > budget_bytes:
        raise MemoryLimitError(
            f"{what} on {n_samples} points needs a dense {n_samples}x{n_samples} matrix of "
            f"{format_bytes(need)} (n² × {bytes_per_entry} bytes = {need} bytes), more than the "
            f"memory budget of {format_bytes(budget_bytes)} ({budget_bytes} bytes). Use fewer "
            "points, a method with sparse memory (PCA, UMAP, k-means, sparse spectral), or "
            "raise memory_budget_bytes."
        )
    return need


def quadratic_memory_need(estimator: Any, n_samples: int) -> int:
    """Bytes of the dense n×n matrix ``estimator.fit`` would allocate, or 0 if it needs none.

    Covers the scikit-learn estimators whose memory is quadratic in n: ``KernelPCA`` (kernel
    matrix), ``Isomap`` (geodesic distance matrix, always dense), ``AgglomerativeClustering``
    without a connectivity graph (condensed distances) and ``SpectralClustering`` with a dense
    affinity. Our own wrappers check themselves in ``fit``.
    """
    from sklearn.cluster import AgglomerativeClustering, SpectralClustering
    from sklearn.decomposition import KernelPCA
    from sklearn.manifold import Isomap

    if isinstance(estimator, KernelPCA | Isomap):
        return quadratic_bytes(n_samples)
    if isinstance(estimator, AgglomerativeClustering) and estimator.connectivity is None:
        return quadratic_bytes(n_samples)
    if isinstance(estimator, SpectralClustering) and estimator.affinity not in (
        "nearest_neighbors",
        "precomputed_nearest_neighbors",
    ):
        return quadratic_bytes(n_samples)
    return 0


def check_estimator_memory(
    estimator: Any, n_samples: int, budget_bytes: int | None = DEFAULT_MEMORY_BUDGET_BYTES
) -> None:
    """Raise :class:`MemoryLimitError` if ``estimator`` would exceed the budget on n points."""
    if quadratic_memory_need(estimator, n_samples) > 0:
        check_quadratic_memory(n_samples, type(estimator).__name__, budget_bytes)
