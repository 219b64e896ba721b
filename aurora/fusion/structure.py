"""Is there anything to group? The fused groups against what the same features give with no
structure.

This module owns :func:`assess_structure` and its result :class:`StructureTest` (what a run
records as ``structure`` and ``structure_test`` in ``summary.json``). It takes arrays only:
features, labels, frame times and a seed. It must not import ``aurora.run``, ``aurora.report``,
Hydra/OmegaConf or torch.

Clusterers always return groups, even on a featureless sky: on the real THEMIS GILL sample
(six minutes of a static moonlit sky) a run made 7 groups that were only blocks of time with
identical montages. Two nulls, each answering one way groups can be empty:

1. **Featureless noise of the same spread** (always). Featureless means no structure beyond
   the covariance: the Gaussian with the features' covariance (the maximum-entropy
   distribution of that spread; the null of SigClust, Liu et al. 2008). The separation of a
   partition is its cluster index ``CI = W / T`` (within-group over total sum of squares;
   lower = better separated). The fused groups' CI is compared with the CI that K-means with
   the same number of groups reaches on ``n_null`` = 19 draws of that Gaussian (same number of
   rows, same principal variances). They beat the null when their CI is below all 19: a Monte
   Carlo test at level 1 / (19 + 1) = 0.05 (Barnard 1963). K-means optimises its partition
   of each null draw, while the fused groups were not chosen to lower their CI on these
   features: the comparison leans towards the null.
   Both are measured in the first ``n_components`` principal components of a seeded sample of
   at most ``max_rows`` assigned frames: the same subspace for data and null, so the test is
   valid for any size; the size only bounds its cost (a few seconds on 10k frames).
2. **The passage of time cut into blocks** (when the groups are blocks of time). A slow drift
   of a static sky (the Moon moving, a glow fading) is clustered as readily as forms are, and
   is better separated than Gaussian noise (a curve through feature space cuts cleanly). What
   it lacks is size: its groups differ from each other less than one frame differs from the
   next. The groups are *blocks of time* when, in time order, consecutive frames share their
   group more often than in every one of ``n_null`` random orders (the same Monte Carlo
   level). Then the frame-to-frame noise is half the mean squared difference of consecutive
   frames of one group (von Neumann's successive-difference estimator: it ignores a slow
   drift, and a change of group is not counted as noise), and the groups' *signal-to-noise*
   is the between-group variance per frame over that noise. Below 1 (signal weaker than the
   noise of a single frame: two frames drawn at random differ in their groups' centroids by
   less, on average, than two consecutive frames of one group differ from each other) the
   groups are blocks of time, not forms. Frames in random order (the synthetic sky) are not
   blocks of time, and only the first null applies.

The groups have structure when they beat the first null and are not such blocks of time.
Fewer than two groups, or features with no spread, have none. Deterministic for a given seed.
Frames are put in time order by their timestamps (any without one last, in the order given);
with no timestamps at all they are kept in the order given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

__all__ = ["StructureTest", "assess_structure"]

N_NULL = 19  # Monte Carlo draws: rejecting when the data beat all 19 is a test at level 0.05
MAX_ROWS = 2000
N_COMPONENTS = 32
_CHUNK = 1024  # rows per block of the successive differences (bounds the temporary memory)

SENTENCES = {
    "time_blocks": (
        "No structure: these groups differ from one another less than consecutive frames do; "
        "they are blocks of time, not forms."
    ),
    "noise": (
        "No structure: these groups are no better separated than groups cut from featureless "
        "noise of the same spread."
    ),
    "no_groups": "No structure: no group was formed.",
    "one_group": "No structure: every assigned frame is in one group.",
    "few_frames": "No structure: the groups hold too few frames to compare.",
    "no_spread": "No structure: every frame has the same features.",
}


@dataclass(frozen=True)
class StructureTest:
    """Outcome of :func:`assess_structure` (see the module docstring for each figure).

    Attributes:
        structure: the groups beat both nulls.
        reason: ``separated`` (structure), ``noise`` (no better than featureless noise),
            ``time_blocks`` (blocks of time within the frame-to-frame noise), ``no_groups``,
            ``one_group``, ``few_frames`` (no more frames than groups) or ``no_spread``.
        n_groups: K, the fused groups (labels >= 0).
        n_frames: assigned frames (label >= 0).
        n_rows: frames of the sample the separation is measured on.
        n_components: principal components of that measure.
        separation: CI (W / T) of the fused groups; lower = better separated.
        null_separation_min: the lowest CI K-means reached on the null draws.
        null_separation_mean: their mean.
        p_value: (1 + draws with CI <= the groups') / (1 + n_null).
        time_order: ``timestamps`` or ``input order``.
        agreement: share of consecutive frames (time order) in the same group.
        agreement_null_max: the highest share over ``n_null`` random orders.
        time_blocks: ``agreement`` above every random order.
        signal_to_noise: between-group variance per frame over the frame-to-frame noise
            (None when no two consecutive frames share a group).
        n_null: null draws (and random orders).
        alpha: the test's level, 1 / (1 + n_null).
    """

    structure: bool
    reason: str
    n_groups: int
    n_frames: int
    n_rows: int = 0
    n_components: int = 0
    separation: float | None = None
    null_separation_min: float | None = None
    null_separation_mean: float | None = None
    p_value: float | None = None
    time_order: str = "input order"
    agreement: float | None = None
    agreement_null_max: float | None = None
    time_blocks: bool = False
    signal_to_noise: float | None = None
    n_null: int = N_NULL
    alpha: float = 1.0 / (1 + N_NULL)

    @property
    def sentence(self) -> str | None:
        """One plain sentence when there is no structure (None when there is)."""
        return None if self.structure else SENTENCES[self.reason]

    def to_summary(self) -> dict[str, Any]:
        """``summary.json`` entries: ``structure`` (bool) and ``structure_test`` (the figures,
        rounded, and the sentence when there is no structure). JSON has no infinity: a
        signal-to-noise over consecutive frames that are identical is written as a string."""
        figures = {
            k: (round(v, 4) if np.isfinite(v) else str(v)) if isinstance(v, float) else v
            for k, v in asdict(self).items()
            if k != "structure"
        }
        if self.sentence:
            figures["sentence"] = self.sentence
        return {"structure": self.structure, "structure_test": figures}


def assess_structure(
    features: np.ndarray,
    labels: np.ndarray,
    times: Sequence[datetime | None] | None = None,
    seed: int = 0,
    *,
    n_null: int = N_NULL,
    max_rows: int = MAX_ROWS,
    n_components: int = N_COMPONENTS,
) -> StructureTest:
    """Test fused groups against featureless noise and against blocks of time.

    Args:
        features: (N, D) the features the groups were made from.
        labels: (N,) int fused labels, -1 = unassigned (left out).
        times: (N,) frame times (None entries allowed, put last), or None: the time order.
        seed: the run's seed (samples, null draws and random orders follow it).
        n_null: null draws and random orders; the level is 1 / (1 + n_null).
        max_rows: the separation is measured on at most this many assigned frames.
        n_components: principal components the separation is measured in.

    Returns:
        The :class:`StructureTest`.
    """
    x = np.asarray(features)
    labels = np.asarray(labels, dtype=np.int64)
    if x.ndim != 2 or labels.shape != (x.shape[0],):
        raise ValueError(f"features {x.shape} and labels {labels.shape} do not match")
    order = _time_order(times, len(labels))
    rows = np.arange(len(labels)) if order is None else order
    rows = rows[labels[rows] >= 0]  # (n,) the assigned frames, in time order; x is not copied
    _, y = np.unique(labels[rows], return_inverse=True)
    k = int(y.max()) + 1 if y.size else 0
    n = len(y)
    time_order = "timestamps" if order is not None else "input order"
    if k < 2 or n <= k:
        reason = ("no_groups", "one_group")[k] if k < 2 else "few_frames"
        return StructureTest(False, reason, k, n, time_order=time_order, n_null=n_null)
    rng = np.random.default_rng([int(seed), 0x57C7])
    blocks = _time_blocks(y, n_null, rng)
    snr = _signal_to_noise(x, rows, y)
    sep = _separation(x, rows, y, k, n_null, max_rows, n_components, rng)
    if sep is None:
        return StructureTest(False, "no_spread", k, n, time_order=time_order, n_null=n_null)
    ci, null_ci, dims, rows = sep
    p_value = float((1 + np.sum(null_ci <= ci)) / (1 + n_null))
    alpha = 1.0 / (1 + n_null)
    is_blocks = bool(blocks[0] > blocks[1])
    if p_value > alpha:
        reason = "noise"
    elif is_blocks and (snr is None or snr < 1.0):
        reason = "time_blocks"
    else:
        reason = "separated"
    return StructureTest(
        structure=reason == "separated",
        reason=reason,
        n_groups=k,
        n_frames=n,
        n_rows=rows,
        n_components=dims,
        separation=float(ci),
        null_separation_min=float(null_ci.min()),
        null_separation_mean=float(null_ci.mean()),
        p_value=p_value,
        time_order=time_order,
        agreement=float(blocks[0]),
        agreement_null_max=float(blocks[1]),
        time_blocks=is_blocks,
        signal_to_noise=snr,
        n_null=n_null,
        alpha=alpha,
    )


def _time_order(times: Sequence[datetime | None] | None, n: int) -> np.ndarray | None:
    """Row order by time (stable; frames without a time last, in their order), or None when
    no frame has a time."""
    if times is None or len(times) != n or all(t is None for t in times):
        return None
    stamps = np.array([np.inf if t is None else _seconds(t) for t in times], dtype=np.float64)
    return np.argsort(stamps, kind="stable")


def _seconds(t: datetime) -> float:
    """POSIX seconds; a time without a zone is taken as UTC (as camera file names are)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


def _time_blocks(y: np.ndarray, n_null: int, rng: np.random.Generator) -> tuple[float, float]:
    """(share of consecutive frames in one group, its highest share over random orders)."""
    same = float(np.mean(y[1:] == y[:-1]))
    shuffled = [rng.permutation(y) for _ in range(n_null)]
    null_max = max(float(np.mean(s[1:] == s[:-1])) for s in shuffled)
    return same, null_max


def _signal_to_noise(x: np.ndarray, rows: np.ndarray, y: np.ndarray) -> float | None:
    """Between-group variance per frame over the frame-to-frame noise.

    Args:
        x: (N, D) features.
        rows: (n,) the rows of ``x`` in time order.
        y: (n,) their groups 0..K-1.

    Returns:
        The ratio; None when no two consecutive frames share a group (noise: half the mean
        squared difference of consecutive frames of one group).
    """
    n = len(y)
    between = _between(x, rows, y) / n
    total, count = 0.0, 0
    for start in range(0, n - 1, _CHUNK):
        stop = min(start + _CHUNK, n - 1)
        same = y[start + 1 : stop + 1] == y[start:stop]
        if same.any():
            a = np.asarray(x[rows[start:stop][same]], dtype=np.float64)
            b = np.asarray(x[rows[start + 1 : stop + 1][same]], dtype=np.float64)
            total += float(((b - a) ** 2).sum())
            count += int(same.sum())
    if count == 0:
        return None
    noise = 0.5 * total / count
    return float("inf") if noise == 0 else between / noise


def _separation(
    x: np.ndarray,
    rows: np.ndarray,
    y: np.ndarray,
    k: int,
    n_null: int,
    max_rows: int,
    n_components: int,
    rng: np.random.Generator,
) -> tuple[float, np.ndarray, int, int] | None:
    """CI of the groups and of K-means on each Gaussian null draw, in the first principal
    components of a sample of rows; None when the features have no spread.

    Returns:
        (CI of the groups, (n_null,) CIs of the null, components, rows).
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from threadpoolctl import threadpool_limits

    n = len(y)
    pick = np.sort(rng.choice(n, size=max_rows, replace=False)) if n > max_rows else np.arange(n)
    xs = np.asarray(x[rows[pick]], dtype=np.float64)
    ys = y[pick]
    xs = xs - xs.mean(0)
    if not np.any(xs):
        return None
    dims = int(min(n_components, len(pick) - 1, xs.shape[1]))
    # One thread: these small problems run 10-20x slower when BLAS/OpenMP threads contend
    # for busy cores.
    with threadpool_limits(limits=1):
        pca = PCA(n_components=dims, random_state=int(rng.integers(2**31)))
        z = pca.fit_transform(xs)
        ci = _cluster_index(z, ys)
        scale = np.sqrt(np.maximum(pca.explained_variance_, 0.0))
        null = np.empty(n_null)
        for b in range(n_null):
            g = rng.standard_normal(z.shape) * scale
            km = KMeans(n_clusters=k, n_init=3, random_state=int(rng.integers(2**31))).fit(g)
            null[b] = km.inertia_ / float(((g - g.mean(0)) ** 2).sum())
    return ci, null, dims, len(pick)


def _between(x: np.ndarray, rows: np.ndarray, y: np.ndarray) -> float:
    """Between-group sum of squares of the rows ``rows`` of (N, D) ``x``, labelled ``y``
    (0..K-1; an empty group adds 0), summed in blocks of rows."""
    k, n = int(y.max()) + 1, len(y)
    sizes = np.bincount(y, minlength=k).astype(np.float64)
    sums = np.zeros((k, x.shape[1]))
    for start in range(0, n, _CHUNK):
        part = slice(start, start + _CHUNK)
        np.add.at(sums, y[part], np.asarray(x[rows[part]], dtype=np.float64))
    mean = sums.sum(0) / n
    centroids = sums / np.maximum(sizes, 1.0)[:, None]
    return float((sizes * ((centroids - mean) ** 2).sum(1)).sum())


def _cluster_index(z: np.ndarray, y: np.ndarray) -> float:
    """W / T: within-group over total sum of squares of (n, d) rows labelled 0..K-1."""
    total = float(((z - z.mean(0)) ** 2).sum())
    return (total - _between(z, np.arange(len(y)), y)) / total
