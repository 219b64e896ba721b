"""Dimensionality reduction, fitted once per (features, reducer config, seed) and cached.

Reducers are plain scikit-learn / umap-learn estimators instantiated from the YAML node's
``_target_``. Their ``random_state`` is set from the run seed unless the YAML gives one.

Cache entry (stage ``reduce``, key = hash of features key, reducer config and seed):
``embedding.npy`` (N, d) float, ``meta.json``, and, when the fitted reducer is small enough
(``max_reducer_bytes``), ``reducer.joblib`` with its SHA-256 in ``reducer.sha256``.

New images: :func:`embed_new` uses the stored reducer's ``transform`` (after checking its
SHA-256) when there is one; otherwise (e.g. Isomap on many points keeps an n×n geodesic matrix,
too large to store) it places each new image at the distance-weighted mean embedding of its
nearest training images in feature space. Both are documented in ``meta.json`` (``transform``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from sklearn.neighbors import NearestNeighbors

from aurora.cache import Cache, file_sha256, stable_hash
from aurora.clustering.memory import DEFAULT_MEMORY_BUDGET_BYTES, check_estimator_memory

STAGE = "reduce"
DEFAULT_MAX_REDUCER_BYTES = 256 * 1024**2


class ReducerIntegrityError(RuntimeError):
    """A stored reducer file does not match the SHA-256 recorded next to it."""


def _as_dict(cfg: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def make_estimator(cfg: Mapping[str, Any] | DictConfig, seed: int) -> Any:
    """Instantiate an estimator from a YAML node with ``_target_``; seed its ``random_state``.

    Args:
        cfg: the config node (``_target_`` plus constructor arguments).
        seed: run seed, used when the estimator has a ``random_state`` the config leaves null.

    Returns:
        The unfitted estimator.
    """
    node = _as_dict(cfg)
    if "_target_" not in node:
        raise ValueError(f"estimator config has no _target_: {node}")
    est = instantiate(node, _convert_="all")
    params = est.get_params(deep=False) if hasattr(est, "get_params") else {}
    if "random_state" in params and node.get("random_state") is None:
        est.set_params(random_state=int(seed))
    return est


def reducer_key(features_key: str, reducer_cfg: Mapping[str, Any] | DictConfig, seed: int) -> str:
    """Cache key of a reduction (features key, reducer config, seed)."""
    return stable_hash("reduce-v1", features_key, _as_dict(reducer_cfg), int(seed))


def _array_bytes(obj: Any, depth: int = 2) -> int:
    """Rough size of the arrays an estimator holds (its attributes, two levels deep)."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if hasattr(obj, "data") and hasattr(obj, "indices") and hasattr(obj.data, "nbytes"):
        return obj.data.nbytes + obj.indices.nbytes  # scipy sparse
    if depth == 0:
        return 0
    if isinstance(obj, list | tuple):
        return sum(_array_bytes(v, depth - 1) for v in obj)
    if hasattr(obj, "__dict__"):
        return sum(_array_bytes(v, depth - 1) for v in vars(obj).values())
    return 0


def fit_transform_cached(
    features: np.ndarray,
    reducer_cfg: Mapping[str, Any] | DictConfig,
    seed: int,
    cache: Cache,
    features_key: str,
    *,
    memory_budget_bytes: int | None = DEFAULT_MEMORY_BUDGET_BYTES,
    max_reducer_bytes: int = DEFAULT_MAX_REDUCER_BYTES,
) -> np.ndarray:
    """Reduce ``features`` with the configured reducer, reading/writing the cache.

    Args:
        features: (N, D) feature matrix.
        reducer_cfg: reducer YAML node (``_target_`` and arguments).
        seed: run seed (sets ``random_state``).
        cache: the shared cache.
        features_key: cache key of ``features`` (identifies them without hashing N×D).
        memory_budget_bytes: budget for n×n matrices (Kernel PCA, Isomap); ``None`` = no guard.
        max_reducer_bytes: store the fitted reducer only when its arrays are at most this big.

    Returns:
        (N, d) embedding, float.

    Raises:
        MemoryLimitError: the reducer would need an n×n matrix above the budget (before
            anything is allocated).
    """
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"features must be a 2-D (N, D) array; got shape {features.shape}")
    key = reducer_key(features_key, reducer_cfg, seed)
    entry = cache.path(STAGE, key)
    if cache.exists(STAGE, key):
        return np.load(entry / "embedding.npy")
    est = make_estimator(reducer_cfg, seed)
    check_estimator_memory(est, features.shape[0], memory_budget_bytes)
    emb = np.asarray(est.fit_transform(features))
    if emb.ndim != 2 or emb.shape[0] != features.shape[0]:
        raise RuntimeError(f"{type(est).__name__} returned shape {emb.shape}")
    with cache.writing(STAGE, key) as tmp:
        np.save(tmp / "embedding.npy", emb)
        meta: dict[str, Any] = {
            "features_key": features_key,
            "reducer": _as_dict(reducer_cfg),
            "seed": int(seed),
            "n_samples": int(features.shape[0]),
            "n_features": int(features.shape[1]),
            "n_components": int(emb.shape[1]),
        }
        if _array_bytes(est) <= max_reducer_bytes:
            joblib.dump(est, tmp / "reducer.joblib")
            sha = file_sha256(tmp / "reducer.joblib")
            (tmp / "reducer.sha256").write_text(sha + "\n")
            meta.update(transform="reducer", reducer_sha256=sha)
        else:
            meta.update(transform="nearest_neighbours")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return emb


def load_fitted_reducer(
    cache: Cache, features_key: str, reducer_cfg: Mapping[str, Any] | DictConfig, seed: int
) -> Any | None:
    """The cached fitted reducer, or ``None`` when only the embedding was stored.

    Raises:
        FileNotFoundError: no cache entry for this reduction.
        ReducerIntegrityError: the file's SHA-256 differs from the recorded one.
    """
    key = reducer_key(features_key, reducer_cfg, seed)
    if not cache.exists(STAGE, key):
        raise FileNotFoundError(f"no cached reduction {key} under {cache.path(STAGE, key)}")
    entry = cache.path(STAGE, key)
    path = entry / "reducer.joblib"
    if not path.is_file():
        return None
    expected = (entry / "reducer.sha256").read_text().strip()
    actual = file_sha256(path)
    if actual != expected:
        raise ReducerIntegrityError(
            f"{path} has SHA-256 {actual}, expected {expected}; refusing to unpickle it"
        )
    return joblib.load(path)


def embed_new(
    new_features: np.ndarray,
    *,
    reducer: Any | None,
    train_features: np.ndarray,
    train_embedding: np.ndarray,
    n_neighbors: int = 5,
) -> np.ndarray:
    """Embed new images (M, D) -> (M, d).

    Uses ``reducer.transform`` when a fitted reducer is given; otherwise the
    inverse-distance-weighted mean embedding of the ``n_neighbors`` nearest training images
    in feature space.
    """
    if reducer is not None:
        return np.asarray(reducer.transform(new_features))
    k = min(n_neighbors, len(train_features))
    dist, idx = NearestNeighbors(n_neighbors=k).fit(train_features).kneighbors(new_features)
    w = 1.0 / np.maximum(dist, 1e-12)
    w /= w.sum(axis=1, keepdims=True)
    return np.einsum("mk,mkd->md", w, train_embedding[idx])


def cached_entry(
    cache: Cache, features_key: str, reducer_cfg: Mapping[str, Any] | DictConfig, seed: int
) -> Path:
    """Folder of the cache entry of a reduction (may not exist)."""
    return cache.path(STAGE, reducer_key(features_key, reducer_cfg, seed))
