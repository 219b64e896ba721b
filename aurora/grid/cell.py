"""One grid cell: its spec and name, running it (reduce -> cluster -> score), and its files.

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
import inspect
import io
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from aurora.clustering import count_violations
from aurora.clustering.memory import DEFAULT_MEMORY_BUDGET_BYTES, check_estimator_memory
from aurora.grid.sample import fit_on_rows, rows_of
from aurora.grid.scoring import (
    DEFAULT_SILHOUETTE_SAMPLE,
    external_scores,
    internal_scores,
    nuisance_dependence,
    stability_scores,
)
from aurora.infra.atomic import atomic_write_text
from aurora.infra.cache import Cache
from aurora.infra.config import make_estimator
from aurora.infra.guard import one_line
from aurora.reduction import fit_transform_cached

CELL_FILE = "cell.json"
LABELS_FILE = "labels.npy"
FAILED_FILE = "failed.json"
EMBEDDING_FILE = "embedding.npy"


@dataclass
class CellResult:
    """Outcome of one grid cell.

    Attributes:
        labels: (N,) int64 cluster labels.
        embedding: (N, d) reduced features the clustering ran on.
        scores: score name -> value (NaN when undefined), plus constraint violation counts.
        seconds: wall time of the whole cell.
        timings: seconds per step (``reduce``, ``cluster``, ``score``).
    """

    labels: np.ndarray
    embedding: np.ndarray
    scores: dict[str, float]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)


def run_cell(
    features: np.ndarray,
    reducer_cfg: Mapping[str, Any] | DictConfig,
    clusterer_cfg: Mapping[str, Any] | DictConfig,
    *,
    seed: int,
    cache: Cache,
    features_key: str,
    must_link: Any = None,
    cannot_link: Any = None,
    stability_splits: int = 3,
    silhouette_sample: int = DEFAULT_SILHOUETTE_SAMPLE,
    truth: Sequence[Any] | None = None,
    nuisance: Mapping[str, Sequence[Any]] | None = None,
    memory_budget_bytes: int | None = DEFAULT_MEMORY_BUDGET_BYTES,
    fit_rows: np.ndarray | None = None,
) -> CellResult:
    """Reduce (cached), cluster and score one cell.

    With ``fit_rows`` (:func:`aurora.grid.sample.fit_sample_rows`), the reducer and the clusterer
    are fitted on those rows and every row is assigned (``transform``/``predict``, nearest
    neighbours where the method has none); stability is computed on subsamples of the fitted
    rows, and the scores record ``fit_sample`` (the silhouette is sampled as always).

    Args:
        features: (N, D) features.
        reducer_cfg: reducer YAML node (``_target_`` ...).
        clusterer_cfg: clusterer YAML node (``_target_`` ..., ``n_clusters``).
        seed: run seed (random states, stability split, silhouette subsample).
        cache: shared cache; reductions are stored there.
        features_key: cache key of ``features``.
        must_link: (M, 2) pairs; used only by clusterers whose ``fit`` takes constraints.
        cannot_link: (C, 2) pairs; idem.
        stability_splits: disjoint subsamples for the stability score (0 or 1 = skip).
        silhouette_sample: silhouette subsample size above which it is sampled.
        truth: optional (N,) true classes (None = unknown) for external scores.
        nuisance: optional name -> (N,) nuisance values (e.g. ``{"moon": flags}``); gives
            ``nuisance_ami_<name>``.
        memory_budget_bytes: n² memory budget for reducers and clusterers.
        fit_rows: (m,) sorted rows to fit on (constraint rows among them), or None = all.

    Returns:
        The :class:`CellResult`.
    """
    t0 = time.perf_counter()
    emb = fit_transform_cached(
        features,
        reducer_cfg,
        seed,
        cache,
        features_key,
        memory_budget_bytes=memory_budget_bytes,
        fit_rows=fit_rows,
    )
    t1 = time.perf_counter()
    est = make_estimator(clusterer_cfg, seed)
    fit_emb = emb if fit_rows is None else emb[fit_rows]
    check_estimator_memory(est, fit_emb.shape[0], memory_budget_bytes)
    uses_constraints = "must_link" in inspect.signature(est.fit).parameters and (
        must_link is not None or cannot_link is not None
    )
    constraints = {"must_link": must_link, "cannot_link": cannot_link} if uses_constraints else {}
    if fit_rows is None:
        est.fit(emb, **constraints)
        labels = np.asarray(est.labels_, dtype=np.int64)
    else:
        constraints = {k: rows_of(v, fit_rows) for k, v in constraints.items()}
        labels = fit_on_rows(est, emb, fit_rows, constraints)
    t2 = time.perf_counter()
    scores: dict[str, float] = dict(
        internal_scores(emb, labels, sample_size=silhouette_sample, seed=seed)
    )
    scores["n_clusters_found"] = float(np.unique(labels[labels >= 0]).size)
    if fit_rows is not None:
        scores["fit_sample"] = float(len(fit_rows))
    if stability_splits >= 2:
        scores.update(
            stability_scores(est, fit_emb, n_splits=stability_splits, seed=seed, **constraints)
        )
    else:
        scores.update(stability_ari=math.nan, stability_ami=math.nan)
    if must_link is not None or cannot_link is not None:
        ml_v, cl_v = count_violations(labels, must_link, cannot_link)
        scores.update(
            constraints_used=float(uses_constraints),
            must_link_violations=float(ml_v),
            cannot_link_violations=float(cl_v),
        )
    if truth is not None:
        scores.update(external_scores(labels, truth))
    for name, values in (nuisance or {}).items():
        scores[f"nuisance_ami_{name}"] = nuisance_dependence(labels, values)
    t3 = time.perf_counter()
    return CellResult(
        labels=labels,
        embedding=emb,
        scores=scores,
        seconds=t3 - t0,
        timings={"reduce": t1 - t0, "cluster": t2 - t1, "score": t3 - t2},
    )


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


def cell_name(meta: Mapping[str, Any], sep: str = "/") -> str:
    """The one spelling of a cell's name, from what is known of it.

    ``extractor``, ``reducer``, ``clusterer``, ``k<n_clusters>`` and ``s<seed>``, those present,
    joined by ``sep``: ``resnet50/pca/kmeans/k30/s0`` in tables and logs; with ``sep="__"`` and
    no seed, ``resnet50__pca__kmeans__k30``, the cell's folder.
    """
    if meta.get("cell"):
        return str(meta["cell"])
    parts = [str(meta[k]) for k in ("extractor", "reducer", "clusterer") if k in meta]
    if "n_clusters" in meta:
        parts.append(f"k{meta['n_clusters']}")
    if "seed" in meta:
        parts.append(f"s{meta['seed']}")
    return sep.join(parts)


@dataclass(frozen=True)
class CellSpec:
    """One grid cell: which features, reducer, clusterer and number of clusters.

    Attributes:
        requested: the k asked for when ``n_clusters`` was lowered to what the data allows
            (a sweep job's ``clusterer.n_clusters``), else None; recorded as
            ``n_clusters_requested`` in ``cell.json``, not part of the name.
    """

    extractor: str
    reducer: str
    clusterer: str
    n_clusters: int
    requested: int | None = None

    @property
    def name(self) -> str:
        """Folder name: :func:`cell_name` joined by ``__``, e.g. ``simclr__pca__kmeans__k12``."""
        return cell_name(
            {k: getattr(self, k) for k in ("extractor", "reducer", "clusterer", "n_clusters")},
            sep="__",
        )


def grid_cells(
    extractors: Sequence[str],
    reducers: Sequence[str],
    clusterers: Sequence[str],
    n_clusters: Sequence[int],
) -> list[CellSpec]:
    """The full product of the grid axes, in a fixed order."""
    return [
        CellSpec(e, r, c, int(k))
        for e in extractors
        for r in reducers
        for c in clusterers
        for k in n_clusters
    ]


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
