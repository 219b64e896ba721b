"""The co-association graph between signatures, and its connected components at thresholds.

For partitions ``l_1..l_P`` with non-negative weights ``w_p``, two images are joined when
``c(i, j) = (1/P) * sum_p w_p * [l_p(i) == l_p(j) >= 0] > t`` (see :mod:`aurora.fusion.voting`).

How it scales. Images with the same label vector ("signature") have the same co-association with
everybody, so the graph is built between the ``m`` unique signatures: a sparse one-hot matrix
``A`` (m, sum_p k_p) holding ``w_p`` is multiplied with its transpose in row blocks (only the
upper triangle), entries above the cut are kept as edges and merged into connected components
block by block, so memory is O(nP + block) and the work is proportional to the pairs of
signatures that share at least one label. Two images with the same signature ``a`` have
``c = S(a, a)/P`` where ``S(a, a)`` is the weight of the partitions that assign ``a``; since
``S(a, b) <= S(a, a)`` for non-negative weights, a signature that is not joined with itself has
no edge at all and each of its images is a group of its own.

Exactness. ``c > t`` is decided as ``S > t * P`` in exact rational arithmetic (floats are dyadic
rationals). When the weights are integers after scaling by a power of two (always the case for
the default weights) the sparse products are exact integer sums and the cut is an exact integer.
Otherwise sums are taken in float64 and every entry within a rigorous rounding bound of the cut is
re-decided with :class:`fractions.Fraction` on its set of matching partitions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from tqdm.auto import tqdm

from aurora.fusion.params import validate_weights
from aurora.fusion.partitions import Signatures
from aurora.infra.logs import show_progress

__all__ = ["ThresholdComponents", "components_for_thresholds", "finalize_labels"]

_U = 2.0**-53  # unit roundoff of float64


class _Arithmetic:
    """Exact decision of ``S > t * P`` for sums ``S`` of weights over matching partitions."""

    def __init__(self, weights: np.ndarray, n_partitions: int) -> None:
        self.w = weights
        self.P = n_partitions
        self.w_frac = [Fraction(float(x)) for x in weights]
        self.scale: int | None = None
        total = float(weights.sum())
        for k in range(0, 64):  # weights * 2**k are exact; find the first all-integer scaling
            s = weights * 2.0**k
            if np.all(s == np.floor(s)):
                if s.sum() < 2**31:
                    self.scale = k
                break
        if self.scale is not None:
            self.data = (weights * 2.0**self.scale).astype(np.int64)
            self.dtype = np.int16 if self.data.sum() < 2**15 else np.int32
        else:
            self.data = weights
            self.dtype = np.float64
        # Rigorous bound on |float sum - exact sum| for <= P non-negative terms, any order.
        self.sum_err = 2.0 * n_partitions * _U * total

    def cut(self, threshold: Fraction) -> Fraction:
        """Exact value that a sum (in data units) must exceed."""
        t = threshold * self.P
        return t * 2**self.scale if self.scale is not None else t

    def lower_bound(self, cut: Fraction) -> float:
        """A value such that computed sums at or below it are certainly not above ``cut``."""
        if self.scale is not None:
            return float(math.floor(cut))
        cut_f = float(cut)
        return cut_f - (self.sum_err + 2.0 * _U * abs(cut_f) + 5e-324)

    def exceeds(self, sums: np.ndarray, cut: Fraction, masks: Any) -> np.ndarray:
        """Decide ``sum > cut`` exactly.

        Args:
            sums: (k,) sums as computed (integers or float64).
            cut: exact cut from :meth:`cut`.
            masks: callable taking an index array and returning (len, P) bool match masks, used
                only for float sums that fall within the rounding bound of the cut.

        Returns:
            (k,) bool.
        """
        if self.scale is not None:
            # Integer sums: S > cut  <=>  S > floor(cut).
            return sums > math.floor(cut)
        cut_f = float(cut)
        margin = self.sum_err + 2.0 * _U * abs(cut_f) + 5e-324
        out = sums > cut_f + margin
        amb = np.flatnonzero(np.abs(sums - cut_f) <= margin)
        if amb.size:
            mk = masks(amb)
            packed = np.packbits(mk, axis=1)
            uniq, inv = np.unique(packed, axis=0, return_inverse=True)
            verdict = np.empty(len(uniq), dtype=bool)
            for u_idx, row in enumerate(np.unpackbits(uniq, axis=1, count=self.P).astype(bool)):
                exact = sum((self.w_frac[p] for p in np.flatnonzero(row)), Fraction(0))
                verdict[u_idx] = exact > cut
            out[amb] = verdict[inv.reshape(-1)]
        return out


class _Components:
    """Connected components over ``n`` nodes, fed with edge batches, kept as a root array."""

    def __init__(self, n: int, max_pending: int) -> None:
        self.root = np.arange(n, dtype=np.int64)
        self.pending: list[np.ndarray] = []
        self.n_pending = 0
        self.max_pending = max_pending

    def add(self, rows: np.ndarray, cols: np.ndarray) -> None:
        r = self.root[rows]
        c = self.root[cols]
        keep = r != c
        if not keep.any():
            return
        self.pending.append(np.stack([r[keep], c[keep]]))
        self.n_pending += int(keep.sum())
        if self.n_pending > self.max_pending:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        n = self.root.size
        edges = np.concatenate(self.pending, axis=1)
        self.pending, self.n_pending = [], 0
        rows = np.concatenate([edges[0], np.arange(n)])
        cols = np.concatenate([edges[1], self.root])
        graph = sp.coo_matrix((np.ones(rows.size, np.int8), (rows, cols)), shape=(n, n)).tocsr()
        _, lab = connected_components(graph, directed=False)
        rep = np.full(lab.max() + 1, n, dtype=np.int64)
        np.minimum.at(rep, lab, np.arange(n))
        self.root = rep[lab]

    def labels(self) -> np.ndarray:
        self.flush()
        return self.root


@dataclass(frozen=True)
class ThresholdComponents:
    """Signature-level result of one threshold.

    Attributes:
        threshold: the threshold ``t``.
        self_joined: (m,) bool, whether two images of the signature are joined.
        component: (m,) int64 component representative per signature (meaningful where
            ``self_joined``); ``None`` when every image is joined with every other (t < 0).
        n_edges: number of signature pairs (a < b) with ``c > t`` that were found.
    """

    threshold: float
    self_joined: np.ndarray
    component: np.ndarray | None
    n_edges: int


def components_for_thresholds(
    sigs: Signatures,
    thresholds: Sequence[float],
    weights: np.ndarray | None = None,
    *,
    max_block_entries: int = 4_000_000,
    progress: bool | None = None,
) -> list[ThresholdComponents]:
    """Connected components of the signature co-association graph at several thresholds.

    One pass of blockwise sparse products serves every threshold: the graph at the smallest
    threshold contains the edges of all the others.

    Args:
        sigs: output of :func:`compress_partitions`.
        thresholds: finite thresholds ``t`` (any order).
        weights: (P,) validated non-negative weights, default ones.
        max_block_entries: bound on the multiply-adds (hence result entries) of one block.
        progress: show a tqdm bar; ``None`` = only for large inputs.

    Returns:
        One :class:`ThresholdComponents` per threshold, in the given order.
    """
    m, n_part = sigs.table.shape
    w = validate_weights(weights, n_part)
    arith = _Arithmetic(w, n_part)
    fracs = [_exact(t) for t in thresholds]
    cuts = [arith.cut(f) for f in fracs]
    valid = sigs.table >= 0

    # Weight of the partitions that assign each signature: decides the self pairs.
    if arith.scale is not None:
        self_sum = valid.astype(np.int64) @ arith.data
    else:
        self_sum = valid.astype(np.float64) @ w
    self_ok = [arith.exceeds(self_sum, c, lambda idx: valid[idx]) for c in cuts]

    results: list[ThresholdComponents | None] = [None] * len(fracs)
    live = [j for j, f in enumerate(fracs) if f >= 0]
    for j, f in enumerate(fracs):
        if f < 0:  # c >= 0 > t for every pair: one group of everything
            results[j] = ThresholdComponents(float(f), np.ones(m, bool), None, m * (m - 1) // 2)
    if not live:
        return results  # type: ignore[return-value]

    # Signatures that can have edges at the smallest live threshold.
    j_min = min(live, key=lambda j: fracs[j])
    act = np.flatnonzero(self_ok[j_min])
    comps = {j: _Components(act.size, max(4 * act.size, 2_000_000)) for j in live}
    n_edges = dict.fromkeys(live, 0)
    if act.size > 1:
        _scan_blocks(sigs, act, arith, cuts, self_ok, live, comps, n_edges,
                     max_block_entries, progress)  # fmt: skip

    for j in live:
        component = np.full(m, -1, dtype=np.int64)
        component[act] = act[comps[j].labels()]
        results[j] = ThresholdComponents(float(fracs[j]), self_ok[j], component, n_edges[j])
    return results  # type: ignore[return-value]


def _exact(threshold: float) -> Fraction:
    """A threshold as an exact rational (floats are dyadic rationals). Its checks are the
    caller's (:func:`aurora.fusion.params.validate_threshold`); here below 0 joins everything."""
    return Fraction(float(threshold))


