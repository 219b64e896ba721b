"""Pairwise constraints: must-link closure, cannot-link lifting, constraints from references.

Points joined by must-links, directly or through a chain, form one *must-link group*
(the transitive closure, computed as connected components of the must-link graph).
A cannot-link between two points forbids their whole groups from sharing a cluster.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

PairsLike = Sequence[tuple[int, int]] | np.ndarray | None


def as_pairs(pairs: PairsLike, n_samples: int, name: str) -> np.ndarray:
    """Validate constraint pairs and return them as an int64 array.

    Args:
        pairs: ``[(i, j), ...]`` or an array of shape (M, 2); ``None`` means no pairs.
        n_samples: number of points; indices must lie in ``[0, n_samples)``.
        name: ``"must_link"`` or ``"cannot_link"``, used in error messages.

    Returns:
        Array of shape (M, 2), int64.

    Raises:
        ValueError: on a malformed array, a non-integer or an out-of-range index.
    """
    if pairs is None:
        return np.zeros((0, 2), dtype=np.int64)
    arr = np.asarray(pairs)
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must be a list of (i, j) pairs; got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} indices must be integers; got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = np.flatnonzero(((arr < 0) | (arr >= n_samples)).any(axis=1))
    if bad.size:
        i, j = arr[bad[0]]
        raise ValueError(
            f"{name} pair ({i}, {j}) has an index outside [0, {n_samples}) ({bad.size} such pairs)"
        )
    return arr


def must_link_groups(n_samples: int, must_link: PairsLike) -> tuple[int, np.ndarray]:
    """Transitive closure of must-links.

    Args:
        n_samples: number of points n.
        must_link: must-link pairs (M, 2).

    Returns:
        ``(n_groups, group_of)`` where ``group_of`` (n,) int64 gives each point's group;
        points in no must-link are groups of one. Groups are numbered by first member.
    """
    ml = as_pairs(must_link, n_samples, "must_link")
    graph = coo_matrix(
        (np.ones(len(ml), dtype=np.int8), (ml[:, 0], ml[:, 1])), shape=(n_samples, n_samples)
    )
    n_groups, comp = connected_components(graph, directed=False)
    # Renumber by first member so group ids do not depend on scipy's internal order.
    _, first = np.unique(comp, return_index=True)
    rank = np.empty(n_groups, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(n_groups)
    return int(n_groups), rank[comp]


def lift_cannot_links(group_of: np.ndarray, cannot_link: PairsLike) -> np.ndarray:
    """Lift point cannot-links to must-link groups.

    Args:
        group_of: (n,) group of each point, from :func:`must_link_groups`.
        cannot_link: cannot-link pairs (M, 2).

    Returns:
        Unique group pairs (P, 2) int64 with ``a < b`` in each row.

    Raises:
        ValueError: when a cannot-link joins two points of one must-link group (the
            constraints contradict each other); the message names the pair.
    """
    cl = as_pairs(cannot_link, len(group_of), "cannot_link")
    if len(cl) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    g = group_of[cl]
    same = np.flatnonzero(g[:, 0] == g[:, 1])
    if same.size:
        i, j = cl[same[0]]
        raise ValueError(
            f"contradictory constraints: cannot-link pair ({i}, {j}) joins two points that are "
            f"must-linked (directly or through a chain of must-links); {same.size} such pairs"
        )
    g.sort(axis=1)
    return np.unique(g, axis=0)


def count_violations(
    labels: np.ndarray, must_link: PairsLike, cannot_link: PairsLike
) -> tuple[int, int]:
    """Number of violated (must-link, cannot-link) pairs in a labelling ``labels`` (n,)."""
    labels = np.asarray(labels)
    ml = as_pairs(must_link, len(labels), "must_link")
    cl = as_pairs(cannot_link, len(labels), "cannot_link")
    n_ml = int(np.count_nonzero(labels[ml[:, 0]] != labels[ml[:, 1]]))
    n_cl = int(np.count_nonzero(labels[cl[:, 0]] == labels[cl[:, 1]]))
    return n_ml, n_cl


def constraints_from_reference(
    classes: Sequence[str | None],
) -> tuple[np.ndarray, np.ndarray]:
    """Must-link and cannot-link pairs from per-point reference classes.

    Points of one class are must-linked as a chain (i0-i1, i1-i2, ...): the transitive
    closure taken by COP-K-means makes that equivalent to all pairs. One cannot-link joins
    the first member of every pair of classes: lifting cannot-links to must-link groups makes
    that equivalent to all cross-class pairs. So the output has (members - classes) must-links
    and C(classes, 2) cannot-links instead of quadratically many.

    Args:
        classes: (n,) class name of each point, ``None`` for ordinary (unlabelled) images.

    Returns:
        ``(must_link, cannot_link)``, int64 arrays of shape (M, 2) and (C, 2) of point
        indices.
    """
    members: dict[str, list[int]] = {}
    for i, name in enumerate(classes):
        if name is not None:
            members.setdefault(str(name), []).append(i)
    ml = [(m[a], m[a + 1]) for m in members.values() for a in range(len(m) - 1)]
    heads = [m[0] for m in members.values()]
    cl = [(heads[a], heads[b]) for a in range(len(heads)) for b in range(a + 1, len(heads))]
    return (
        np.asarray(ml, dtype=np.int64).reshape(-1, 2),
        np.asarray(cl, dtype=np.int64).reshape(-1, 2),
    )
