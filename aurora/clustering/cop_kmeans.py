"""COP-K-means: K-means under must-link and cannot-link constraints, vectorised.

Semantics (Wagstaff et al. 2001, with the closure made explicit):

1. Must-links are closed transitively into *groups* (connected components); cannot-links are
   lifted to whole groups. A cannot-link inside one group raises ``ValueError`` naming a pair.
2. Centres start from K-means++ (or a given array).
3. Assignment: each group goes, as a unit, to the centre nearest to its mean (this minimises
   the group's summed squared distance). Groups in no cannot-link take their nearest centre
   directly (vectorised). Groups in a cannot-link are processed one after another in a fixed
   order (most cannot-link neighbours first, then larger groups, then group id) and take the
   nearest centre not already used by an assigned cannot-link neighbour (boolean mask over
   centres).
4. Update: centres are the means of their points; an empty cluster is re-seeded at the mean
   of the group that costs most in a cluster with other groups.
5. Stop when the assignment no longer changes, or the squared centre shift falls under
   ``tol`` × mean feature variance (scikit-learn's rule), or after ``max_iter`` iterations.

Infeasibility: greedy assignment can find every centre forbidden for a group (all ``k``
centres used by its cannot-link neighbours). The fit then restarts from new K-means++ centres
drawn from the same random state, up to ``n_restarts`` times, and raises
:class:`InfeasibleConstraintsError` naming a point of the group if every attempt fails. It
never returns a partial or ``None`` labelling.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import kmeans_plusplus
from sklearn.utils import check_array, check_random_state
from sklearn.utils.validation import check_is_fitted

from aurora.clustering.constraints import PairsLike, lift_cannot_links, must_link_groups
from aurora.infra.errors import AuroraError


class InfeasibleConstraintsError(AuroraError):
    """No centre satisfies the cannot-links of some must-link group, even after restarts."""


class _Stuck(Exception):
    """Internal: the greedy assignment found no feasible centre for one group."""

    def __init__(self, group: int) -> None:
        super().__init__(group)
        self.group = group


def _sq_dists(a: np.ndarray, b: np.ndarray, b_sq: np.ndarray | None = None) -> np.ndarray:
    """Squared Euclidean distances between rows of ``a`` (m, d) and ``b`` (k, d) -> (m, k)."""
    if b_sq is None:
        b_sq = np.einsum("ij,ij->i", b, b)
    d2 = np.einsum("ij,ij->i", a, a)[:, None] - 2.0 * (a @ b.T) + b_sq[None, :]
    np.maximum(d2, 0.0, out=d2)
    return d2


def _group_means(
    X: np.ndarray, group_of: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Size (G,) and mean (G, d) of each must-link group of the rows of ``X`` (n, d)."""
    n = X.shape[0]
    sizes = np.bincount(group_of, minlength=n_groups).astype(X.dtype)
    member = csr_matrix((np.ones(n, dtype=X.dtype), (group_of, np.arange(n))), shape=(n_groups, n))
    return sizes, np.asarray(member @ X) / sizes[:, None]


def _processing_order(
    gpairs: np.ndarray, n_groups: int, sizes: np.ndarray
) -> tuple[np.ndarray, list[list[int]]]:
    """The constrained groups in their fixed processing order, and their neighbours.

    Args:
        gpairs: (p, 2) cannot-links between group ids.
        n_groups: number of groups G.
        sizes: (G,) group sizes.

    Returns:
        (ordered (c,) group ids: most cannot-link neighbours first, then larger groups, then
        group id; nbrs: for the r-th processed group, its neighbours' positions in that order).
    """
    constrained = np.unique(gpairs)
    local = np.full(n_groups, -1, dtype=np.int64)
    local[constrained] = np.arange(constrained.size)
    lp = local[gpairs]
    adj = csr_matrix(
        (np.ones(2 * len(lp), dtype=np.int8), (lp.ravel(), lp[:, ::-1].ravel())),
        shape=(constrained.size, constrained.size),
    )
    degree = np.diff(adj.indptr)
    order_local = np.lexsort((constrained, -sizes[constrained], -degree))
    pos = np.empty(constrained.size, dtype=np.int64)
    pos[order_local] = np.arange(constrained.size)
    nbrs = [pos[adj.indices[adj.indptr[q] : adj.indptr[q + 1]]].tolist() for q in order_local]
    return constrained[order_local], nbrs


