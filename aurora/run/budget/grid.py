"""Peak memory of the grid (its worst cell of extractors x reducers x clusterers) and of the
fusion, from the nodes' settings and the calibrated terms of :mod:`aurora.run.budget.model`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aurora.clustering.memory import DEFAULT_MEMORY_BUDGET_BYTES, quadratic_bytes
from aurora.run.budget.extractors import reduced_dim
from aurora.run.budget.model import (
    DENSE_MATRICES,
    EMBEDDING_COPIES,
    EMBEDDING_ITEMSIZE,
    FUSION_BYTES_PER_LABEL,
    SILHOUETTE_ITEMSIZE,
    SILHOUETTE_SAMPLE,
    SPARSE_GRAPH_BYTES_PER_ROW,
    UMAP_BYTES_PER_ROW,
    UMAP_FIXED_BYTES,
    Part,
    describe_parts,
    largest,
)


def _target(node: Mapping[str, Any] | None) -> str:
    """The class name of a node's ``_target_`` (``sklearn.decomposition.PCA`` -> ``PCA``)."""
    return str((node or {}).get("_target_", "")).rsplit(".", 1)[-1]


def _dense_bytes(node: Mapping[str, Any], m: int) -> int:
    """Bytes of the m x m float64 matrices a method allocates (0 for a sparse one)."""
    name = _target(node)
    copies = DENSE_MATRICES.get(name, 0)
    if not copies:
        return 0
    connected = node.get("connectivity_neighbors") or node.get("connectivity") is not None
    if name in ("WardClustering", "AgglomerativeClustering") and connected:
        return 0
    if name == "SpectralClustering" and node.get("affinity", "rbf") in (
        "nearest_neighbors",
        "precomputed_nearest_neighbors",
    ):
        return 0
    return copies * quadratic_bytes(m)


def _refused(node: Mapping[str, Any], dense: int, m: int) -> bool:
    """Whether a cell's n*n guard refuses this dense method on m rows before it allocates
    (:func:`aurora.clustering.memory.check_quadratic_memory`: one m*m float64 matrix against the
    node's ``memory_budget_bytes``, else the run's default)."""
    budget = node.get("memory_budget_bytes", DEFAULT_MEMORY_BUDGET_BYTES)
    return bool(dense) and budget is not None and quadratic_bytes(m) > int(budget)


def _fit_work(node: Mapping[str, Any], m: int, dim: int, out_dim: int) -> int:
    """The fit's own memory on m rows of ``dim``-d input (reducer or clusterer), not dense."""
    name = _target(node).lower()
    if "umap" in name:
        return UMAP_FIXED_BYTES + m * UMAP_BYTES_PER_ROW
    if node.get("n_neighbors") or node.get("connectivity_neighbors"):
        return m * SPARSE_GRAPH_BYTES_PER_ROW
    # A linear fit (PCA's SVD, K-means): a centred copy and a factor of the sample.
    return 2 * m * dim * 4 + m * out_dim * 4


def grid_memory(
    n: int,
    dims: Mapping[str, int],
    reducers: Mapping[str, Mapping[str, Any]],
    clusterers: Mapping[str, Mapping[str, Any]],
    fit_sample: int | None,
    base_bytes: int,
    held_bytes: int = 0,
) -> tuple[int, str, str, int]:
    """Peak memory of the grid: the worst cell of extractors x reducers x clusterers.

    Args:
        n: rows.
        dims: extractor name -> feature dimension D.
        reducers: reducer name -> node.
        clusterers: clusterer name -> node.
        fit_sample: ``grid.fit_sample`` (None = fit on every row).
        base_bytes: the process before the grid (interpreter, libraries, bookkeeping).
        held_bytes: in-memory feature copies the run holds besides the cell's own features.

    Returns:
        (bytes, detail line, key to change, cells the n*n guard will refuse).
    """
    m = n if fit_sample is None else min(n, int(fit_sample))
    s = min(n, SILHOUETTE_SAMPLE)
    best: tuple[int, list[Part], str] | None = None
    refused = 0
    for ext, dim in dims.items():
        for rname, rnode in reducers.items():
            d = reduced_dim(rnode, dim)
            r_dense = _dense_bytes(rnode, m)
            for cname, cnode in clusterers.items():
                c_dense = _dense_bytes(cnode, m)
                if _refused(rnode, r_dense, m) or _refused(cnode, c_dense, m):
                    refused += 1  # refused by its guard before it allocates: recorded, not run
                    continue
                square = f"{m:,}x{m:,} float64"
                fits = [
                    Part(
                        square if r_dense else f"{rname} fit on {m:,} rows",
                        (r_dense or _fit_work(rnode, m, dim, d)) + m * dim * 4,
                        "grid.fit_sample",
                    ),
                    Part(
                        square if c_dense else f"{cname} fit on {m:,} rows",
                        c_dense or _fit_work(cnode, m, d, d),
                        "grid.fit_sample",
                    ),
                    Part(
                        f"silhouette {s:,}x{s:,}", s * s * SILHOUETTE_ITEMSIZE, "budget.memory_gb"
                    ),
                ]
                parts = [
                    Part(f"features {n:,}x{dim}", n * dim * 4, "grid.extractors"),
                    Part(
                        f"embedding {n:,}x{d} x{EMBEDDING_COPIES:g}",
                        int(EMBEDDING_COPIES * n * d * EMBEDDING_ITEMSIZE),
                        f"reducers.{rname}.n_components",
                    ),
                    largest(fits),
                ]
                total = sum(p.bytes for p in parts)
                if best is None or total > best[0]:
                    best = (total, parts, f"{ext}/{rname}/{cname}")
    if best is None:
        return base_bytes + held_bytes, f"all {refused} cells refused by the n*n guard", "", refused
    total, parts, cell = best
    detail = f"worst cell {cell}: " + describe_parts(parts)
    if refused:
        detail += f"; {refused} cells over the n*n guard will be refused"
    return base_bytes + held_bytes + total, detail, largest(parts).key, refused


def fusion_memory(n: int, n_partitions: int, base_bytes: int, held_bytes: int = 0) -> int:
    """Peak memory of the fusion of ``n_partitions`` partitions of n images."""
    return base_bytes + held_bytes + n * n_partitions * FUSION_BYTES_PER_LABEL
