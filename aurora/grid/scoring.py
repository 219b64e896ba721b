"""Validity indices of a partition: internal, stability, external and nuisance dependence.

Degenerate-case rule (no crash, NaN instead):

* Internal indices ignore points labelled -1 (unassigned). They are NaN when fewer than two
  clusters remain, or when every remaining point is its own cluster (silhouette needs
  2 <= clusters <= points - 1; the same rule is applied to all three for consistency).
* Silhouette above ``sample_size`` points is computed on one seeded random subsample
  (the same subsample for every cell of a grid with the same seed and N).
* External, nuisance and stability scores compare labellings as given: -1 is just one more
  label value there. Points whose truth is unknown (``None``/NaN/-1 in the truth) are left out;
  with fewer than 2 such points the scores are NaN.
* Stability is NaN when a subsample has fewer points than clusters (the clusterer could not
  be fitted), or when a fit on a subsample hits infeasible constraints.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.metrics import (
    adjusted_mutual_info_score,
    adjusted_rand_score,
    calinski_harabasz_score,
    completeness_score,
    davies_bouldin_score,
    homogeneity_score,
    normalized_mutual_info_score,
    silhouette_score,
)
from sklearn.metrics.cluster import contingency_matrix

from aurora.clustering import InfeasibleConstraintsError

NAN = float("nan")
DEFAULT_SILHOUETTE_SAMPLE = 10_000


def n_groups(labels: np.ndarray) -> int:
    """Number K of groups of a labelling numbered 0..K-1 (-1 = unassigned): the largest label
    plus one, 0 when no image is assigned (or there are none).

    Args:
        labels: (N,) integer labels.
    """
    return int(np.asarray(labels).max(initial=-1)) + 1


def _valid_internal(labels: np.ndarray) -> bool:
    n_clusters = np.unique(labels).size
    return 2 <= n_clusters <= labels.size - 1


def internal_scores(
    X: np.ndarray,
    labels: np.ndarray,
    *,
    sample_size: int = DEFAULT_SILHOUETTE_SAMPLE,
    seed: int = 0,
) -> dict[str, float]:
    """Silhouette, Calinski-Harabasz and Davies-Bouldin of a partition.

    Args:
        X: (N, d) points the partition was made on.
        labels: (N,) cluster labels; -1 = unassigned (left out).
        sample_size: silhouette is computed on a seeded subsample of this many points above it.
        seed: seed of the silhouette subsample.

    Returns:
        ``{"silhouette", "calinski_harabasz", "davies_bouldin"}`` (NaN when degenerate).
    """
    labels = np.asarray(labels)
    keep = labels >= 0
    X, labels = np.asarray(X)[keep], labels[keep]
    out = {"silhouette": NAN, "calinski_harabasz": NAN, "davies_bouldin": NAN}
    if not _valid_internal(labels):
        return out
    out["calinski_harabasz"] = float(calinski_harabasz_score(X, labels))
    out["davies_bouldin"] = float(davies_bouldin_score(X, labels))
    if labels.size > sample_size:
        idx = np.sort(np.random.default_rng(seed).choice(labels.size, sample_size, replace=False))
        Xs, ls = X[idx], labels[idx]
    else:
        Xs, ls = X, labels
    if _valid_internal(ls):
        out["silhouette"] = float(silhouette_score(Xs, ls))
    return out


def _restrict_pairs(pairs: Any, subset: np.ndarray, n: int) -> np.ndarray | None:
    """Constraint pairs with both ends in ``subset``, renumbered to positions in it."""
    if pairs is None:
        return None
    arr = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    pos = np.full(n, -1, dtype=np.int64)
    pos[subset] = np.arange(subset.size)
    mapped = pos[arr]
    return mapped[(mapped >= 0).all(axis=1)]


def stability_scores(
    estimator: Any,
    X: np.ndarray,
    *,
    n_splits: int = 3,
    seed: int = 0,
    must_link: Any = None,
    cannot_link: Any = None,
) -> dict[str, float]:
    """Stability: fit clones on disjoint random subsamples, predict all points, compare.

    ``X`` is split at random (seeded) into ``n_splits`` disjoint parts of equal size; a clone
    of ``estimator`` is fitted on each part and predicts every point; the result is the mean
    and standard deviation of ARI and AMI over all pairs of those labellings. Constraints,
    when given, are restricted to each part (pairs with both ends in it).

    Args:
        estimator: unfitted scikit-learn-style clusterer with ``predict``.
        X: (N, d) points.
        n_splits: number of disjoint subsamples (>= 2).
        seed: seed of the split.
        must_link: optional (M, 2) pairs, passed to ``fit`` when given.
        cannot_link: optional (C, 2) pairs, passed to ``fit`` when given.

    Returns:
        ``stability_ari``, ``stability_ari_std``, ``stability_ami``, ``stability_ami_std``.
    """
    if n_splits < 2:
        raise ValueError(f"stability needs n_splits >= 2, got {n_splits}")
    X = np.asarray(X)
    n = X.shape[0]
    out = {
        "stability_ari": NAN,
        "stability_ari_std": NAN,
        "stability_ami": NAN,
        "stability_ami_std": NAN,
    }
    splits = np.array_split(np.random.default_rng(seed).permutation(n), n_splits)
    k = getattr(estimator, "n_clusters", 1)
    if min(s.size for s in splits) <= (k or 1):
        return out
    takes_constraints = "must_link" in inspect.signature(estimator.fit).parameters
    predictions = []
    for part in splits:
        part = np.sort(part)
        est = clone(estimator)
        kwargs = {}
        if takes_constraints and (must_link is not None or cannot_link is not None):
            kwargs = {
                "must_link": _restrict_pairs(must_link, part, n),
                "cannot_link": _restrict_pairs(cannot_link, part, n),
            }
        try:
            est.fit(X[part], **kwargs)
        except InfeasibleConstraintsError:
            return out
        predictions.append(np.asarray(est.predict(X)))
    ari = [adjusted_rand_score(a, b) for a, b in combinations(predictions, 2)]
    ami = [adjusted_mutual_info_score(a, b) for a, b in combinations(predictions, 2)]
    out.update(
        stability_ari=float(np.mean(ari)),
        stability_ari_std=float(np.std(ari)),
        stability_ami=float(np.mean(ami)),
        stability_ami_std=float(np.std(ami)),
    )
    return out


def _known(truth: Sequence[Any]) -> np.ndarray:
    """Mask of points whose truth value is known (not None, NaN, -1 or empty)."""
    out = np.ones(len(truth), dtype=bool)
    for i, t in enumerate(truth):
        if t is None or (isinstance(t, float) and np.isnan(t)) or t == -1 or t == "":
            out[i] = False
    return out


def purity(labels: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of points whose cluster's majority truth class is their own class."""
    cont = contingency_matrix(truth, labels)
    return float(cont.max(axis=0).sum() / cont.sum())


