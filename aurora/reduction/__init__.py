"""Dimensionality reduction: the cached stage, reducers as arrays, and reducers of our own.
Must not import torch, grid/, fusion/ or run/ (only clustering/ and infra/).

Reducers from scikit-learn and umap-learn are used directly from ``conf/reducer/*.yaml``;
:mod:`.estimators` holds the ones we add (scikit-learn style), :mod:`.cached` fits a reducer
once per (features, config, seed) into the cache, :mod:`.linear` keeps an affine reducer as
arrays and places new images in an embedding.
"""

from aurora.reduction.cached import (
    STAGE,
    cached_entry,
    fit_transform_cached,
    load_linear_map,
    reducer_key,
)
from aurora.reduction.estimators import VarianceMatchedUMAP, components_for_variance
from aurora.reduction.linear import LINEAR_FILE, LinearMap, embed_new, linear_map

__all__ = [
    "LINEAR_FILE",
    "STAGE",
    "LinearMap",
    "VarianceMatchedUMAP",
    "cached_entry",
    "components_for_variance",
    "embed_new",
    "fit_transform_cached",
    "linear_map",
    "load_linear_map",
    "reducer_key",
]