def _scan_blocks(
    sigs: Signatures,
    act: np.ndarray,
    arith: _Arithmetic,
    cuts: list[Fraction],
    self_ok: list[np.ndarray],
    live: list[int],
    comps: dict[int, _Components],
    n_edges: dict[int, int],
    max_block_entries: int,
    progress: bool | None,
) -> None:
    """Upper-triangular blockwise product of the one-hot matrix of the active signatures."""
    tab = sigs.table[act]
    ma, n_part = tab.shape
    offsets = np.concatenate([[0], np.cumsum(np.maximum(sigs.n_labels, 0))])
    use = (tab >= 0) & (arith.w > 0)[None, :]
    rows, parts = np.nonzero(use)
    cols = offsets[parts] + tab[rows, parts]
    data = arith.data[parts].astype(arith.dtype)
    a_mat = sp.csr_matrix((data, (rows, cols)), shape=(ma, int(offsets[-1])))
    a_mat.sort_indices()
    # The right factor is the 0/1 pattern, so each product entry is sum_p w_p [match_p].
    ones = a_mat.copy()
    ones.data = np.ones_like(ones.data)
    # Multiply-adds of row i against all rows: sum over its columns of the column sizes.
    col_size = np.bincount(cols, minlength=int(offsets[-1]))
    row_work = np.bincount(rows, weights=col_size[cols], minlength=ma)
    cum = np.cumsum(row_work)
    total = float(cum[-1]) if ma else 0.0
    show = progress if progress is not None else total > 5e7
    bar = tqdm(total=ma, desc="co-association", unit="sig", disable=not show_progress(show))

    def masks_for(r_idx: np.ndarray, c_idx: np.ndarray):  # noqa: ANN202
        def f(sel: np.ndarray) -> np.ndarray:
            a, b = tab[r_idx[sel]], tab[c_idx[sel]]
            return (a == b) & (a >= 0)

        return f

    j_order = sorted(live, key=lambda j: cuts[j])
    floor_cut = arith.lower_bound(cuts[j_order[0]])
    at_sub = None
    j0 = 0
    i0 = 0
    while i0 < ma:
        # Re-slice the transposed matrix when the block start has moved well past its origin.
        if at_sub is None or (i0 - j0) > 0.1 * (ma - j0):
            j0 = i0
            at_sub = ones[j0:].T.tocsr()
        base = cum[i0 - 1] if i0 else 0.0
        i1 = int(np.searchsorted(cum, base + max_block_entries, side="right"))
        i1 = min(max(i1, i0 + 1), ma)
        prod = (a_mat[i0:i1] @ at_sub).tocsr()
        # Drop entries that cannot pass the smallest cut before touching indices: most of them.
        idx = np.flatnonzero(prod.data > floor_cut)
        r = np.searchsorted(prod.indptr, idx, side="right") - 1 + i0
        c = prod.indices[idx].astype(np.int64) + j0
        s = prod.data[idx]
        del prod, idx
        upper = c > r
        r, c, s = r[upper], c[upper], s[upper]
        for j in j_order:  # increasing cut: each filter keeps a subset of the previous one
            keep = arith.exceeds(s, cuts[j], masks_for(r, c))
            r, c, s = r[keep], c[keep], s[keep]
            if r.size == 0:
                break
            n_edges[j] += int(r.size)
            comps[j].add(r, c)
        bar.update(i1 - i0)
        i0 = i1
    bar.close()


