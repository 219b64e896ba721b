"""Tests of aurora.fusion: exact co-association voting, selection, search, neighbour model."""

from __future__ import annotations

import csv
import dataclasses
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from scipy.sparse.csgraph import connected_components

from aurora.fusion import (
    CoAssociationVoting,
    FusedNeighbours,
    FusionError,
    FusionParameterError,
    FusionSettings,
    components_for_thresholds,
    compress_partitions,
    finalize_labels,
    group_size_loss,
    load_partitions,
    run_fusion_search,
    search_fusion,
    select_partitions,
)
from aurora.infra.errors import SettingsError


def dense_voting(
    parts: np.ndarray, threshold: float, min_size: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """The definition on a dense n x n matrix, decided in exact rational arithmetic.

    Each pair gets the bit pattern of the partitions it matches in; the exact weighted sum of
    each distinct pattern is compared with t * P using Fractions.
    """
    n_part, n = parts.shape
    w = np.ones(n_part) if weights is None else np.asarray(weights, dtype=float)
    codes = np.zeros((n, n), dtype=np.int64)
    for p in range(n_part):
        lab = parts[p]
        same = (lab[:, None] == lab[None, :]) & (lab[:, None] >= 0)
        codes |= same.astype(np.int64) << p
    uniq, inv = np.unique(codes, return_inverse=True)
    cut = Fraction(float(threshold)) * n_part
    joined = np.array(
        [
            sum((Fraction(float(w[p])) for p in range(n_part) if (int(c) >> p) & 1), Fraction(0))
            > cut
            for c in uniq
        ]
    )
    adj = joined[inv.reshape(n, n)]
    np.fill_diagonal(adj, False)
    _, comp = connected_components(adj, directed=False)
    sizes = np.bincount(comp)
    out = np.full(n, -1, dtype=np.int64)
    numbering: dict[int, int] = {}
    for i in range(n):  # first member order
        if sizes[comp[i]] >= min_size:
            out[i] = numbering.setdefault(int(comp[i]), len(numbering))
    return out


def _random_case(rng: np.random.Generator, case: int) -> dict:
    n = int(rng.integers(1, 301)) if case % 10 == 0 else int(rng.integers(1, 90))
    n_part = int(rng.integers(1, 11))
    k = int(rng.integers(1, 7))
    parts = rng.integers(-1, k, size=(n_part, n))
    parts[:, rng.random(n) < 0.05] = -1  # some images unassigned everywhere
    if rng.random() < 0.3:  # correlated partitions, like real candidates
        base = rng.integers(0, k, size=n)
        agree = rng.random((n_part, n)) < 0.8
        parts = np.where(agree, base[None, :], parts)
    kind = case % 4
    if kind == 0:
        w = None
    elif kind == 1:
        w = rng.integers(0, 5, n_part) / 4  # dyadic, zeros included
    elif kind == 2:
        w = rng.uniform(0, 2, n_part)  # general floats
    else:
        w = rng.choice([0.1, 0.2, 0.3, 0.7], n_part)  # non-dyadic: sums land on the cut
    ww = np.ones(n_part) if w is None else w
    r = rng.random()
    if r < 0.6:  # exactly an attainable c value, computed in floats
        subset = rng.random(n_part) < 0.5
        threshold = float(np.sum(ww[subset])) / n_part
    elif r < 0.7:
        threshold = float(rng.integers(0, n_part + 1)) / n_part
    else:
        threshold = float(rng.uniform(-0.2, 1.2))
    return {
        "parts": parts,
        "weights": w,
        "threshold": threshold,
        "min_size": int(rng.integers(0, 6)),
        "block": int(rng.integers(1, 400)),
    }


def test_matches_dense_definition_on_random_inputs() -> None:
    rng = np.random.default_rng(20240601)
    for case in range(300):
        c = _random_case(rng, case)
        model = CoAssociationVoting(
            threshold=c["threshold"],
            min_cluster_size=c["min_size"],
            weights=c["weights"],
            max_block_entries=c["block"],
        )
        got = model.fit_predict(c["parts"].T)
        expected = dense_voting(c["parts"], c["threshold"], c["min_size"], c["weights"])
        assert np.array_equal(got, expected), f"case {case}: {c}"
        assert model.n_groups_ == int(expected.max(initial=-1)) + 1
        assert model.n_unassigned_ == int((expected < 0).sum())


def test_float_weights_on_the_cut_are_decided_exactly() -> None:
    # 0.1 + 0.2 > 0.3 in floats but not in exact arithmetic: c = 0.3/3 is not > 0.1.
    parts = np.array([[0, 0], [0, 0], [1, 2]])
    w = [0.1, 0.2, 0.7]
    got = CoAssociationVoting(threshold=0.1, min_cluster_size=1, weights=w).fit_predict(parts.T)
    assert np.array_equal(got, dense_voting(parts, 0.1, 1, np.array(w)))
    assert np.array_equal(got, [0, 1])
    # Slightly below the exact sum they join.
    assert np.array_equal(
        CoAssociationVoting(threshold=0.0999, min_cluster_size=1, weights=w).fit_predict(parts.T),
        [0, 0],
    )


def test_identical_partitions_fuse_to_themselves() -> None:
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 7, size=150) * 13 + 5  # arbitrary label values
    parts = np.tile(raw, (5, 1))
    got = CoAssociationVoting(threshold=0.5, min_cluster_size=1).fit_predict(parts.T)
    _, first = np.unique(raw, return_index=True)
    order = np.argsort(first)
    expected = np.empty_like(raw)
    for new, old in enumerate(np.unique(raw)[order]):
        expected[raw == old] = new
    assert np.array_equal(got, expected)
    # Images unassigned everywhere are never joined: singletons, dropped by min size 2.
    parts[:, :10] = -1
    got = CoAssociationVoting(threshold=0.5, min_cluster_size=2).fit_predict(parts.T)
    assert np.all(got[:10] == -1) and np.all(got[10:] >= 0)


