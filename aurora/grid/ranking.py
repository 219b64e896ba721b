"""Borda ranking of grid cells over the four internal criteria (the thesis's method).

Each cell gets a rank under each criterion (1 = best): silhouette (higher better),
Calinski-Harabasz (higher better), Davies-Bouldin (lower better), stability ARI (higher
better). Tied values share the best rank of their tie ("1, 2, 2, 4"); NaN is worse than any
number, and all NaN cells of a criterion share the rank after the last number. The Borda
score is the sum of the four ranks; cells are ordered by Borda score (lowest first), ties
broken by the cell name (string order), so the order is deterministic.

Writers: :func:`write_ranking` ranks the grid's cells (as
``aurora.grid.cell_files.collect_cells`` returns them) and writes ``ranking.csv``
(:data:`RANKING_COLUMNS`, read back by the fusion stage);
:func:`write_results` writes every scalar field of every cell to ``results.csv``.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aurora.infra.atomic import atomic_write_text

CRITERIA: tuple[tuple[str, bool], ...] = (
    ("silhouette", True),
    ("calinski_harabasz", True),
    ("davies_bouldin", False),
    ("stability_ari", True),
)
"""(score name, higher is better) for each Borda criterion."""

CELL_COLUMNS: tuple[str, ...] = ("cell", "extractor", "reducer", "clusterer", "n_clusters", "seed")
"""What names a grid cell: the first columns of ``results.csv`` (every other scalar field of the
cells follows, in order of first appearance) and, after ``rank``, of ``ranking.csv``."""

RANKING_COLUMNS: tuple[str, ...] = (
    "rank",
    *CELL_COLUMNS,
    "silhouette",
    "calinski_harabasz",
    "davies_bouldin",
    "stability_ari",
    "stability_ami",
    "borda",
    "labels_path",
)
"""Columns of ``ranking.csv``, in order (read by the fusion stage)."""


def rank_values(values: Sequence[float], higher_is_better: bool) -> np.ndarray:
    """Competition ranks (1 = best, ties share the lowest rank, NaN last).

    Args:
        values: (n,) scores; ``None`` counts as NaN.
        higher_is_better: direction of the criterion.

    Returns:
        (n,) int64 ranks.
    """
    v = np.array([np.nan if x is None else float(x) for x in values], dtype=float)
    key = np.where(np.isnan(v), np.inf, -v if higher_is_better else v)
    # rank = 1 + number of cells strictly better; inf == inf makes NaN cells tie with each other.
    return 1 + (key[None, :] < key[:, None]).sum(axis=1).astype(np.int64)


def borda_rank(
    cells: Sequence[Mapping[str, Any]],
    criteria: Sequence[tuple[str, bool]] = CRITERIA,
    name_key: str = "cell",
) -> list[dict[str, Any]]:
    """Order cells by Borda count.

    Args:
        cells: one mapping per cell with the criterion scores (missing = NaN) and ``name_key``.
        criteria: (score name, higher is better) pairs.
        name_key: key of the cell name used to break ties.

    Returns:
        Copies of the cells, best first, each with ``rank`` (1..n, unique), ``borda`` (sum of
        ranks) and ``rank_<criterion>`` added.
    """
    if not cells:
        return []
    ranks = {name: rank_values([c.get(name) for c in cells], higher) for name, higher in criteria}
    borda = np.sum([r for r in ranks.values()], axis=0)
    out = []
    for i, c in enumerate(cells):
        row = dict(c)
        for name, r in ranks.items():
            row[f"rank_{name}"] = int(r[i])
        row["borda"] = int(borda[i])
        out.append(row)
    out.sort(key=lambda r: (r["borda"], str(r.get(name_key, ""))))
    for position, row in enumerate(out, start=1):
        row["rank"] = position
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float | np.floating):
        return "nan" if math.isnan(value) else repr(float(value))
    return str(value)


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | Path, columns: Sequence[str]) -> None:
    """Write ``rows`` to a CSV file with exactly ``columns`` (atomic)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_fmt(row.get(col)) for col in columns])
    atomic_write_text(path, buf.getvalue())


def _relative_labels(rows: Sequence[Mapping[str, Any]], path: Path) -> list[dict[str, Any]]:
    """Copies of ``rows`` with ``labels_path`` relative to the folder of ``path``."""
    base = path.parent.resolve()
    return [
        {**r, "labels_path": Path(os.path.relpath(r["labels_path"], base)).as_posix()} for r in rows
    ]


def write_ranking(cells: Sequence[Mapping[str, Any]], path: str | Path) -> list[dict[str, Any]]:
    """Borda-rank ``cells`` and write ``ranking.csv``.

    Args:
        cells: one mapping per cell with its scores and an absolute ``labels_path``.
        path: the CSV to write; ``labels_path`` is written relative to its folder.

    Returns:
        The ranked rows (see :func:`borda_rank`), ``labels_path`` as given.
    """
    path = Path(path)
    ranked = borda_rank(cells)
    write_csv(_relative_labels(ranked, path), path, RANKING_COLUMNS)
    return ranked


def write_results(cells: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """Write every cell with all its scalar fields to ``results.csv`` (one row per cell)."""
    path = Path(path)
    columns: list[str] = list(CELL_COLUMNS)
    for row in cells:
        for k, v in row.items():
            if k not in columns and not isinstance(v, Mapping | list):
                columns.append(k)
    write_csv(_relative_labels(cells, path), path, columns)