def finalize_labels(
    result: ThresholdComponents, inverse: np.ndarray, min_cluster_size: int
) -> np.ndarray:
    """Expand signature components to images, drop small groups, number by first member.

    Args:
        result: one threshold's signature components.
        inverse: (n,) image -> signature index.
        min_cluster_size: groups with fewer images get -1.

    Returns:
        (n,) int64 labels, -1 = unassigned, others 0..K-1 ordered by smallest image index.
    """
    n = inverse.size
    if n == 0:
        return np.zeros(0, np.int64)
    if result.component is None:
        comp = np.zeros(n, np.int64)
    else:
        sig_comp = np.where(result.self_joined, result.component, -1)
        comp = sig_comp[inverse]
        lonely = comp < 0
        # Images whose signature is not joined with itself are groups of their own.
        comp[lonely] = int(sig_comp.max(initial=-1)) + 1 + np.arange(int(lonely.sum()))
    _, first, inv, counts = np.unique(comp, return_index=True, return_inverse=True,
                                      return_counts=True)  # fmt: skip
    keep = counts >= min_cluster_size
    order = np.argsort(first[keep], kind="stable")
    new_id = np.full(first.size, -1, dtype=np.int64)
    new_id[np.flatnonzero(keep)[order]] = np.arange(order.size)
    return new_id[inv.reshape(-1)]
