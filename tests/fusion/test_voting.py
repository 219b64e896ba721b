"""CoAssociationVoting: the exact co-association voting against a slow dense definition, as a
scikit-learn clusterer, and its results unchanged by the redesign of issue 20.

The digests were computed before issue 20 (``CoAssociationVoting`` fed (P, n) partitions) on the
fixed inputs built here; the new API must give the same bytes.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from conftest import array_digest
from scipy.sparse.csgraph import connected_components
from sklearn.base import clone
from sklearn.metrics import adjusted_rand_score

from aurora.fusion import (
    CoAssociationVoting,
    FusionError,
    components_for_thresholds,
    compress_partitions,
    finalize_labels,
)


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


def _voting_cases() -> list[tuple[np.ndarray, np.ndarray | None, float, int, int]]:
    """(partitions (P, n), weights, threshold, min size, max_block_entries)."""
    rng = np.random.default_rng(20250101)
    out = []
    for case in range(60):
        n = int(rng.integers(1, 400))
        n_part = int(rng.integers(1, 12))
        k = int(rng.integers(2, 12))
        parts = rng.integers(-1, k, size=(n_part, n))
        if case % 3:
            base = rng.integers(0, k, size=n)
            parts = np.where(rng.random((n_part, n)) < 0.8, base[None, :], parts)
        kind = case % 4
        w = [
            None,
            rng.integers(0, 5, n_part) / 4,
            rng.uniform(0, 2, n_part),
            rng.choice([0.1, 0.2, 0.3, 0.7], n_part),
        ][kind]
        ww = np.ones(n_part) if w is None else w
        threshold = (
            float(np.sum(ww[rng.random(n_part) < 0.5])) / n_part
            if case % 3 == 0
            else float(rng.uniform(0.1, 0.9))
        )
        out.append((parts, w, threshold, int(rng.integers(0, 6)), int(rng.integers(1, 2000))))
    base = rng.integers(0, 30, size=4000)  # a larger correlated case scanned in many blocks
    parts = np.where(
        rng.random((10, 4000)) < 0.85, base[None, :], rng.integers(-1, 30, size=(10, 4000))
    )
    for t in (0.3, 0.5, 0.7):
        out.append((parts, None, t, 20, 5000))
    return out


BEFORE_VOTING = "8c0eb7b0cb0abeb7"


def test_voting_identical_to_before_redesign() -> None:
    per_case = []
    for parts, w, t, ms, block in _voting_cases():
        m = CoAssociationVoting(
            threshold=t, min_cluster_size=ms, weights=w, max_block_entries=block
        ).fit(parts.T)
        stats = [m.n_groups_, m.n_unassigned_, m.n_signatures_, m.n_signature_edges_]
        per_case.append(array_digest(m.labels_, m.group_sizes_, stats))
    assert array_digest(np.array(per_case)) == BEFORE_VOTING


def test_voting_follows_estimator_conventions() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 5, 120)
    X = np.where(rng.random((120, 6)) < 0.8, base[:, None], rng.integers(-1, 5, (120, 6)))
    X_copy = X.copy()
    model = CoAssociationVoting(threshold=0.5, min_cluster_size=3)
    assert model.fit(X) is model
    assert np.array_equal(X, X_copy)  # input untouched
    assert model.n_features_in_ == 6 and model.labels_.shape == (120,)
    assert not hasattr(clone(model), "labels_")
    assert np.array_equal(
        CoAssociationVoting(threshold=0.5, min_cluster_size=3).fit_predict(X), model.labels_
    )
    # lists, Fortran order and read-only arrays give the same answer
    frozen = np.asfortranarray(X)
    frozen.flags.writeable = False
    for same in (X.tolist(), frozen):
        assert np.array_equal(
            CoAssociationVoting(threshold=0.5, min_cluster_size=3).fit_predict(same), model.labels_
        )
    # the order of the partitions does not matter (weights follow their partition)
    w = rng.uniform(0.5, 2, 6)
    perm = rng.permutation(6)
    a = CoAssociationVoting(threshold=0.4, min_cluster_size=1, weights=w).fit_predict(X)
    b = CoAssociationVoting(threshold=0.4, min_cluster_size=1, weights=w[perm]).fit_predict(
        X[:, perm]
    )
    assert np.array_equal(a, b)
    # the order of the images only renumbers the groups
    rows = rng.permutation(120)
    c = CoAssociationVoting(threshold=0.4, min_cluster_size=1, weights=w).fit_predict(X[rows])
    assert adjusted_rand_score(a[rows], c) == 1.0


def test_voting_bad_input_names_the_shape() -> None:
    with pytest.raises(FusionError, match="n_samples, n_partitions"):
        CoAssociationVoting().fit(np.zeros((4, 0), int))
    with pytest.raises(FusionError, match="integer labels"):
        CoAssociationVoting().fit(np.full((3, 2), 0.5))
    with pytest.raises(FusionError, match="integer labels"):
        CoAssociationVoting().fit(np.array([["a", "b"]]))
    assert CoAssociationVoting().fit_predict(np.zeros((0, 3), int)).shape == (0,)
