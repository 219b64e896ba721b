"""Candidate choice: the best-ranked partitions of ``ranking.csv``, overall or per extractor."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aurora.fusion.partitions import FusionError
from aurora.grid.ranking import RANKING_COLUMNS

__all__ = ["load_partitions", "select_partitions"]

ALL_KEY = "all"


def select_partitions(
    ranking_csv: str | Path, top_n: int, per_extractor: bool
) -> dict[str, list[Path]]:
    """Pick the top-``top_n`` cells of a ranking, overall or per extractor.

    Args:
        ranking_csv: ``ranking.csv`` with :data:`RANKING_COLUMNS`; ``labels_path`` is relative
            to the CSV's folder (absolute paths are kept).
        top_n: number of cells to keep per group (fewer if the group has fewer).
        per_extractor: one group per extractor (the thesis's choice) instead of one group
            ``"all"``.

    Returns:
        Group name -> label file paths, best rank first. Groups appear in the order of their
        best cell.

    Raises:
        FusionError: missing file or columns, bad rank, ``top_n < 1``, missing label file.
    """
    path = Path(ranking_csv)
    if top_n < 1:
        raise FusionError(f"top_n must be >= 1, got {top_n}")
    if not path.is_file():
        raise FusionError(f"ranking file not found: {path}")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in RANKING_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise FusionError(f"{path}: missing columns {missing}")
        rows = list(reader)
    parsed: list[tuple[float, int, str, Path]] = []
    for line, row in enumerate(rows, start=2):
        try:
            rank = float(row["rank"])
        except ValueError as exc:
            raise FusionError(f"{path}:{line}: rank {row['rank']!r} is not a number") from exc
        labels = Path(row["labels_path"])
        if not labels.is_absolute():
            labels = path.parent / labels
        parsed.append((rank, line, row["extractor"], labels))
    parsed.sort(key=lambda r: (r[0], r[1]))  # stable on file order for equal ranks
    groups: dict[str, list[Path]] = {}
    for _, _, extractor, labels in parsed:
        key = extractor if per_extractor else ALL_KEY
        chosen = groups.setdefault(key, [])
        if len(chosen) < top_n:
            chosen.append(labels)
    for chosen in groups.values():
        for p in chosen:
            if not p.is_file():
                raise FusionError(f"{path}: labels file of a selected cell not found: {p}")
    return groups


def load_partitions(paths: Sequence[str | Path]) -> np.ndarray:
    """Load label files into one array.

    Args:
        paths: ``.npy`` files, each int (N,), -1 = unassigned.

    Returns:
        int64 array (P, N) in the order of ``paths``.

    Raises:
        FusionError: no paths, a file that is not a 1-D integer array, or different lengths.
    """
    if not paths:
        raise FusionError("no partitions to load")
    out = []
    for p in paths:
        try:
            arr = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise FusionError(f"cannot read labels file {p}: {exc}") from exc
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise FusionError(f"{p}: expected a 1-D integer array, got {arr.dtype} {arr.shape}")
        if out and arr.shape != out[0].shape:
            raise FusionError(f"{p}: has {arr.size} labels, {paths[0]} has {out[0].size}")
        out.append(arr.astype(np.int64))
    return np.stack(out)
