"""Dimensionality reduction, fitted once per (features, reducer config, seed) and cached.

Reducers are plain scikit-learn / umap-learn estimators instantiated from the YAML node's
``_target_``. Their ``random_state`` is set from the run seed unless the YAML gives one.

Cache entry (stage ``reduce``, key = hash of features key, reducer config and seed):
``embedding.npy`` (N, d) float, ``meta.json`` and, for a reducer whose ``transform`` is an
affine map (PCA, the identity), ``linear.npz``: the map as arrays (:class:`LinearMap`).
Nothing is pickled: a fitted estimator is never stored.

New images (:func:`embed_new`): an affine reducer maps them exactly; any other reducer (UMAP,
Isomap, Kernel PCA) places each new image at the inverse-distance-weighted mean embedding of
its nearest training images in feature space (the starting point UMAP's own ``transform``
refines). ``meta.json`` records which (``transform``: ``linear`` or ``neighbours``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from sklearn.neighbors import NearestNeighbors

from aurora.cache import Cache, atomic_save_npz, stable_hash
from aurora.clustering.memory import DEFAULT_MEMORY_BUDGET_BYTES, check_estimator_memory

STAGE = "reduce"
LINEAR_FILE = "linear.npz"
#: Rows of the training features on which an affine map read from a reducer's attributes must
#: reproduce its embedding.
_CHECK_ROWS = 512


@dataclass(frozen=True)
class LinearMap:
    """An affine reducer as arrays: ``(X - mean) @ components.T / scale``.

    Attributes:
        mean: (D,) float64 centre.
        components: (d, D) float64 directions.
        scale: (d,) float64 divisor per output (ones unless whitened).
    """

    mean: np.ndarray
    components: np.ndarray
    scale: np.ndarray

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Map (M, D) features to the (M, d) embedding."""
        return (np.asarray(X, dtype=np.float64) - self.mean) @ self.components.T / self.scale

    def save(self, path: str | Path) -> None:
        """Write the three arrays to an ``.npz`` (atomically)."""
        atomic_save_npz(path, mean=self.mean, components=self.components, scale=self.scale)

    @classmethod
    def load(cls, path: str | Path) -> LinearMap:
        """Read an ``.npz`` written by :meth:`save` (no pickle); checks the shapes agree.

        Raises:
            ValueError: missing arrays or shapes that do not form a map.
        """
        with np.load(path, allow_pickle=False) as z:
            try:
                mean, comps, scale = (np.asarray(z[k], np.float64) for k in _LINEAR_KEYS)
            except KeyError as err:
                raise ValueError(f"{path}: missing array {err}") from err
        if comps.ndim != 2 or mean.shape != (comps.shape[1],) or scale.shape != (comps.shape[0],):
            raise ValueError(
                f"{path}: mean {mean.shape}, components {comps.shape} and scale {scale.shape} "
                "do not form a (d, D) map"
            )
        if not (np.isfinite(mean).all() and np.isfinite(comps).all() and (scale > 0).all()):
            raise ValueError(f"{path}: non-finite values or a scale <= 0")
        return cls(mean, comps, scale)


_LINEAR_KEYS = ("mean", "components", "scale")


def linear_map(est: Any, features: np.ndarray, embedding: np.ndarray) -> LinearMap | None:
    """The affine map a fitted reducer applies, or None when it is not affine.

    Reads ``components_`` (and ``mean_``, ``explained_variance_`` when ``whiten``) as PCA and
    its relatives store them; a reducer with no ``components_`` is tried as the identity. The
    map is kept only if it reproduces the reducer's own embedding of its training features.

    Args:
        est: fitted reducer.
        features: (N, D) its training features.
        embedding: (N, d) what ``est.fit_transform(features)`` returned.

    Returns:
        The :class:`LinearMap`, or None.
    """
    d_in = features.shape[1]
    comps = getattr(est, "components_", None)
    if comps is not None:
        comps = np.asarray(comps, dtype=np.float64)
        mean = np.asarray(getattr(est, "mean_", np.zeros(d_in)), dtype=np.float64)
        scale = np.ones(len(comps))
        if getattr(est, "whiten", False):
            scale = np.sqrt(np.asarray(est.explained_variance_, dtype=np.float64))
    else:
        mean, comps, scale = np.zeros(d_in), np.eye(d_in), np.ones(d_in)
    if comps.ndim != 2 or comps.shape != (embedding.shape[1], d_in) or mean.shape != (d_in,):
        return None
    lin = LinearMap(mean, comps, scale)
    expected = np.asarray(embedding[:_CHECK_ROWS], dtype=np.float64)
    got = lin.transform(features[:_CHECK_ROWS])
    tol = 1e-4 * max(1.0, float(np.abs(expected).max(initial=0.0)))
    return lin if np.allclose(got, expected, rtol=1e-4, atol=tol) else None


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
    return stable_hash("reduce-v2", features_key, _as_dict(reducer_cfg), int(seed))


def fit_transform_cached(
    features: np.ndarray,
    reducer_cfg: Mapping[str, Any] | DictConfig,
    seed: int,
    cache: Cache,
    features_key: str,
    *,
    memory_budget_bytes: int | None = DEFAULT_MEMORY_BUDGET_BYTES,
) -> np.ndarray:
    """Reduce ``features`` with the configured reducer, reading/writing the cache.

    Args:
        features: (N, D) feature matrix.
        reducer_cfg: reducer YAML node (``_target_`` and arguments).
        seed: run seed (sets ``random_state``).
        cache: the shared cache.
        features_key: cache key of ``features`` (identifies them without hashing N×D).
        memory_budget_bytes: budget for n×n matrices (Kernel PCA, Isomap); ``None`` = no guard.

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
    lin = linear_map(est, features, emb)
    with cache.writing(STAGE, key) as tmp:
        np.save(tmp / "embedding.npy", emb)
        if lin is not None:
            lin.save(tmp / LINEAR_FILE)
        meta: dict[str, Any] = {
            "features_key": features_key,
            "reducer": _as_dict(reducer_cfg),
            "seed": int(seed),
            "n_samples": int(features.shape[0]),
            "n_features": int(features.shape[1]),
            "n_components": int(emb.shape[1]),
            "transform": "linear" if lin is not None else "neighbours",
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return emb


def load_linear_map(
    cache: Cache, features_key: str, reducer_cfg: Mapping[str, Any] | DictConfig, seed: int
) -> LinearMap | None:
    """The cached reduction's affine map, or None when the reducer is not affine.

    Raises:
        FileNotFoundError: no cache entry for this reduction.
    """
    key = reducer_key(features_key, reducer_cfg, seed)
    if not cache.exists(STAGE, key):
        raise FileNotFoundError(f"no cached reduction {key} under {cache.path(STAGE, key)}")
    path = cache.path(STAGE, key) / LINEAR_FILE
    return LinearMap.load(path) if path.is_file() else None


def embed_new(
    new_features: np.ndarray,
    *,
    linear: LinearMap | None,
    train_features: np.ndarray,
    train_embedding: np.ndarray,
    n_neighbors: int = 5,
) -> np.ndarray:
    """Embed new images (M, D) -> (M, d).

    Uses the affine map when the reducer has one; otherwise the inverse-distance-weighted mean
    embedding of the ``n_neighbors`` nearest training images in feature space.
    """
    if linear is not None:
        return linear.transform(new_features)
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
