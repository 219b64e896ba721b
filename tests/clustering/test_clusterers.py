"""Clusterers from their YAML files, the memory guard of the n² clusterers, predict on training
points, the seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import CONF
from hydra.utils import instantiate
from omegaconf import OmegaConf

from aurora.clustering import (
    COPKMeans,
    MemoryLimitError,
    SparseSpectralClustering,
    WardClustering,
    check_quadratic_memory,
)
from aurora.infra.config import make_estimator

CLUSTERERS = sorted((CONF / "clusterer").glob("*.yaml"))


def test_clusterer_folder_is_populated() -> None:
    assert {"kmeans", "spectral", "agglomerative", "cop_kmeans"} <= {p.stem for p in CLUSTERERS}


@pytest.mark.parametrize("path", CLUSTERERS, ids=lambda p: p.stem)
def test_clusterer_yaml_runs(path: Path, blobs) -> None:
    X, y = blobs
    cfg = OmegaConf.load(path)
    assert "n_clusters" in cfg
    cfg.n_clusters = 3
    if "random_state" in cfg:
        cfg.random_state = 0
    est = instantiate(cfg).fit(X)
    labels = np.asarray(est.labels_)
    assert labels.shape == (90,)
    assert len(np.unique(labels)) == 3
    np.testing.assert_array_equal(est.predict(X[:10]), labels[:10])
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(y, labels) == 1.0  # well-separated blobs


def test_memory_guard_message() -> None:
    with pytest.raises(MemoryLimitError, match=r"100000x100000 .*74\.5 GiB"):
        check_quadratic_memory(100_000, "KernelPCA", budget_bytes=4 * 1024**3)
    assert check_quadratic_memory(100, "KernelPCA", budget_bytes=80_000) == 80_000


def test_ward_refused_without_connectivity() -> None:
    X = np.random.default_rng(0).normal(size=(300, 3))
    with pytest.raises(MemoryLimitError, match="Ward"):
        WardClustering(n_clusters=3, memory_budget_bytes=100_000).fit(X)
    # The sparse connectivity path needs no n² matrix.
    labels = WardClustering(
        n_clusters=3, connectivity_neighbors=10, memory_budget_bytes=100_000
    ).fit(X)
    assert labels.labels_.shape == (300,)


def test_spectral_and_ward_predict_training_points(blobs) -> None:
    X, _ = blobs
    for est in (
        SparseSpectralClustering(n_clusters=3, random_state=0),
        WardClustering(n_clusters=3),
    ):
        est.fit(X)
        np.testing.assert_array_equal(est.predict(X), est.labels_)
        # A new point next to a training point gets that point's label.
        np.testing.assert_array_equal(est.predict(X[:4] + 1e-6), est.labels_[:4])


def test_seed_sets_random_state(tmp_path: Path, blobs) -> None:
    X, _ = blobs
    cfg = OmegaConf.load(CONF / "clusterer" / "cop_kmeans.yaml")
    est = make_estimator(cfg, 123)
    assert isinstance(est, COPKMeans) and est.random_state == 123