class COPKMeans(ClusterMixin, BaseEstimator):
    """K-means with must-link / cannot-link constraints (COP-K-means).

    Args:
        n_clusters: number of clusters k.
        max_iter: maximum number of assignment/update iterations per attempt.
        tol: relative tolerance on the squared centre shift (times mean feature variance).
        random_state: seed or ``RandomState`` for K-means++ and restarts.
        init: ``"k-means++"`` or an array (k, d) of initial centres (used for the first
            attempt; restarts use K-means++).
        n_restarts: how many times to restart from new centres when the constraints cannot be
            met greedily, before raising :class:`InfeasibleConstraintsError`.

    Attributes:
        cluster_centers_: (k, d) centres.
        labels_: (n,) int64 cluster of each training point; satisfies every constraint.
        inertia_: sum of squared distances of points to their centre.
        n_iter_: iterations of the successful attempt.
        n_restarts_: restarts that were needed (0 when the first attempt succeeded).
        n_groups_: number of must-link groups (closure), singletons included.
    """

    def __init__(
        self,
        *,
        n_clusters: int = 8,
        max_iter: int = 300,
        tol: float = 1e-4,
        random_state: int | np.random.RandomState | None = None,
        init: str | np.ndarray = "k-means++",
        n_restarts: int = 10,
    ) -> None:
        self.n_clusters = n_clusters
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.init = init
        self.n_restarts = n_restarts

    def fit(
        self,
        X: np.ndarray,
        y: None = None,
        must_link: PairsLike = None,
        cannot_link: PairsLike = None,
    ) -> COPKMeans:
        """Cluster ``X`` (n, d) under the constraints.

        Args:
            X: data (n, d).
            y: ignored.
            must_link: pairs (i, j) that must share a cluster.
            cannot_link: pairs (i, j) that must not share a cluster.

        Raises:
            ValueError: contradictory constraints (names a pair), bad indices, n < k.
            InfeasibleConstraintsError: no feasible assignment found after the restarts.
        """
        X = check_array(X, dtype=[np.float64, np.float32])
        n, d = X.shape
        k = int(self.n_clusters)
        if not 1 <= k <= n:
            raise ValueError(f"n_clusters={k} must be between 1 and the number of points {n}")
        n_groups, group_of = must_link_groups(n, must_link)
        gpairs = lift_cannot_links(group_of, cannot_link)
        sizes, gmean = _group_means(X, group_of, n_groups)
        ordered, nbrs = _processing_order(gpairs, n_groups, sizes)

        tol_abs = float(np.mean(np.var(X, axis=0))) * self.tol
        rng = check_random_state(self.random_state)
        attempts = int(self.n_restarts) + 1
        stuck: _Stuck | None = None
        for attempt in range(attempts):
            centers = self._initial_centers(X, k, rng, first=attempt == 0)
            try:
                centers, assign, n_iter = self._lloyd(gmean, sizes, centers, ordered, nbrs, tol_abs)
            except _Stuck as err:
                stuck = err
                continue
            self.cluster_centers_ = centers
            self.labels_ = assign[group_of].astype(np.int64)
            self.inertia_ = float(np.sum((X - centers[self.labels_]) ** 2, dtype=np.float64))
            self.n_iter_ = n_iter
            self.n_restarts_ = attempt
            self.n_groups_ = n_groups
            self.n_features_in_ = d
            return self
        assert stuck is not None
        point = int(np.flatnonzero(group_of == stuck.group)[0])
        raise InfeasibleConstraintsError(
            f"COP-K-means found no cluster for point {point} (its must-link group has "
            f"{int(sizes[stuck.group])} point(s)) that violates none of its cannot-links, with "
            f"n_clusters={k}, after {attempts} attempt(s). Raise n_clusters or n_restarts, or "
            "remove cannot-links."
        )

    def _initial_centers(
        self, X: np.ndarray, k: int, rng: np.random.RandomState, *, first: bool
    ) -> np.ndarray:
        """Centres (k, d) of one attempt: a given ``init`` on the first, else K-means++."""
        if first and not (isinstance(self.init, str) and self.init == "k-means++"):
            centers = check_array(self.init, dtype=X.dtype, copy=True)
            if centers.shape != (k, X.shape[1]):
                raise ValueError(f"init has shape {centers.shape}, expected {(k, X.shape[1])}")
            return centers
        centers, _ = kmeans_plusplus(X, k, random_state=rng)
        return centers

    def _lloyd(
        self,
        gmean: np.ndarray,
        sizes: np.ndarray,
        centers: np.ndarray,
        ordered: np.ndarray,
        nbrs: list[list[int]],
        tol_abs: float,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Constrained Lloyd iterations on group means; returns (centres, group labels, iters)."""
        prev: np.ndarray | None = None
        n_iter = 0
        for n_iter in range(1, int(self.max_iter) + 1):  # noqa: B007 (read after the loop)
            assign, d2 = self._assign(gmean, centers, ordered, nbrs)
            new_centers = self._update(gmean, sizes, assign, d2, centers)
            shift = float(np.sum((new_centers - centers) ** 2))
            centers = new_centers
            if prev is not None and np.array_equal(assign, prev):
                break
            if shift <= tol_abs:
                break
            prev = assign
        assign, _ = self._assign(gmean, centers, ordered, nbrs)
        return centers, assign, n_iter

    @staticmethod
    def _assign(
        gmean: np.ndarray, centers: np.ndarray, ordered: np.ndarray, nbrs: list[list[int]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Nearest feasible centre of each group.

        Returns:
            (labels (G,), d2 (G, k)) where d2 is the squared distance minus ||mean||².
        """
        # ||m - c||² without the per-row constant ||m||²: same argmin and order per row.
        d2 = gmean @ centers.T
        d2 *= -2.0
        d2 += np.einsum("ij,ij->i", centers, centers)[None, :]
        assign = d2.argmin(axis=1)
        if ordered.size == 0:
            return assign, d2
        d2c = d2[ordered]
        first = assign[ordered].tolist()
        chosen = [-1] * len(first)
        k = centers.shape[0]
        for r, f in enumerate(first):
            taken = {chosen[q] for q in nbrs[r]}
            if f not in taken:
                chosen[r] = f
                continue
            forbidden = np.zeros(k, dtype=bool)
            forbidden[[c for c in taken if c >= 0]] = True
            if forbidden.all():
                raise _Stuck(int(ordered[r]))
            row = np.where(forbidden, np.inf, d2c[r])
            chosen[r] = int(row.argmin())
        assign[ordered] = chosen
        return assign, d2

    @staticmethod
    def _update(
        gmean: np.ndarray,
        sizes: np.ndarray,
        assign: np.ndarray,
        d2: np.ndarray,
        old: np.ndarray,
    ) -> np.ndarray:
        """Weighted means of the groups per cluster; re-seeds empty clusters."""
        k = old.shape[0]
        n_groups = len(assign)
        onehot = csr_matrix((sizes, (assign, np.arange(n_groups))), shape=(k, n_groups))
        counts = np.bincount(assign, weights=sizes, minlength=k)
        sums = np.asarray(onehot @ gmean)
        centers = old.copy()
        full = counts > 0
        centers[full] = sums[full] / counts[full, None]
        empty = np.flatnonzero(~full)
        if empty.size:
            # Re-seed at the costliest groups that share their cluster with other groups.
            g_sq = np.einsum("ij,ij->i", gmean, gmean)
            cost = sizes * (d2[np.arange(n_groups), assign] + g_sq)
            groups_per_cluster = np.bincount(assign, minlength=k)
            candidates = np.flatnonzero(groups_per_cluster[assign] > 1)
            picks = candidates[np.argsort(-cost[candidates], kind="stable")][: empty.size]
            centers[empty[: picks.size]] = gmean[picks]
        return centers

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Nearest centre of each row of ``X`` (m, d) -> (m,) int64 (new points: no constraints)."""
        check_is_fitted(self, "cluster_centers_")
        X = check_array(X, dtype=[np.float64, np.float32])
        return _sq_dists(X, self.cluster_centers_.astype(X.dtype)).argmin(axis=1).astype(np.int64)

    def fit_predict(
        self,
        X: np.ndarray,
        y: None = None,
        must_link: PairsLike = None,
        cannot_link: PairsLike = None,
    ) -> np.ndarray:
        """Fit and return ``labels_`` (n,)."""
        return self.fit(X, must_link=must_link, cannot_link=cannot_link).labels_