def test_threshold_zero_with_one_shared_label_joins_everything() -> None:
    rng = np.random.default_rng(2)
    parts = rng.integers(-1, 50, size=(8, 200))
    parts[3] = 0
    assert np.array_equal(
        CoAssociationVoting(threshold=0.0, min_cluster_size=1).fit_predict(parts.T), np.zeros(200)
    )


def test_negative_threshold_joins_even_unassigned_images() -> None:
    parts = np.array([[-1, -1, 0], [-1, 1, 2]])
    assert np.array_equal(
        CoAssociationVoting(threshold=-0.01, min_cluster_size=1).fit_predict(parts.T), [0, 0, 0]
    )


def test_min_size_larger_than_n_gives_all_unassigned() -> None:
    parts = np.zeros((3, 40), dtype=int)
    model = CoAssociationVoting(threshold=0.5, min_cluster_size=41).fit(parts.T)
    assert np.all(model.labels_ == -1) and model.n_groups_ == 0
    assert model.n_unassigned_ == 40


def test_signature_with_too_few_votes_splits_into_single_images() -> None:
    # Three identical images assigned in only 1 of 4 partitions: c = 0.25, not > 0.5.
    parts = np.array([[0, 0, 0, 1], [-1, -1, -1, 1], [-1, -1, -1, 1], [-1, -1, -1, 1]])
    assert np.array_equal(
        CoAssociationVoting(threshold=0.5, min_cluster_size=1).fit_predict(parts.T), [0, 1, 2, 3]
    )


