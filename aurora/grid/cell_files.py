"""A grid cell's files: what a cell leaves in its job folder, and how the sweep finds it again.

A cell's job folder holds ``cell.json`` (its meta data, scores and timings) and
``labels.npy`` (int64, (N,)); a cell that failed leaves ``failed.json`` instead (its name,
the error in one line, the exception type, and the traceback of a bug). After the sweep,
:func:`collect_cells` finds every ``cell.json`` under the multirun folder and
:func:`collect_failed` every ``failed.json`` (hidden folders such as ``.previous/`` are
skipped) and :func:`write_failed_csv` writes the failures to ``failed.csv``. The cells are
ranked and written to ``ranking.csv`` / ``results.csv`` by :mod:`aurora.grid.ranking`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aurora.grid.cell import CellResult, cell_name
from aurora.infra.atomic import atomic_write_text
from aurora.infra.guard import one_line

CELL_FILE = "cell.json"
LABELS_FILE = "labels.npy"
FAILED_FILE = "failed.json"
EMBEDDING_FILE = "embedding.npy"


def _json_safe(value: Any) -> Any:
    """NaN/inf -> None (strict JSON), numpy scalars -> Python."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_cell(
    result: CellResult, out_dir: str | Path, meta: Mapping[str, Any], save_embedding: bool = False
) -> Path:
    """Write ``cell.json`` and ``labels.npy`` (and optionally ``embedding.npy``) to ``out_dir``.

    Args:
        result: the cell's result.
        out_dir: the job folder.
        meta: at least ``extractor``, ``reducer``, ``clusterer``, ``n_clusters``, ``seed``;
            anything JSON-serialisable may be added.
        save_embedding: also write the (N, d) embedding.

    Returns:
        Path of ``cell.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / LABELS_FILE, np.asarray(result.labels, dtype=np.int64))
    doc = {
        **dict(meta),
        "cell": cell_name(meta),
        "scores": result.scores,
        "seconds": result.seconds,
        "timings": result.timings,
        "n_samples": int(result.labels.shape[0]),
        "embedding_dim": int(result.embedding.shape[1]),
        "labels": LABELS_FILE,
    }
    if save_embedding:
        np.save(out / EMBEDDING_FILE, result.embedding)
        doc["embedding"] = EMBEDDING_FILE
    # cell.json last: its presence marks a complete cell for collect_cells.
    atomic_write_text(out / CELL_FILE, json.dumps(_json_safe(doc), indent=2) + "\n")
    return out / CELL_FILE


def clear_cell(out_dir: str | Path) -> None:
    """Delete what an earlier computation of a cell left in ``out_dir`` (result or failure)."""
    for name in (CELL_FILE, FAILED_FILE, LABELS_FILE, EMBEDDING_FILE):
        (Path(out_dir) / name).unlink(missing_ok=True)


def write_failed(
    out_dir: str | Path, meta: Mapping[str, Any], err: BaseException, traceback: str | None = None
) -> Path:
    """Record a cell that failed: ``failed.json`` in ``out_dir``.

    Args:
        out_dir: the cell's (or sweep job's) folder.
        meta: what is known of the cell (``extractor``, ``reducer``, ``clusterer``,
            ``n_clusters``, ``seed``; any may be missing when the job failed early).
        err: the exception.
        traceback: the formatted traceback (kept for bugs, so they can be debugged).

    Returns:
        Path of ``failed.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        **dict(meta),
        "cell": cell_name(meta),
        "error": one_line(err),
        "type": type(err).__name__,
    }
    if traceback:
        doc["traceback"] = traceback
    atomic_write_text(out / FAILED_FILE, json.dumps(_json_safe(doc), indent=2, default=str) + "\n")
    return out / FAILED_FILE


def _found(root: Path, name: str) -> list[Path]:
    """``name`` anywhere under ``root``, outside hidden folders (``.previous/``, ``.hydra/``)."""
    return sorted(
        p
        for p in root.rglob(name)
        if not any(part.startswith(".") for part in p.relative_to(root).parts[:-1])
    )


def collect_failed(root: str | Path) -> list[dict[str, Any]]:
    """Every failed cell under a folder: the ``failed.json`` docs plus ``cell_dir`` (absolute)."""
    rows = []
    for path in _found(Path(root), FAILED_FILE):
        doc = json.loads(path.read_text())
        rows.append({**doc, "cell_dir": str(path.parent.resolve())})
    return rows


def write_failed_csv(failed: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """``failed.csv``: ``cell,error,folder`` (the cell's folder relative to the CSV's)."""
    path = Path(path)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["cell", "error", "folder"])
    base = path.parent.resolve()
    for row in failed:
        folder = (
            Path(os.path.relpath(row["cell_dir"], base)).as_posix() if "cell_dir" in row else ""
        )
        writer.writerow([row["cell"], row["error"], folder])
    atomic_write_text(path, buf.getvalue())


def collect_cells(root: str | Path) -> list[dict[str, Any]]:
    """Every cell under a multirun folder, flattened: meta, scores, ``labels_path`` (absolute).

    Args:
        root: the multirun folder (searched recursively for ``cell.json``, outside hidden
            folders such as ``.previous/``).

    Returns:
        One dict per cell, sorted by folder; null scores are read back as NaN.
    """
    rows = []
    for path in _found(Path(root), CELL_FILE):
        doc = json.loads(path.read_text())
        scores = {k: (math.nan if v is None else v) for k, v in doc.pop("scores", {}).items()}
        row = {**doc, **scores}
        row["labels_path"] = str((path.parent / doc.get("labels", LABELS_FILE)).resolve())
        row["cell_dir"] = str(path.parent.resolve())
        rows.append(row)
    return rows
