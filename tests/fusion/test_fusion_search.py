"""Candidate partitions from ``ranking.csv``, the thesis's loss and the fusion search: known
answers, and the written files unchanged by the redesign of issue 20.

The digests were computed before issue 20 on the fixed inputs built here; the new API must give
the same bytes.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
from conftest import array_digest

from aurora.fusion import (
    FusedNeighbours,
    FusionError,
    group_size_loss,
    load_partitions,
    run_fusion_search,
    search_fusion,
    select_partitions,
)


def test_group_size_loss_hand_made() -> None:
    y = np.array([0, 0, 0, 1, 1, -1])
    # Sizes [3, 2] vs target [3, 3]: (0 + 1) / 2; one unassigned image at 0.25.
    assert group_size_loss(y, 2, unassigned_penalty=0.25) == pytest.approx((0.5, 0.75))
    # More groups than G: target padded with zeros, [3, 2, 1] vs [3, 3, 0] -> 2/3.
    assert group_size_loss(np.array([0, 0, 0, 1, 1, 2]), 2)[0] == pytest.approx(2 / 3)
    # Fewer groups than G: sizes padded with zeros, [4] vs [2, 2] -> (2 + 2) / 2.
    assert group_size_loss(np.zeros(4, int), 2)[0] == pytest.approx(2.0)
    # Nothing assigned: every target group is missing.
    assert group_size_loss(np.full(4, -1), 2, unassigned_penalty=1.0) == pytest.approx((2.0, 6.0))
    assert group_size_loss(np.repeat(np.arange(4), 5), 4) == (0.0, 0.0)


def test_search_picks_known_best() -> None:
    parts, truth = _toy_partitions()
    res = search_fusion(
        parts, n_partitions=[6, 2], thresholds=[0.1, 0.3, 0.6], min_sizes=[1, 5], target_groups=4
    )
    assert len(res.table) == 2 * 3 * 2
    assert res.best["loss"] == 0.0
    assert np.array_equal(res.labels, truth)
    first_zero = next(r for r in res.table if r["loss"] == 0.0)
    assert res.best == first_zero  # ties go to the first setting in grid order
    # With all 6 partitions at t = 0.1 the merged candidates glue pairs of groups.
    row = next(r for r in res.table if r["n_partitions"] == 6 and r["threshold"] == 0.1)
    assert row["n_groups"] <= 2 and row["loss"] > 0
    # Asking for more partitions than exist uses them all.
    res = search_fusion(parts, n_partitions=[50], thresholds=[0.6], min_sizes=[1], target_groups=4)
    assert res.table[0]["n_partitions"] == 6


def test_search_penalty_prefers_assigning(tmp_path: Path) -> None:
    parts, truth = _toy_partitions()
    parts = parts.copy()
    parts[:, :3] = np.arange(3)[None, :] + 10  # three outliers that form a group of 3
    res = search_fusion(
        parts[:3],
        n_partitions=[3],
        thresholds=[0.5],
        min_sizes=[1, 4],
        target_groups=4,
        unassigned_penalty=5.0,
    )
    assert res.best["min_cluster_size"] == 1  # dropping 3 images costs 15 > size mismatch


def test_run_fusion_search_writes_outputs(tmp_path: Path) -> None:
    parts, truth = _toy_partitions()
    rng = np.random.default_rng(0)
    emb = truth[:, None] * 10.0 + rng.normal(size=(120, 3))
    ids = [f"img_{i:03d}.png" for i in range(120)]
    res = run_fusion_search(
        parts,
        ids,
        tmp_path,
        n_partitions=[3, 6],
        thresholds=[0.3, 0.6],
        min_sizes=[1],
        target_groups=4,
        unassigned_penalty=0.1,
        embedding=emb,
    )
    with (tmp_path / "labels.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "label"] and len(rows) == 121
    assert [int(r[1]) for r in rows[1:]] == res.labels.tolist()
    with (tmp_path / "fusion_search.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 and float(table[0]["threshold"]) == 0.3
    assert (tmp_path / "fusion_landscape.png").stat().st_size > 1000
    model = FusedNeighbours.load(tmp_path / "neighbours.npz")
    lab = model.predict(emb[:10] + 0.01)
    dist = model.kneighbors(emb[:10] + 0.01)[0][:, 0]
    assert np.array_equal(lab, res.labels[:10]) and np.all(dist < 0.1)


def test_select_partitions_from_ranking(tmp_path: Path) -> None:
    header = (
        "rank,cell,extractor,reducer,clusterer,n_clusters,seed,silhouette,calinski_harabasz,"
        "davies_bouldin,stability_ari,stability_ami,borda,labels_path"
    )
    cells = [  # (rank, extractor), written out of order
        (3, "simclr"),
        (1, "resnet50"),
        (2, "simclr"),
        (5, "resnet50"),
        (4, "simclr"),
        (6, "cae"),
    ]
    lines = [header]
    (tmp_path / "cells").mkdir()
    for rank, ext in cells:
        np.save(tmp_path / "cells" / f"c{rank}.npy", np.full(7, rank, dtype=np.int64))
        lines.append(
            f"{rank},c{rank},{ext},pca,kmeans,30,0,0.1,10,1.0,0.5,0.5,{rank * 4},cells/c{rank}.npy"
        )
    ranking = tmp_path / "ranking.csv"
    ranking.write_text("\n".join(lines) + "\n")

    overall = select_partitions(ranking, 2, per_extractor=False)
    assert overall == {"all": [tmp_path / "cells/c1.npy", tmp_path / "cells/c2.npy"]}
    per = select_partitions(ranking, 2, per_extractor=True)
    assert list(per) == ["resnet50", "simclr", "cae"]
    assert [p.name for p in per["simclr"]] == ["c2.npy", "c3.npy"]
    assert [p.name for p in per["resnet50"]] == ["c1.npy", "c5.npy"]
    assert [p.name for p in per["cae"]] == ["c6.npy"]
    parts = load_partitions(per["simclr"])
    assert parts.shape == (2, 7) and parts[:, 0].tolist() == [2, 3]

    (tmp_path / "cells" / "c2.npy").unlink()
    with pytest.raises(FusionError, match="c2.npy"):
        select_partitions(ranking, 2, per_extractor=False)
    ranking.write_text("rank,cell\n1,a\n")
    with pytest.raises(FusionError, match="missing columns"):
        select_partitions(ranking, 2, per_extractor=False)


def test_load_partitions_rejects_mismatched_lengths(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros(5, np.int64))
    np.save(tmp_path / "b.npy", np.zeros(6, np.int64))
    with pytest.raises(FusionError, match="6 labels"):
        load_partitions([tmp_path / "a.npy", tmp_path / "b.npy"])


def _search_case() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    truth = np.repeat(np.arange(5), 40)
    parts = np.stack(
        [np.where(rng.random(200) < 0.15, rng.integers(-1, 5, 200), truth) for _ in range(8)]
    )
    return parts, truth


BEFORE_SEARCH = "23b05323ba7a6537"


BEFORE_SEARCH_FILES = {"labels.csv": "9819edf361df8a09", "fusion_search.csv": "4c333820b95a045b"}


BEFORE_NPZ = "65f43fc6e4850c9e"


NPZ_LAYOUT = {  # neighbours.npz of a saved solution: these arrays, nothing else
    "format": ("<U31", ()),
    "embedding": ("<f4", (199, 4)),
    "labels": ("<i8", (199,)),
    "n_neighbors": ("<i8", ()),
    "max_distance": ("<f8", ()),
}


def test_search_and_written_files_identical_to_before_redesign(tmp_path: Path) -> None:
    parts, truth = _search_case()
    res = search_fusion(
        parts,
        n_partitions=[2, 5, 8],
        thresholds=[0.2, 0.4, 0.6, 0.8],
        min_sizes=[1, 10, 30],
        target_groups=5,
        unassigned_penalty=0.05,
    )
    rows = np.array([repr(sorted(r.items())) for r in res.table])
    assert array_digest(rows, res.labels, np.array(repr(sorted(res.best.items())))) == BEFORE_SEARCH

    ids = [f"img_{i:03d}.png" for i in range(200)]
    emb = np.random.default_rng(3).normal(size=(200, 4)) + truth[:, None] * 4
    run_fusion_search(
        parts,
        ids,
        tmp_path,
        n_partitions=[3, 8],
        thresholds=[0.3, 0.6],
        min_sizes=[1, 10],
        target_groups=5,
        unassigned_penalty=0.1,
        embedding=emb,
        n_neighbors=3,
    )
    for name, expected in BEFORE_SEARCH_FILES.items():
        data = (tmp_path / name).read_bytes()
        if name == "labels.csv":  # one labels.csv writer now: same rows, "\n" line ends
            assert b"\r" not in data
            data = data.replace(b"\n", b"\r\n")
        assert hashlib.sha256(data).hexdigest()[:16] == expected
    with np.load(tmp_path / "neighbours.npz", allow_pickle=False) as z:
        assert {k: (z[k].dtype.str, z[k].shape) for k in z.files} == NPZ_LAYOUT
        assert array_digest(*[z[k] for k in sorted(z.files)]) == BEFORE_NPZ


def test_search_takes_its_grid_by_keyword_only() -> None:
    parts = np.zeros((2, 5), int)
    with pytest.raises(TypeError, match="positional"):
        search_fusion(parts, [2], [0.5], [1], 2)  # type: ignore[misc]


def _toy_partitions() -> tuple[np.ndarray, np.ndarray]:
    truth = np.repeat(np.arange(4), 30)
    merged = truth // 2  # candidates that merge pairs of true groups
    rng = np.random.default_rng(5)
    noisy = np.where(rng.random(120) < 0.1, rng.integers(0, 4, 120), truth)
    return np.stack([truth, truth, noisy, merged, merged, merged]), truth