def test_many_thresholds_in_one_pass_equal_single_runs() -> None:
    rng = np.random.default_rng(3)
    parts = rng.integers(-1, 4, size=(6, 250))
    w = rng.integers(1, 4, 6).astype(float)
    sigs = compress_partitions(parts)
    thresholds = [0.9, -0.1, 0.3, 0.5, 0.0, 2.0]
    results = components_for_thresholds(sigs, thresholds, w, max_block_entries=500)
    for t, res in zip(thresholds, results, strict=True):
        single = CoAssociationVoting(threshold=t, min_cluster_size=3, weights=w).fit_predict(
            parts.T
        )
        assert np.array_equal(finalize_labels(res, sigs.inverse, 3), single)


def test_bad_inputs_raise_fusion_error() -> None:
    with pytest.raises(FusionError, match="2-D"):
        CoAssociationVoting(threshold=0.5, min_cluster_size=1).fit(np.zeros(5, int))
    with pytest.raises(FusionError, match="label -3"):
        CoAssociationVoting(threshold=0.5, min_cluster_size=1).fit(np.array([[0], [-3]]))
    with pytest.raises(FusionError, match="non-negative"):
        CoAssociationVoting(threshold=0.5, min_cluster_size=1, weights=[1.0, -1.0]).fit(
            np.zeros((3, 2), int)
        )
    with pytest.raises(FusionError, match="shape"):
        CoAssociationVoting(threshold=0.5, min_cluster_size=1, weights=[1.0]).fit(
            np.zeros((3, 2), int)
        )
    with pytest.raises(FusionError, match="finite"):
        CoAssociationVoting(threshold=float("nan"), min_cluster_size=1).fit(np.zeros((3, 2), int))
    with pytest.raises(FusionError, match="min_cluster_size"):
        CoAssociationVoting(threshold=0.5, min_cluster_size=-1).fit(np.zeros((3, 2), int))


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


def _toy_partitions() -> tuple[np.ndarray, np.ndarray]:
    truth = np.repeat(np.arange(4), 30)
    merged = truth // 2  # candidates that merge pairs of true groups
    rng = np.random.default_rng(5)
    noisy = np.where(rng.random(120) < 0.1, rng.integers(0, 4, 120), truth)
    return np.stack([truth, truth, noisy, merged, merged, merged]), truth


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


def test_fused_neighbours_vote_and_round_trip(tmp_path: Path) -> None:
    x = np.array([[0.0, 0], [0.1, 0], [0.2, 0], [5, 5], [5.1, 5], [9, 9]])
    y = np.array([0, 0, 1, 1, 1, -1])  # the -1 image is never a reference
    model = FusedNeighbours(n_neighbors=3, max_distance=2.0).fit(x, y)
    new = np.array([[0.05, 0], [5, 5.05], [9, 9]])
    lab = model.predict(new)
    assert lab.tolist() == [0, 1, -1]
    dist, idx = model.kneighbors(new)
    assert dist.shape == idx.shape == (3, 3)
    assert dist[2, 0] == pytest.approx(np.hypot(3.9, 4))
    assert np.all(np.diff(dist, axis=1) >= 0)  # nearest first
    model.save(tmp_path / "nn.npz")
    with np.load(tmp_path / "nn.npz", allow_pickle=False) as z:
        assert "embedding" in z
    again = FusedNeighbours.load(tmp_path / "nn.npz")
    assert np.array_equal(again.predict(new), lab)
    assert np.array_equal(again.kneighbors(new)[0], dist)
    with pytest.raises(FusionError, match="new points"):
        again.predict(np.zeros((1, 3)))


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


# ------------------------------------------------------ one validator per parameter, two callers

FUSION_NODE = {"threshold": 0.5, "min_cluster_size": 2, "n_partitions": 3, "per_extractor": True}


