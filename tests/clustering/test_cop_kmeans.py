"""COP-K-means: constraints honoured, contradictions caught, agreement with slow references."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from aurora.clustering import (
    COPKMeans,
    InfeasibleConstraintsError,
    constraints_from_reference,
    count_violations,
    lift_cannot_links,
    must_link_groups,
)


def slow_cop_kmeans(X, k, must_link, cannot_link, init, max_iter):
    """Obvious COP-K-means: closure by repeated merging, groups in the same fixed order."""
    n = len(X)
    group = list(range(n))
    changed = True
    while changed:  # merge until every must-link pair shares a group id
        changed = False
        for i, j in must_link:
            if group[i] != group[j]:
                lo, hi = sorted((group[i], group[j]))
                group = [lo if g == hi else g for g in group]
                changed = True
    ids = {g: r for r, g in enumerate(sorted(set(group), key=group.index))}
    group = [ids[g] for g in group]
    G = len(ids)
    members = [[i for i in range(n) if group[i] == g] for g in range(G)]
    means = [np.mean([X[i] for i in m], axis=0) for m in members]
    nbrs = [set() for _ in range(G)]
    for i, j in cannot_link:
        nbrs[group[i]].add(group[j])
        nbrs[group[j]].add(group[i])
    order = sorted(
        (g for g in range(G) if nbrs[g]), key=lambda g: (-len(nbrs[g]), -len(members[g]), g)
    )
    centers = [np.array(c, dtype=float) for c in init]

    def assign():
        lab = [None] * G
        for g in range(G):
            if not nbrs[g]:
                lab[g] = int(np.argmin([np.sum((means[g] - c) ** 2) for c in centers]))
        for g in order:
            dists = [np.sum((means[g] - c) ** 2) for c in centers]
            for c in sorted(range(k), key=lambda c: dists[c]):
                if all(lab[h] != c for h in nbrs[g]):
                    lab[g] = c
                    break
        return lab

    prev = None
    for _ in range(max_iter):
        lab = assign()
        for c in range(k):
            pts = [X[i] for i in range(n) if lab[group[i]] == c]
            if pts:
                centers[c] = np.mean(pts, axis=0)
        if lab == prev:
            break
        prev = lab
    lab = assign()
    return np.array([lab[group[i]] for i in range(n)])


def random_problem(seed, n=60, k=4, n_ml=12, n_cl=12):
    rng = np.random.default_rng(seed)
    X, _ = make_blobs(n_samples=n, centers=k, n_features=2, cluster_std=1.5, random_state=seed)
    ml = rng.integers(0, n, size=(n_ml, 2))
    _, g = must_link_groups(n, ml)
    cl = rng.integers(0, n, size=(n_cl * 3, 2))
    cl = cl[g[cl[:, 0]] != g[cl[:, 1]]][:n_cl]
    return X, ml, cl


@pytest.mark.parametrize("seed", range(8))
def test_zero_violations_on_random_problems(seed: int) -> None:
    X, ml, cl = random_problem(seed, n=300, k=6, n_ml=60, n_cl=60)
    model = COPKMeans(n_clusters=6, random_state=seed).fit(X, must_link=ml, cannot_link=cl)
    assert count_violations(model.labels_, ml, cl) == (0, 0)
    assert model.labels_.shape == (300,) and model.labels_.dtype == np.int64
    assert set(np.unique(model.labels_)) <= set(range(6))


@pytest.mark.parametrize("seed", range(5))
def test_matches_slow_reference(seed: int) -> None:
    X, ml, cl = random_problem(seed)
    init, _ = kmeans_plusplus(X, 4, random_state=seed)
    fast = COPKMeans(n_clusters=4, max_iter=50, tol=0.0, init=init).fit(
        X, must_link=ml, cannot_link=cl
    )
    slow = slow_cop_kmeans(X, 4, ml.tolist(), cl.tolist(), init, max_iter=50)
    assert count_violations(slow, ml, cl) == (0, 0)
    np.testing.assert_array_equal(fast.labels_, slow)


def test_contradiction_names_the_pair() -> None:
    X = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match=r"cannot-link pair \(0, 2\)"):
        COPKMeans(n_clusters=2, random_state=0).fit(
            X, must_link=[(0, 1), (1, 2)], cannot_link=[(0, 2)]
        )


def test_out_of_range_index_is_named() -> None:
    X = np.zeros((5, 2))
    with pytest.raises(ValueError, match=r"must_link pair \(1, 7\)"):
        COPKMeans(n_clusters=2).fit(X, must_link=[(1, 7)])


def test_closure_and_propagation() -> None:
    n_groups, g = must_link_groups(6, [(0, 1), (1, 2), (4, 5)])
    assert n_groups == 3 and g.tolist() == [0, 0, 0, 1, 2, 2]
    # (2, 4) lifts to groups (0, 2); duplicates collapse.
    assert lift_cannot_links(g, [(2, 4), (5, 0), (3, 1)]).tolist() == [[0, 1], [0, 2]]
    # Two far-apart blobs; 0 must go with 1..2 although it sits in the other blob.
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 0.1, (20, 2)), rng.normal(10, 0.1, (20, 2))])
    ml = [(0, 20), (20, 21)]  # 0 is chained to the second blob
    cl = [(21, 30)]  # lifted: 30 cannot join 0, 20, 21
    m = COPKMeans(n_clusters=2, random_state=0).fit(X, must_link=ml, cannot_link=cl)
    assert m.labels_[0] == m.labels_[20] == m.labels_[21]
    assert m.labels_[30] != m.labels_[0]
    assert count_violations(m.labels_, ml, cl) == (0, 0)


def test_equals_kmeans_without_constraints() -> None:
    X, _ = make_blobs(n_samples=500, centers=5, n_features=3, random_state=1)
    init, _ = kmeans_plusplus(X, 5, random_state=3)
    ours = COPKMeans(n_clusters=5, init=init).fit(X)
    ref = KMeans(5, init=init, n_init=1).fit(X)
    assert adjusted_rand_score(ours.labels_, ref.labels_) == 1.0
    np.testing.assert_allclose(ours.inertia_, ref.inertia_, rtol=1e-9)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))


def test_infeasible_raises_clear_error() -> None:
    # Three mutually cannot-linked points need three clusters; k=2 is impossible.
    X = np.random.default_rng(0).normal(size=(10, 2))
    model = COPKMeans(n_clusters=2, random_state=0, n_restarts=2)
    with pytest.raises(InfeasibleConstraintsError, match=r"n_clusters=2, after 3 attempt"):
        model.fit(X, cannot_link=[(0, 1), (1, 2), (0, 2)])


def test_constraints_from_reference() -> None:
    classes = [None, "arc", "patchy", "arc", None, "corona", "arc", "patchy"]
    ml, cl = constraints_from_reference(classes)
    assert ml.tolist() == [[1, 3], [3, 6], [2, 7]]
    assert cl.tolist() == [[1, 2], [1, 5], [2, 5]]
    # After closure and lifting: every cross-class pair is separated, every class together.
    X = np.random.default_rng(0).normal(size=(8, 2))
    lab = COPKMeans(n_clusters=3, random_state=0).fit(X, must_link=ml, cannot_link=cl).labels_
    assert lab[1] == lab[3] == lab[6] and lab[2] == lab[7]
    assert len({lab[1], lab[2], lab[5]}) == 3
