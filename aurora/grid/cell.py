"""One grid cell: its spec and name, and running it (reduce -> cluster -> score).

What a cell leaves in its job folder, and how the sweep finds it again, is
:mod:`aurora.grid.cell_files`.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
from aurora.infra.cache import Cache
from aurora.infra.config import make_estimator
from aurora.reduction import fit_transform_cached


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
    """Reduce (cached), cluster and score one cell: its :class:`CellResult`.

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
        nuisance: optional name -> (N,) values (``{"moon": flags}``): ``nuisance_ami_<name>``.
        memory_budget_bytes: n² memory budget for reducers and clusterers.
        fit_rows: (m,) sorted rows to fit on (constraint rows among them), or None = all.
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
    est, labels, constraints = _cluster(
        emb,
        clusterer_cfg,
        seed=seed,
        must_link=must_link,
        cannot_link=cannot_link,
        fit_rows=fit_rows,
        memory_budget_bytes=memory_budget_bytes,
    )
    t2 = time.perf_counter()
    scores = _score(
        emb,
        labels,
        est,
        seed=seed,
        constraints=constraints,
        must_link=must_link,
        cannot_link=cannot_link,
        fit_rows=fit_rows,
        stability_splits=stability_splits,
        silhouette_sample=silhouette_sample,
        truth=truth,
        nuisance=nuisance,
    )
    t3 = time.perf_counter()
    timings = {"reduce": t1 - t0, "cluster": t2 - t1, "score": t3 - t2}
    return CellResult(labels=labels, embedding=emb, scores=scores, seconds=t3 - t0, timings=timings)


def _cluster(
    emb: np.ndarray,
    clusterer_cfg: Mapping[str, Any] | DictConfig,
    *,
    seed: int,
    must_link: Any,
    cannot_link: Any,
    fit_rows: np.ndarray | None,
    memory_budget_bytes: int | None,
) -> tuple[Any, np.ndarray, dict[str, Any]]:
    """Fit the cell's clusterer on the embedding (N, d), or on its ``fit_rows``, and label all.

    Returns:
        (the fitted estimator, labels (N,) int64, the constraints its ``fit`` was given:
        ``must_link`` / ``cannot_link`` as rows of the fitted embedding, or empty when the
        clusterer takes none or there are none).
    """
    est = make_estimator(clusterer_cfg, seed)
    fit_emb = emb if fit_rows is None else emb[fit_rows]
    check_estimator_memory(est, fit_emb.shape[0], memory_budget_bytes)
    uses_constraints = "must_link" in inspect.signature(est.fit).parameters and (
        must_link is not None or cannot_link is not None
    )
    constraints = {"must_link": must_link, "cannot_link": cannot_link} if uses_constraints else {}
    if fit_rows is None:
        est.fit(emb, **constraints)
        return est, np.asarray(est.labels_, dtype=np.int64), constraints
    constraints = {k: rows_of(v, fit_rows) for k, v in constraints.items()}
    return est, fit_on_rows(est, emb, fit_rows, constraints), constraints


def _score(
    emb: np.ndarray,
    labels: np.ndarray,
    est: Any,
    *,
    seed: int,
    constraints: Mapping[str, Any],
    must_link: Any,
    cannot_link: Any,
    fit_rows: np.ndarray | None,
    stability_splits: int,
    silhouette_sample: int,
    truth: Sequence[Any] | None,
    nuisance: Mapping[str, Sequence[Any]] | None,
) -> dict[str, float]:
    """The cell's scores: internal, stability (on the fitted rows), constraints, external.

    Args:
        emb: (N, d) embedding; labels: (N,) its labels; est: the clusterer, refitted for the
            stability score with ``constraints`` (as :func:`_cluster` returned them).
        must_link, cannot_link: the cell's constraint pairs on all N rows (violations counted).
        The rest as in :func:`run_cell`.
    """
    fit_emb = emb if fit_rows is None else emb[fit_rows]
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
            constraints_used=float(bool(constraints)),
            must_link_violations=float(ml_v),
            cannot_link_violations=float(cl_v),
        )
    if truth is not None:
        scores.update(external_scores(labels, truth))
    for name, values in (nuisance or {}).items():
        scores[f"nuisance_ami_{name}"] = nuisance_dependence(labels, values)
    return scores


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
