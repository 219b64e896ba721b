"""Scores against hand-computed cases, Borda ranking, and a grid cell written and collected."""

from __future__ import annotations

import csv
import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import CONF
from omegaconf import OmegaConf
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs

from aurora.clustering import COPKMeans, constraints_from_reference
from aurora.fusion import select_partitions
from aurora.grid.cell import run_cell
from aurora.grid.cell_files import collect_cells, write_cell
from aurora.grid.ranking import (
    RANKING_COLUMNS,
    borda_rank,
    rank_values,
    write_ranking,
    write_results,
)
from aurora.grid.scoring import (
    external_scores,
    internal_scores,
    n_groups,
    nuisance_dependence,
    purity,
    stability_scores,
)
from aurora.infra.cache import Cache

X4 = np.array([[0.0], [1.0], [10.0], [11.0]])
L4 = np.array([0, 0, 1, 1])


def test_internal_scores_hand_computed() -> None:
    s = internal_scores(X4, L4)
    assert s["silhouette"] == pytest.approx((9.5 / 10.5 + 8.5 / 9.5) / 2)
    # B = 4 * 5² = 100, W = 4 * 0.5² = 1, CH = (B / (k-1)) / (W / (n-k)) = 200
    assert s["calinski_harabasz"] == pytest.approx(200.0)
    # scatter 0.5 per cluster, centroid distance 10: DB = (0.5 + 0.5) / 10
    assert s["davies_bouldin"] == pytest.approx(0.1)


def test_internal_scores_degenerate_cases_are_nan() -> None:
    assert all(math.isnan(v) for v in internal_scores(X4, np.zeros(4, int)).values())
    assert all(math.isnan(v) for v in internal_scores(X4, np.full(4, -1)).values())
    assert all(math.isnan(v) for v in internal_scores(X4, np.arange(4)).values())
    # -1 points are left out: the unassigned outlier does not change the scores.
    X5 = np.vstack([X4, [[100.0]]])
    s = internal_scores(X5, np.array([0, 0, 1, 1, -1]))
    assert s == pytest.approx(internal_scores(X4, L4))


def test_silhouette_subsample_is_seeded() -> None:
    X, y = make_blobs(n_samples=400, centers=3, random_state=0)
    a = internal_scores(X, y, sample_size=100, seed=1)["silhouette"]
    b = internal_scores(X, y, sample_size=100, seed=1)["silhouette"]
    c = internal_scores(X, y, sample_size=100, seed=2)["silhouette"]
    assert a == b and a != c
    assert abs(a - internal_scores(X, y)["silhouette"]) < 0.05


def test_external_scores_hand_computed() -> None:
    truth = ["a", "a", "b", "b", "b"]
    labels = np.array([0, 0, 0, 1, 1])
    assert purity(labels, np.array(truth)) == pytest.approx(4 / 5)
    s = external_scores(labels, truth)
    assert s["purity"] == pytest.approx(0.8)
    assert s["completeness"] == pytest.approx(
        1
        - (3 / 5 * (-(1 / 3) * math.log(1 / 3) - (2 / 3) * math.log(2 / 3)))
        / (-(2 / 5) * math.log(2 / 5) - (3 / 5) * math.log(3 / 5))
    )
    perfect = external_scores(np.array([5, 5, 7, 7]), ["x", "x", "y", "y"])
    assert perfect == pytest.approx(dict.fromkeys(perfect, 1.0))
    # Unknown truth entries are left out.
    part = external_scores(np.array([5, 5, 7, 7, 9]), ["x", "x", "y", "y", None])
    assert part["ari"] == pytest.approx(1.0)
    assert math.isnan(external_scores(L4, [None, None, None, "a"])["ari"])


def test_nuisance_dependence() -> None:
    moon = np.array([True] * 50 + [False] * 50)
    assert nuisance_dependence(moon.astype(int), moon) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    assert abs(nuisance_dependence(rng.integers(0, 5, 100), moon)) < 0.05


