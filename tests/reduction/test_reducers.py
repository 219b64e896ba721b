"""Reducers from their YAML files, Kernel PCA, memory guards, linear maps, placing new points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import CONF
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sklearn.datasets import make_blobs, make_circles
from sklearn.decomposition import PCA, KernelPCA

from aurora.clustering import (
    MemoryLimitError,
)
from aurora.infra.cache import Cache
from aurora.reduction import (
    LinearMap,
    cached_entry,
    components_for_variance,
    embed_new,
    fit_transform_cached,
    load_linear_map,
)

REDUCERS = sorted((CONF / "reducer").glob("*.yaml"))
# UMAP's first fit in a process spends ~20 s compiling numba code: fitted only in the slow run.
REDUCER_PARAMS = [
    pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.stem.startswith("umap") else [])
    for p in REDUCERS
]


def test_reducer_folder_is_populated() -> None:
    assert {"pca", "kernel_pca", "isomap", "umap", "none"} <= {p.stem for p in REDUCERS}


@pytest.mark.parametrize("path", REDUCERS, ids=lambda p: p.stem)
def test_reducer_yaml_instantiates(path: Path) -> None:
    est = instantiate(OmegaConf.load(path))
    assert hasattr(est, "fit_transform") and hasattr(est, "transform")


@pytest.mark.parametrize("path", REDUCER_PARAMS)
def test_reducer_yaml_runs(path: Path, blobs, tmp_path: Path) -> None:
    X, _ = blobs
    cfg = OmegaConf.load(path)
    instantiate(cfg)  # the file alone is a valid estimator spec
    emb = fit_transform_cached(X, cfg, 0, Cache(tmp_path), "blobs")
    assert emb.shape[0] == X.shape[0] and emb.ndim == 2 and np.isfinite(emb).all()
    # Second call is a cache hit: identical array, nothing refitted.
    np.testing.assert_array_equal(fit_transform_cached(X, cfg, 0, Cache(tmp_path), "blobs"), emb)
    linear = load_linear_map(Cache(tmp_path), "blobs", cfg, 0)
    # PCA and the identity are stored as their affine map, the non-linear reducers are not.
    assert (linear is not None) == (path.stem in {"pca", "none"})
    new = embed_new(X[:5], linear=linear, train_features=X, train_embedding=emb)
    assert new.shape == (5, emb.shape[1])
    if linear is not None:  # the map reproduces the reducer on its own training points
        np.testing.assert_allclose(new, emb[:5], rtol=1e-4, atol=1e-4)


def test_kernel_pca_really_uses_the_kernel(tmp_path: Path) -> None:
    X, y = make_circles(n_samples=200, factor=0.3, noise=0.05, random_state=0)
    cfg = OmegaConf.load(CONF / "reducer" / "kernel_pca.yaml")
    cfg.n_components = 2
    cfg.gamma = 2.0
    emb = fit_transform_cached(X, cfg, 7, Cache(tmp_path), "circles")
    ref = KernelPCA(
        n_components=2, kernel="rbf", gamma=2.0, eigen_solver="randomized", random_state=7
    ).fit_transform(X)
    np.testing.assert_allclose(emb, ref, atol=1e-8)
    lin = PCA(n_components=2).fit_transform(X)
    assert not np.allclose(np.abs(emb), np.abs(lin), atol=1e-2)
    # The RBF kernel separates the circles along its first component; linear PCA cannot.
    inner, outer = emb[y == 1, 0], emb[y == 0, 0]
    assert inner.min() > outer.max() or inner.max() < outer.min()
    lin_inner, lin_outer = lin[y == 1, 0], lin[y == 0, 0]
    assert not (lin_inner.min() > lin_outer.max() or lin_inner.max() < lin_outer.min())


def test_pca_variance_fraction(blobs, tmp_path: Path) -> None:
    X, _ = blobs
    cfg = OmegaConf.create({"_target_": "sklearn.decomposition.PCA", "n_components": 0.8})
    emb = fit_transform_cached(X, cfg, 0, Cache(tmp_path), "blobs")
    ratios = np.linalg.svd(X - X.mean(0), compute_uv=False) ** 2
    cum = np.cumsum(ratios) / ratios.sum()
    expected = int(np.searchsorted(cum, 0.8) + 1)  # fewest components reaching 80 %
    assert emb.shape[1] == expected
    assert cum[expected - 2] < 0.8 <= cum[expected - 1]


@pytest.mark.parametrize("name", ["kernel_pca", "isomap"])
def test_reducer_refused_before_allocating(name: str, tmp_path: Path) -> None:
    X = np.zeros((300, 3))
    cfg = OmegaConf.load(CONF / "reducer" / f"{name}.yaml")
    with pytest.raises(MemoryLimitError, match=r"300x300 matrix of 703\.1 KiB"):
        fit_transform_cached(X, cfg, 0, Cache(tmp_path), "x", memory_budget_bytes=100_000)
    assert not cached_entry(Cache(tmp_path), "x", cfg, 0).exists()


def test_linear_map_matches_whitened_pca(blobs, tmp_path: Path) -> None:
    """The stored map of a whitened PCA is PCA's own transform on new points (no pickle)."""
    from sklearn.decomposition import PCA

    X, _ = blobs
    cfg = {"_target_": "sklearn.decomposition.PCA", "n_components": 3, "whiten": True}
    fit_transform_cached(X, cfg, 0, Cache(tmp_path), "blobs")
    linear = load_linear_map(Cache(tmp_path), "blobs", cfg, 0)
    assert linear is not None
    new = X[:7] + 0.3
    ref = PCA(n_components=3, whiten=True, random_state=0).fit(X).transform(new)
    np.testing.assert_allclose(linear.transform(new), ref, rtol=1e-4, atol=1e-4)


