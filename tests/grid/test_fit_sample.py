"""grid.fit_sample: cells fit on a sample, evenly spaced in time, and assign every row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sklearn.datasets import make_blobs
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score

from aurora.grid.cell import run_cell
from aurora.grid.sample import fit_sample_rows
from aurora.infra.cache import Cache

PCA_CFG = {"_target_": "sklearn.decomposition.PCA", "n_components": 4}
KMEANS = {"_target_": "sklearn.cluster.KMeans", "n_clusters": 5, "n_init": 4}
WARD = {"_target_": "aurora.clustering.WardClustering", "n_clusters": 5}
BARE_WARD = {"_target_": "sklearn.cluster.AgglomerativeClustering", "n_clusters": 5}


def _nights(n: int, nights: int) -> list[datetime]:
    """n frames over ``nights`` nights, night k holding a share that grows with k."""
    start = datetime(2024, 12, 1, 18, tzinfo=UTC)
    weights = np.arange(1, nights + 1, dtype=float)
    counts = np.floor(weights / weights.sum() * n).astype(int)
    counts[-1] += n - counts.sum()
    out = []
    for k, c in enumerate(counts):
        out += [start + timedelta(days=k, seconds=30 * i) for i in range(c)]
    rng = np.random.default_rng(0)
    return [out[i] for i in rng.permutation(n)]  # rows are not in time order


def test_at_or_below_the_limit_nothing_is_sampled() -> None:
    assert fit_sample_rows(500, 500) is None and fit_sample_rows(500, None) is None


def test_sample_is_spread_evenly_over_time_and_keeps_constraint_rows() -> None:
    times = _nights(6000, 12)
    keep = np.array([3, 17, 5999])
    rows = fit_sample_rows(6000, 600, times=times, seed=1, keep=keep)
    assert rows is not None and np.all(np.diff(rows) > 0) and set(keep) <= set(rows)
    night = np.array([(t - times[0]).days for t in times])  # relative night index
    night -= night.min()
    share = np.bincount(night[rows], minlength=12) / len(rows)
    expected = np.bincount(night, minlength=12) / len(night)
    assert np.abs(share - expected).max() < 0.01  # every night in proportion, none missed
    again = fit_sample_rows(6000, 600, times=times, seed=1, keep=keep)
    np.testing.assert_array_equal(rows, again)


def test_sampled_fit_agrees_with_the_full_fit(tmp_path: Path) -> None:
    X, _ = make_blobs(n_samples=4000, centers=5, n_features=12, cluster_std=1.5, random_state=2)
    X = X.astype(np.float32)
    rows = fit_sample_rows(len(X), 400, seed=0)
    assert rows is not None and len(rows) == 400
    full = run_cell(X, PCA_CFG, KMEANS, seed=0, cache=Cache(tmp_path), features_key="b")
    part = run_cell(
        X, PCA_CFG, KMEANS, seed=0, cache=Cache(tmp_path), features_key="b", fit_rows=rows
    )
    assert part.labels.shape == (4000,) and part.scores["fit_sample"] == 400
    assert "fit_sample" not in full.scores
    assert adjusted_rand_score(full.labels, part.labels) >= 0.9
    # PCA fitted on the sample maps every row with the sample's own affine map
    ref = PCA(n_components=4, random_state=0).fit(X[rows]).transform(X)
    np.testing.assert_allclose(np.abs(part.embedding), np.abs(ref), rtol=1e-3, atol=1e-3)
    ward = run_cell(X, PCA_CFG, WARD, seed=0, cache=Cache(tmp_path), features_key="b",
                    fit_rows=rows)  # fmt: skip
    assert adjusted_rand_score(full.labels, ward.labels) >= 0.9
    # a clusterer without predict gives each row the label of its nearest fitted row
    bare = run_cell(X, PCA_CFG, BARE_WARD, seed=0, cache=Cache(tmp_path), features_key="b",
                    fit_rows=rows, stability_splits=0)  # fmt: skip
    assert adjusted_rand_score(ward.labels, bare.labels) >= 0.99


def test_constraints_are_kept_in_the_sample(tmp_path: Path) -> None:
    X, y = make_blobs(n_samples=3000, centers=4, n_features=6, random_state=3)
    must = np.array([[0, 1], [2, 3]])
    rows = fit_sample_rows(len(X), 300, seed=0, keep=must.ravel())
    cop = {"_target_": "aurora.clustering.COPKMeans", "n_clusters": 4}
    res = run_cell(
        X, PCA_CFG, cop, seed=0, cache=Cache(tmp_path), features_key="c", must_link=must,
        fit_rows=rows,
    )  # fmt: skip
    assert res.labels[0] == res.labels[1] and res.labels[2] == res.labels[3]
    assert res.scores["must_link_violations"] == 0
