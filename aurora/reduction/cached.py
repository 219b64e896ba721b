"""Dimensionality reduction, fitted once per (features, reducer config, seed) and cached.

Reducers are plain scikit-learn / umap-learn estimators instantiated from the YAML node's
``_target_``. Their ``random_state`` is set from the run seed unless the YAML gives one.

Cache entry (stage ``reduce``, key = hash of features key, reducer config and seed):
``embedding.npy`` (N, d) float, ``meta.json`` and, for a reducer whose ``transform`` is an
affine map (PCA, the identity), ``linear.npz``: the map as arrays
(:class:`aurora.reduction.linear.LinearMap`). Nothing is pickled: a fitted estimator is never
stored.

New images (:func:`aurora.reduction.linear.embed_new`): an affine reducer maps them exactly;
any other reducer (UMAP, Isomap, Kernel PCA) places each new image at the
inverse-distance-weighted mean embedding of its nearest training images in feature space (the
starting point UMAP's own ``transform`` refines). ``meta.json`` records which
(``transform``: ``linear`` or ``neighbours``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from aurora.clustering.memory import DEFAULT_MEMORY_BUDGET_BYTES, check_estimator_memory
from aurora.infra.cache import Cache, stable_hash
from aurora.infra.config import make_estimator, plain
from aurora.reduction.linear import LINEAR_FILE, LinearMap, embed_new, linear_map

STAGE = "reduce"


def reducer_key(
    features_key: str,
    reducer_cfg: Mapping[str, Any],
    seed: int,
    fit_rows: np.ndarray | None = None,
) -> str:
    """Cache key of a reduction (features key, reducer config, seed, rows it was fitted on)."""
    key = stable_hash("reduce-v2", features_key, plain(reducer_cfg), int(seed))
    if fit_rows is None:  # fitted on every row: the key reductions always had
        return key
    return stable_hash(key, "fit_rows", np.asarray(fit_rows, dtype=np.int64))


def fit_transform_cached(
    features: np.ndarray,
    reducer_cfg: Mapping[str, Any],
    seed: int,
    cache: Cache,
    features_key: str,
    *,
    memory_budget_bytes: int | None = DEFAULT_MEMORY_BUDGET_BYTES,
    fit_rows: np.ndarray | None = None,
) -> np.ndarray:
    """Reduce ``features`` with the configured reducer, reading/writing the cache.

    With ``fit_rows``, the reducer is fitted on those rows only and every other row is placed
    as a new image would be (:func:`aurora.reduction.linear.embed_new`: the affine map, or the
    weighted mean embedding of its nearest fitted rows); the fitted rows keep their own
    embedding.

    Args:
        features: (N, D) feature matrix.
        reducer_cfg: reducer YAML node (``_target_`` and arguments).
        seed: run seed (sets ``random_state``).
        cache: the shared cache.
        features_key: cache key of ``features`` (identifies them without hashing N×D).
        memory_budget_bytes: budget for n×n matrices (Kernel PCA, Isomap); ``None`` = no guard.
        fit_rows: (n,) sorted row indices to fit on, or None = all rows.

    Returns:
        (N, d) embedding, float.

    Raises:
        MemoryLimitError: the reducer would need an n×n matrix above the budget (before
            anything is allocated).
    """
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"features must be a 2-D (N, D) array; got shape {features.shape}")
    key = reducer_key(features_key, reducer_cfg, seed, fit_rows)
    entry = cache.path(STAGE, key)
    if cache.exists(STAGE, key):
        return np.load(entry / "embedding.npy")
    fit = features if fit_rows is None else np.asarray(features[fit_rows])
    est = make_estimator(reducer_cfg, seed)
    check_estimator_memory(est, fit.shape[0], memory_budget_bytes)
    emb = np.asarray(est.fit_transform(fit))
    if emb.ndim != 2 or emb.shape[0] != fit.shape[0]:
        raise RuntimeError(f"{type(est).__name__} returned shape {emb.shape}")
    lin = linear_map(est, fit, emb)
    if fit_rows is not None:
        emb = _place_all(features, fit_rows, emb, lin)
    with cache.writing(STAGE, key) as tmp:
        np.save(tmp / "embedding.npy", emb)
        if lin is not None:
            lin.save(tmp / LINEAR_FILE)
        meta: dict[str, Any] = {
            "features_key": features_key,
            "reducer": plain(reducer_cfg),
            "seed": int(seed),
            "n_samples": int(features.shape[0]),
            "n_features": int(features.shape[1]),
            "n_components": int(emb.shape[1]),
            "transform": "linear" if lin is not None else "neighbours",
        }
        if fit_rows is not None:
            meta["fit_rows"] = int(len(fit_rows))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return emb


def _place_all(
    features: np.ndarray,
    fit_rows: np.ndarray,
    fitted: np.ndarray,
    lin: LinearMap | None,
    chunk: int = 16384,
) -> np.ndarray:
    """(N, d) embedding of every row from the (n, d) embedding of the fitted rows."""
    out = np.empty((features.shape[0], fitted.shape[1]), dtype=fitted.dtype)
    train = np.asarray(features[fit_rows]) if lin is None else features[:0]
    for a in range(0, features.shape[0], chunk):
        block = np.asarray(features[a : a + chunk])
        out[a : a + chunk] = embed_new(
            block, linear=lin, train_features=train, train_embedding=fitted
        )
    out[fit_rows] = fitted
    return out


def load_linear_map(
    cache: Cache,
    features_key: str,
    reducer_cfg: Mapping[str, Any],
    seed: int,
    fit_rows: np.ndarray | None = None,
) -> LinearMap | None:
    """The cached reduction's affine map, or None when the reducer is not affine.

    Raises:
        FileNotFoundError: no cache entry for this reduction.
    """
    key = reducer_key(features_key, reducer_cfg, seed, fit_rows)
    if not cache.exists(STAGE, key):
        raise FileNotFoundError(f"no cached reduction {key} under {cache.path(STAGE, key)}")
    path = cache.path(STAGE, key) / LINEAR_FILE
    return LinearMap.load(path) if path.is_file() else None


def cached_entry(
    cache: Cache,
    features_key: str,
    reducer_cfg: Mapping[str, Any],
    seed: int,
    fit_rows: np.ndarray | None = None,
) -> Path:
    """Folder of the cache entry of a reduction (may not exist)."""
    return cache.path(STAGE, reducer_key(features_key, reducer_cfg, seed, fit_rows))