@pytest.mark.parametrize("bad", [-1, 2.5, True, "3", float("nan")])
def test_min_size_is_refused_alike_by_the_estimator_and_the_settings(bad: object) -> None:
    with pytest.raises(FusionParameterError) as by_estimator:
        CoAssociationVoting(min_cluster_size=bad).fit(np.zeros((3, 2), int))
    with pytest.raises(FusionParameterError) as by_settings:
        FusionSettings.from_node({**FUSION_NODE, "min_cluster_size": bad})
    assert by_estimator.value.key == "min_cluster_size"
    assert by_settings.value.key == "fusion.min_cluster_size"
    assert by_estimator.value.allowed == by_settings.value.allowed
    assert isinstance(by_settings.value, SettingsError)  # the run's one error line
    assert isinstance(by_estimator.value, FusionError)  # what the estimator promises


def test_threshold_of_a_setting_must_be_in_the_range_of_the_co_association() -> None:
    parts = np.array([[0, 0, 1], [0, 1, 1]])
    # The estimator takes any finite t: below 0 all join, at the top none does.
    assert CoAssociationVoting(threshold=-0.1).fit_predict(parts.T).tolist() == [0, 0, 0]
    assert CoAssociationVoting(threshold=1.0).fit_predict(parts.T).tolist() == [0, 1, 2]
    with pytest.raises(FusionParameterError, match=r"^threshold=inf "):
        CoAssociationVoting(threshold=float("inf")).fit(parts.T)
    # A setting must be useful: [0, 1] unweighted, [0, mean weight] weighted.
    for bad in (-0.1, 1.5):
        with pytest.raises(SettingsError, match=r"^fusion\.threshold=.*\[0, 1\]"):
            FusionSettings.from_node({**FUSION_NODE, "threshold": bad})
    weighted = {**FUSION_NODE, "threshold": 1.5, "voting": {"weights": [2.0, 2.0, 2.0]}}
    assert FusionSettings.from_node(weighted).threshold == 1.5
    with pytest.raises(SettingsError, match=r"^fusion\.search\.thresholds=.*\[0, 1\]"):
        FusionSettings.from_node({**FUSION_NODE, "search": {**SEARCH_NODE, "thresholds": [0.5, 2]}})


SEARCH_NODE = {
    "n_partitions": [2, 9],
    "thresholds": [0.3, 0.6],
    "min_sizes": [1, 4],
    "target_groups": 3,
    "unassigned_penalty": 0.1,
    "weights": None,
}


def test_settings_make_the_estimators_they_describe() -> None:
    rng = np.random.default_rng(5)
    parts = rng.integers(-1, 3, size=(4, 60))
    settings = FusionSettings.from_node({**FUSION_NODE, "voting": {"weights": [1, 2, 1, 1]}})
    voting = settings.voting_estimator()
    expected = CoAssociationVoting(threshold=0.5, min_cluster_size=2, weights=[1, 2, 1, 1])
    assert np.array_equal(voting.fit_predict(parts.T), expected.fit_predict(parts.T))
    searched = FusionSettings.from_node({**FUSION_NODE, "search": SEARCH_NODE})
    assert searched.candidates == 9  # the most partitions any grid point fuses
    res = searched.search.search(parts)  # 9 > P = 4: left out
    direct = search_fusion(
        parts, n_partitions=[2], thresholds=[0.3, 0.6], min_sizes=[1, 4], target_groups=3,
        unassigned_penalty=0.1,
    )  # fmt: skip
    assert res.table == direct.table and np.array_equal(res.labels, direct.labels)


def test_fitted_settings_take_the_lowered_values_and_keep_the_rest() -> None:
    searched = FusionSettings.from_node({**FUSION_NODE, "search": SEARCH_NODE})
    fitted = searched.fitted(1, (1, 2), 2)
    assert fitted.min_cluster_size == 1 and fitted.voting_estimator().min_cluster_size == 1
    assert fitted.search is not None
    assert (fitted.search.min_sizes, fitted.search.target_groups) == ((1, 2), 2)
    assert fitted.search.thresholds == searched.search.thresholds
    assert searched.min_cluster_size == 2  # frozen: the original is unchanged
    with pytest.raises(dataclasses.FrozenInstanceError):
        searched.threshold = 0.1  # type: ignore[misc]