def test_stability_is_one_for_separable_blobs() -> None:
    X, _ = make_blobs(n_samples=300, centers=4, cluster_std=0.3, random_state=0)
    s = stability_scores(KMeans(4, n_init=5, random_state=0), X, n_splits=3, seed=0)
    assert s["stability_ari"] == pytest.approx(1.0) and s["stability_ami"] == pytest.approx(1.0)
    assert s["stability_ari_std"] == pytest.approx(0.0)
    noise = np.random.default_rng(0).uniform(size=(300, 2))
    s = stability_scores(KMeans(8, n_init=1, random_state=0), noise, n_splits=3, seed=0)
    assert s["stability_ari"] < 0.95
    # Subsamples smaller than k: NaN, not a crash.
    assert math.isnan(stability_scores(KMeans(200), X, n_splits=3)["stability_ari"])


def test_stability_with_constraints() -> None:
    X, y = make_blobs(n_samples=120, centers=3, cluster_std=0.3, random_state=1)
    ml, cl = constraints_from_reference([None] * 110 + ["a"] * 5 + ["b"] * 5)
    s = stability_scores(
        COPKMeans(n_clusters=3, random_state=0), X, n_splits=2, seed=0, must_link=ml, cannot_link=cl
    )
    assert s["stability_ari"] == pytest.approx(1.0)


def test_rank_values_ties_and_nan() -> None:
    assert rank_values([0.5, 0.9, 0.5, math.nan, None], True).tolist() == [2, 1, 2, 4, 4]
    assert rank_values([0.5, 0.9, 0.5, math.nan], False).tolist() == [1, 3, 1, 4]


def test_borda_on_hand_made_table() -> None:
    nan = math.nan
    table = [
        {"cell": "C", "silhouette": 0.2, "calinski_harabasz": 50, "davies_bouldin": 1.0,
         "stability_ari": 0.95},
        {"cell": "D", "silhouette": nan, "calinski_harabasz": 300, "davies_bouldin": 0.4,
         "stability_ari": 0.8},
        {"cell": "B", "silhouette": 0.5, "calinski_harabasz": 200, "davies_bouldin": 0.4,
         "stability_ari": nan},
        {"cell": "A", "silhouette": 0.5, "calinski_harabasz": 100, "davies_bouldin": 0.5,
         "stability_ari": 0.9},
    ]  # fmt: skip
    ranked = borda_rank(table)
    # ranks: A 1+3+3+2=9, B 1+2+1+4=8, C 3+4+4+1=12, D 4+1+1+3=9 (A before D by name)
    assert [r["cell"] for r in ranked] == ["B", "A", "D", "C"]
    assert [r["borda"] for r in ranked] == [8, 9, 9, 12]
    assert [r["rank"] for r in ranked] == [1, 2, 3, 4]
    assert ranked[2]["rank_silhouette"] == 4 and ranked[0]["rank_stability_ari"] == 4


