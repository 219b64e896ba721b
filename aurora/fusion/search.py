"""Choice of the fusion parameters by the thesis's group-size loss.

Grid: number of partitions (a prefix of the ranked list) x threshold x minimum group size.
Work is shared across the grid: the signatures of each prefix are computed once, one pass of
sparse products gives the components at every threshold, and each minimum size only renumbers.

Loss of a setting with groups of sizes ``s_1 >= s_2 >= ... >= s_K`` (unassigned images are not
a group), ``N`` images and a target of ``G`` equal groups::

    L = max(K, G)
    size_loss = (1/L) * sum_{i<L} |s_i - t_i|,  t_i = N/G for i < G, else 0;  s_i = 0 for i >= K
    loss = size_loss + unassigned_penalty * (number of images labelled -1)

i.e. when the number of groups differs from ``G`` the shorter sorted list is padded with zeros
(a missing group costs its whole target size, a surplus group its whole size).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aurora.data.manifest import write_labels_csv
from aurora.fusion.graph import components_for_thresholds, finalize_labels
from aurora.fusion.neighbours import FusedNeighbours
from aurora.fusion.params import (
    validate_each,
    validate_min_cluster_size,
    validate_n_partitions,
    validate_target_groups,
    validate_threshold,
    validate_unassigned_penalty,
    validate_weights,
)
from aurora.fusion.partitions import FusionError, compress_partitions, validate_partitions
from aurora.grid.scoring import n_groups
from aurora.infra.atomic import atomic_write_text

__all__ = [
    "FusionSearchResult",
    "fusion_grid_labels",
    "group_size_loss",
    "plot_search_landscape",
    "run_fusion_search",
    "search_fusion",
]

TABLE_COLUMNS = (
    "n_partitions", "threshold", "min_cluster_size", "n_groups", "n_unassigned",
    "largest_group", "size_loss", "unassigned_cost", "loss",
)  # fmt: skip


def group_size_loss(
    labels: np.ndarray, target_groups: int, *, unassigned_penalty: float = 0.0
) -> tuple[float, float]:
    """Thesis loss of one fused labelling (see module docstring).

    Args:
        labels: (N,) int labels, -1 = unassigned.
        target_groups: G, the number of equal groups aimed for.
        unassigned_penalty: cost per image labelled -1.

    Returns:
        ``(size_loss, loss)`` where ``loss = size_loss + unassigned_penalty * n_unassigned``.
    """
    target_groups = validate_target_groups(target_groups)
    unassigned_penalty = validate_unassigned_penalty(unassigned_penalty)
    y = np.asarray(labels)
    n = y.size
    sizes = np.sort(np.bincount(y[y >= 0]))[::-1] if (y >= 0).any() else np.zeros(0)
    sizes = sizes[sizes > 0].astype(np.float64)
    length = max(sizes.size, target_groups)
    s = np.zeros(length)
    s[: sizes.size] = sizes
    t = np.zeros(length)
    t[:target_groups] = n / target_groups
    size_loss = float(np.abs(s - t).mean())
    return size_loss, size_loss + float(unassigned_penalty) * int((y < 0).sum())


@dataclass
class FusionSearchResult:
    """Outcome of :func:`search_fusion`.

    Attributes:
        table: one dict per setting with :data:`TABLE_COLUMNS`, in grid order.
        best: the row with the lowest loss (first in grid order on ties).
        labels: (n,) int64 fused labels of the best setting.
        target_groups: G used by the loss.
    """

    table: list[dict[str, Any]]
    best: dict[str, Any]
    labels: np.ndarray
    target_groups: int

    def write_table(self, path: str | Path) -> None:
        """Write the table as CSV."""
        lines = [",".join(TABLE_COLUMNS)]
        lines += [",".join(_fmt(row[c]) for c in TABLE_COLUMNS) for row in self.table]
        atomic_write_text(path, "\n".join(lines) + "\n")


def _fmt(v: Any) -> str:
    return repr(v) if isinstance(v, float) else str(v)


def search_fusion(
    partitions_ranked: np.ndarray,
    *,
    n_partitions: Sequence[int],
    thresholds: Sequence[float],
    min_sizes: Sequence[int],
    target_groups: int,
    unassigned_penalty: float = 0.0,
    weights: Sequence[float] | None = None,
    max_block_entries: int = 4_000_000,
    progress: bool | None = None,
) -> FusionSearchResult:
    """Score every fusion setting of the grid and keep the best.

    Args:
        partitions_ranked: (P, n) int labels, best-ranked partition first, -1 = unassigned.
        n_partitions: numbers of leading partitions to fuse (each >= 1); values above P mean P
            (the table records the number actually fused).
        thresholds: co-association thresholds (finite).
        min_sizes: minimum group sizes (each >= 0).
        target_groups: G of the loss.
        unassigned_penalty: loss per unassigned image.
        weights: optional (P,) weights of the ranked partitions (the prefix is used).
        max_block_entries: passed to the sparse products.
        progress: tqdm bars; ``None`` = only for large inputs.

    Returns:
        The table, the best row and its labels.

    Raises:
        FusionError: bad partitions, or a parameter that cannot work
            (:class:`aurora.fusion.params.FusionParameterError`, naming it).
    """
    parts = validate_partitions(partitions_ranked)
    n_total = parts.shape[0]
    w_all = validate_weights(weights, n_total)
    ks = validate_each(n_partitions, validate_n_partitions, key="n_partitions")
    thresholds = validate_each(thresholds, validate_threshold, key="thresholds", weights=w_all)
    sizes = validate_each(min_sizes, validate_min_cluster_size, key="min_sizes")
    target_groups = validate_target_groups(target_groups)
    unassigned_penalty = validate_unassigned_penalty(unassigned_penalty)
    if parts.shape[1] == 0:
        raise FusionError("no images to fuse (n = 0)")
    # Fewer candidates than asked (e.g. an extractor with few cells): use them all, once.
    counts = list(dict.fromkeys(min(k, n_total) for k in ks))

    table: list[dict[str, Any]] = []
    best_row: dict[str, Any] | None = None
    best_labels = np.zeros(0, np.int64)
    grid = fusion_grid_labels(
        parts, counts, thresholds, sizes, w_all,
        max_block_entries=max_block_entries, progress=progress,
    )  # fmt: skip
    for k, t, ms, labels in grid:
        size_loss, loss = group_size_loss(
            labels, target_groups, unassigned_penalty=unassigned_penalty
        )
        n_un = int((labels < 0).sum())
        sizes_found = np.bincount(labels[labels >= 0]) if n_un < labels.size else [0]
        row = {
            "n_partitions": k,
            "threshold": t,
            "min_cluster_size": ms,
            "n_groups": n_groups(labels),
            "n_unassigned": n_un,
            "largest_group": int(np.max(sizes_found)),
            "size_loss": size_loss,
            "unassigned_cost": loss - size_loss,
            "loss": loss,
        }
        table.append(row)
        if best_row is None or loss < best_row["loss"]:
            best_row, best_labels = row, labels
    assert best_row is not None
    return FusionSearchResult(table, best_row, best_labels, int(target_groups))


def fusion_grid_labels(
    parts: np.ndarray,
    counts: Sequence[int],
    thresholds: Sequence[float],
    min_sizes: Sequence[int],
    weights: np.ndarray,
    *,
    max_block_entries: int = 4_000_000,
    progress: bool | None = None,
) -> Iterator[tuple[int, float, int, np.ndarray]]:
    """Fused labels at every setting of a grid, sharing the work as the module docstring says.

    Args:
        parts: (P, n) validated ranked partitions, -1 = unassigned.
        counts: numbers of leading partitions to fuse, each in 1..P.
        thresholds: co-association thresholds.
        min_sizes: validated minimum group sizes.
        weights: (P,) validated weights of the ranked partitions (the prefix is used).
        max_block_entries: passed to the sparse products.
        progress: tqdm bars; ``None`` = only for large inputs.

    Yields:
        ``(n_partitions, threshold, min_cluster_size, labels (n,) int64)`` in grid order.
    """
    for k in counts:
        sigs = compress_partitions(parts[:k])
        results = components_for_thresholds(
            sigs, list(thresholds), weights[:k],
            max_block_entries=max_block_entries, progress=progress,
        )  # fmt: skip
        for t, res in zip(thresholds, results, strict=True):
            for ms in min_sizes:
                yield k, float(t), ms, finalize_labels(res, sigs.inverse, ms)


def plot_search_landscape(result: FusionSearchResult, path: str | Path) -> None:
    """PNG of loss vs threshold, one line per number of partitions, one panel per min size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    min_sizes = sorted({r["min_cluster_size"] for r in result.table})
    n_parts = sorted({r["n_partitions"] for r in result.table})
    cols = min(len(min_sizes), 3)
    rows = -(-len(min_sizes) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
    for ax, ms in zip(axes.flat, min_sizes, strict=False):
        for k in n_parts:
            pts = sorted(
                (r["threshold"], r["loss"])
                for r in result.table
                if r["min_cluster_size"] == ms and r["n_partitions"] == k
            )
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=f"P={k}")
        b = result.best
        if b["min_cluster_size"] == ms:
            ax.plot(b["threshold"], b["loss"], marker="*", ms=14, color="k", label="best")
        ax.set_title(f"min group size {ms}")
        ax.set_xlabel("threshold t")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(min_sizes) :]:
        ax.set_visible(False)
    fig.suptitle(f"Fusion search (target {result.target_groups} groups)")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_fusion_search(
    partitions_ranked: np.ndarray,
    ids: Sequence[str],
    out_dir: str | Path,
    *,
    n_partitions: Sequence[int],
    thresholds: Sequence[float],
    min_sizes: Sequence[int],
    target_groups: int,
    unassigned_penalty: float = 0.0,
    embedding: np.ndarray | None = None,
    n_neighbors: int = 1,
    weights: Sequence[float] | None = None,
) -> FusionSearchResult:
    """Search, then write ``fusion_search.csv``, ``fusion_landscape.png``, ``labels.csv`` and,
    given the (n, d) embedding, ``neighbours.npz`` (a :class:`FusedNeighbours`) in ``out_dir``.
    """
    out = Path(out_dir)
    res = search_fusion(
        partitions_ranked, n_partitions=n_partitions, thresholds=thresholds,
        min_sizes=min_sizes, target_groups=target_groups,
        unassigned_penalty=unassigned_penalty, weights=weights,
    )  # fmt: skip
    res.write_table(out / "fusion_search.csv")
    plot_search_landscape(res, out / "fusion_landscape.png")
    if len(ids) != res.labels.size:
        raise FusionError(f"{len(ids)} image ids but {res.labels.size} labels")
    write_labels_csv(out / "labels.csv", ids, {"label": [int(v) for v in res.labels]})
    if embedding is not None and (res.labels >= 0).any():
        FusedNeighbours(n_neighbors=n_neighbors).fit(embedding, res.labels).save(
            out / "neighbours.npz"
        )
    return res