def external_scores(labels: np.ndarray, truth: Sequence[Any]) -> dict[str, float]:
    """ARI, AMI, NMI, homogeneity, completeness and purity against a ground truth.

    Args:
        labels: (N,) cluster labels.
        truth: (N,) true classes (strings or ints); unknown entries are left out.
    """
    names = ("ari", "ami", "nmi", "homogeneity", "completeness", "purity")
    known = _known(truth)
    if known.sum() < 2:
        return dict.fromkeys(names, NAN)
    lab = np.asarray(labels)[known]
    tru = np.asarray([str(t) for t, k in zip(truth, known, strict=True) if k])
    return {
        "ari": float(adjusted_rand_score(tru, lab)),
        "ami": float(adjusted_mutual_info_score(tru, lab)),
        "nmi": float(normalized_mutual_info_score(tru, lab)),
        "homogeneity": float(homogeneity_score(tru, lab)),
        "completeness": float(completeness_score(tru, lab)),
        "purity": purity(lab, tru),
    }


def nuisance_dependence(labels: np.ndarray, nuisance: Sequence[Any]) -> float:
    """AMI between the labels and a nuisance variable (e.g. the Moon flag); NaN if unknown.

    0 means the clusters ignore the nuisance; 1 means they reproduce it.
    """
    known = _known(nuisance)
    if known.sum() < 2:
        return NAN
    nuis = np.asarray([str(v) for v, k in zip(nuisance, known, strict=True) if k])
    return float(adjusted_mutual_info_score(nuis, np.asarray(labels)[known]))