def test_damaged_linear_map_is_refused(blobs, tmp_path: Path) -> None:
    X, _ = blobs
    cfg = OmegaConf.load(CONF / "reducer" / "pca.yaml")
    fit_transform_cached(X, cfg, 0, Cache(tmp_path), "blobs")
    path = cached_entry(Cache(tmp_path), "blobs", cfg, 0) / "linear.npz"
    lin = LinearMap.load(path)
    np.savez(path, mean=lin.mean[:-1], components=lin.components, scale=lin.scale)
    with pytest.raises(ValueError, match="do not form"):
        load_linear_map(Cache(tmp_path), "blobs", cfg, 0)


def test_nonlinear_reducer_places_by_neighbours(blobs, tmp_path: Path) -> None:
    X, _ = blobs
    cfg = OmegaConf.load(CONF / "reducer" / "isomap.yaml")
    emb = fit_transform_cached(X, cfg, 0, Cache(tmp_path), "blobs")
    assert load_linear_map(Cache(tmp_path), "blobs", cfg, 0) is None
    new = embed_new(X[:3], linear=None, train_features=X, train_embedding=emb)
    np.testing.assert_allclose(new, emb[:3], atol=1e-6)  # a training point maps onto itself


def test_components_for_variance_matches_cumulative_spectrum() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6)) * np.array([10.0, 5.0, 2.0, 1.0, 0.5, 0.1])
    ratios = PCA().fit(X).explained_variance_ratio_
    for v in (0.5, 0.8, 0.95, 0.999):
        # the fewest leading components whose ratios sum to at least v, counted by hand
        n = next(k for k in range(1, 7) if ratios[:k].sum() >= v)
        assert components_for_variance(X, v) == n
    assert components_for_variance(X, 1.0) == 6


def test_neighbour_placement_agrees_with_umap_transform() -> None:
    """A solution places new images without UMAP's pickled model: the weighted mean of the
    nearest reference images' embeddings, where UMAP's own ``transform`` starts. Both give a
    held-out image the same group (1-NN label in the embedding)."""
    import umap
    from sklearn.neighbors import KNeighborsClassifier

    X, y = make_blobs(n_samples=260, centers=4, n_features=20, cluster_std=2.5, random_state=1)
    train, new, y_train, y_new = X[:200], X[200:], y[:200], y[200:]
    reducer = umap.UMAP(n_neighbors=15, n_components=2, random_state=0).fit(train)
    emb = reducer.embedding_
    knn = KNeighborsClassifier(n_neighbors=1).fit(emb, y_train)
    by_umap = knn.predict(reducer.transform(new))
    placed = embed_new(new, linear=None, train_features=train, train_embedding=emb)
    by_neighbours = knn.predict(placed)
    assert (by_neighbours == by_umap).mean() >= 0.95
    assert (by_neighbours == y_new).mean() >= 0.95