def test_grid_cells_written_collected_and_ranked(tmp_path: Path) -> None:
    X, y = make_blobs(n_samples=120, centers=3, n_features=6, cluster_std=0.5, random_state=0)
    cache = Cache(tmp_path / "cache")
    reducer = OmegaConf.load(CONF / "reducer" / "pca.yaml")
    ml, cl = constraints_from_reference([None] * 114 + ["a"] * 3 + ["b"] * 3)
    root = tmp_path / "multirun"
    for job, (name, k) in enumerate([("kmeans", 3), ("cop_kmeans", 3), ("kmeans", 5)]):
        clusterer = OmegaConf.load(CONF / "clusterer" / f"{name}.yaml")
        clusterer.n_clusters = k
        res = run_cell(
            X, reducer, clusterer, seed=0, cache=cache, features_key="blobs",
            must_link=ml, cannot_link=cl, truth=list(y), nuisance={"moon": y == 0},
        )  # fmt: skip
        assert res.labels.shape == (120,) and res.embedding.shape[0] == 120
        meta = {"extractor": "raw", "reducer": "pca", "clusterer": name, "n_clusters": k, "seed": 0}
        write_cell(res, root / str(job), meta)
    assert len(list((cache.root / "reduce").iterdir())) == 1  # one reduction for all cells
    cells = collect_cells(root)
    assert len(cells) == 3
    cop = next(c for c in cells if c["clusterer"] == "cop_kmeans")
    assert cop["constraints_used"] == 1.0 and cop["cannot_link_violations"] == 0
    assert {c["stability_ari"] for c in cells if c["n_clusters"] == 3} == {1.0}
    assert next(c for c in cells if c["n_clusters"] == 3)["ari"] == pytest.approx(1.0)

    write_ranking(cells, root / "ranking.csv")
    write_results(cells, root / "results.csv")
    with open(root / "ranking.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == RANKING_COLUMNS
    assert [r[0] for r in rows[1:]] == ["1", "2", "3"]
    assert rows[-1][4:6] == ["kmeans", "5"]  # k=5 on 3 blobs ranks last
    for r in rows[1:]:
        labels = np.load(root / r[-1])
        assert labels.dtype == np.int64 and labels.shape == (120,)
        assert not Path(r[-1]).is_absolute()
    with open(root / "results.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 3


def _fixed_cells(root: Path) -> list[dict]:
    """Cells as collect_cells returns them: NaN, None, ties, extra scores, nested fields."""
    nan = math.nan
    rows = []
    spec = [
        ("cae/pca/kmeans/k3/s0", 0.41, 120.5, 0.8, 0.93, 0.9),
        ("cae/pca/kmeans/k4/s0", 0.41, 99.0, 0.7, nan, 0.5),
        ("resnet50/none/agglomerative/k3/s1", nan, nan, nan, nan, nan),
        ("resnet50/umap/spectral/k5/s0", 0.2, 300.25, 1.25, 0.6, 0.61),
        ("simclr/pca,x/kmeans/k3/s0", 0.55, 10.0, 0.8, 1.0, 1.0),
    ]
    for i, (cell, sil, ch, db, ari, ami) in enumerate(spec):
        ext, red, clu, k, s = cell.split("/")
        rows.append(
            {
                "extractor": ext, "reducer": red, "clusterer": clu, "n_clusters": int(k[1:]),
                "seed": int(s[1:]), "cell": cell, "silhouette": sil, "calinski_harabasz": ch,
                "davies_bouldin": db, "stability_ari": ari, "stability_ami": ami,
                "n_clusters_found": float(k[1:]), "seconds": 1.5 + i, "n_samples": 120,
                "timings": {"reduce": 0.1}, "extra": [1, 2], "ari": 0.1 * i if i != 2 else None,
                **({"nuisance_ami_moon": 0.01 * i} if i % 2 else {}),
                "labels_path": str(root / "cells" / str(i) / "labels.npy"),
            }
        )  # fmt: skip
    return rows


def test_ranking_writers_bytes_unchanged(tmp_path: Path) -> None:
    # sha256 prefixes of the files written by aurora.grid's writers before they moved here.
    root = tmp_path / "run"
    cells = _fixed_cells(root)
    ranked = write_ranking(cells, root / "ranking.csv")
    write_results(cells, root / "results.csv")
    digest = {
        n: hashlib.sha256((root / n).read_bytes()).hexdigest()[:16]
        for n in ("ranking.csv", "results.csv")
    }
    assert digest == {"ranking.csv": "1838e749e8419447", "results.csv": "e813309d9f48552d"}
    assert [r["cell"] for r in ranked][:2] == ["cae/pca/kmeans/k3/s0", "simclr/pca,x/kmeans/k3/s0"]
    assert ranked[0]["labels_path"] == cells[0]["labels_path"]  # returned rows keep it absolute


def test_fusion_reads_the_ranking_it_is_given(tmp_path: Path) -> None:
    root = tmp_path / "run"
    cells = _fixed_cells(root)
    for c in cells:
        Path(c["labels_path"]).parent.mkdir(parents=True)
        np.save(c["labels_path"], np.zeros(4, np.int64))
    ranked = write_ranking(cells, root / "ranking.csv")
    groups = select_partitions(root / "ranking.csv", 2, per_extractor=True)
    assert list(groups) == ["cae", "simclr", "resnet50"]
    assert groups["cae"] == [Path(r["labels_path"]) for r in ranked if r["extractor"] == "cae"]


def test_n_groups_counts_the_groups_of_a_fused_labelling() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        k = int(rng.integers(0, 6))
        labels = np.concatenate([np.arange(k), rng.integers(-1, max(k, 1), 20)])
        labels = rng.permutation(labels[labels < k]) if k else np.full(5, -1)
        assert n_groups(labels) == len(set(labels.tolist()) - {-1})  # labels 0..K-1 all used
    assert n_groups(np.array([], dtype=np.int64)) == 0
    assert n_groups(np.array([-1, -1])) == 0
    assert n_groups([2, 0, 1, -1]) == 3
