"""What else could the ImageNet features give on a labelled real folder (not in the chain).

Usage:
    python bench/bench_real_variants.py DIR TRUTH [--extractor mobilenet_v2] [OVERRIDE ...]

Composes the ``cluster`` config as ``bench/bench_real.py`` does, reads the extractor's features
from the cache (:func:`aurora.run.load_context`; computed once if absent) and prints, for
each variant, AMI / homogeneity of K-means (k = number of classes) on PCA-20 of:

- the features as they are, L2-normalised, square-rooted then L2-normalised, PCA-50, whitened;
- the features averaged over the frames within +-W seconds of each frame (W = 30, 60, 120);
- a 3x3 spatial average of the last feature map instead of the global one (timm extractors);

and two supervised references in AMI: a 10-NN trained on even UTC hours and tested on odd, and
a leave-one-hour-out 10-NN (trained on every other hour). Labels are used only to score.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_real as br  # noqa: E402


def time_smoothed(features: np.ndarray, seconds: np.ndarray, window: float) -> np.ndarray:
    """(N, D) mean of the features of the frames within ``window`` s of each frame.

    Frames without a time (NaN) keep their own features.
    """
    out = features.copy()
    ok = np.flatnonzero(~np.isnan(seconds))
    order = ok[np.argsort(seconds[ok], kind="stable")]
    ts = seconds[order]
    lo = np.searchsorted(ts, ts - window, side="left")
    hi = np.searchsorted(ts, ts + window, side="right")
    csum = np.vstack([np.zeros((1, features.shape[1])), np.cumsum(features[order], axis=0)])
    out[order] = (csum[hi] - csum[lo]) / (hi - lo)[:, None]
    return out


def grid_pooled(extractor: object, images: object, batch: int = 64) -> np.ndarray:
    """(N, C*9) 3x3 average of a timm extractor's last feature map (its own resize/normalise)."""
    import torch
    import torch.nn.functional as F

    class _Grid(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.inner = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.adaptive_avg_pool2d(self.inner.forward_features(x), 3).flatten(1)

    original = extractor.model  # type: ignore[attr-defined]
    extractor.model = _Grid(original)  # type: ignore[attr-defined]
    outs = []
    try:
        with torch.no_grad():
            for s in range(0, len(images), batch):  # type: ignore[arg-type]
                block = np.ascontiguousarray(np.asarray(images[s : s + batch]))  # type: ignore[index]
                x = torch.from_numpy(block).permute(0, 3, 1, 2).float().div_(255.0)
                outs.append(extractor(x).numpy())  # type: ignore[operator]
    finally:
        extractor.model = original  # type: ignore[attr-defined]
    return np.concatenate(outs)


def loho_knn_ami(features: np.ndarray, truth: np.ndarray, hours: np.ndarray) -> float:
    """AMI of 10-NN predictions of each hour's frames, trained on all other hours."""
    from sklearn.metrics import adjusted_mutual_info_score
    from sklearn.neighbors import KNeighborsClassifier

    pred = np.empty(len(truth), dtype=object)
    for h in np.unique(hours):
        te = hours == h
        knn = KNeighborsClassifier(br.KNN_K).fit(features[~te], truth[~te])
        pred[te] = knn.predict(features[te])
    return float(adjusted_mutual_info_score(truth.astype(str), pred.astype(str)))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data_dir")
    ap.add_argument("truth")
    ap.add_argument("--extractor", default="mobilenet_v2")
    ap.add_argument("--seed", type=int, default=0)
    args, overrides = ap.parse_known_args(argv)
    from sklearn.decomposition import PCA

    from aurora.run import RunSettings, load_context

    cfg = br.compose_config(args.data_dir, args.truth, [*overrides, "logger=none"])
    out = Path("/tmp") / "aurora_bench_real_variants"
    ctx = load_context(RunSettings.from_cfg(cfg), out, [args.extractor])
    feats = ctx.features[args.extractor]
    truth = ctx.truth.classes
    known = br.known_mask(truth)
    times = br.frame_times(args.truth, ctx)
    if not known.all() or any(t is None for t in times):
        raise br.BenchError("every frame needs a class and a time for this bench")
    y = np.array([str(t) for t in truth])
    k = len(set(y))
    seconds = np.array([t.timestamp() for t in times])
    hours = np.array([t.hour for t in times])
    x = np.asarray(feats.features, dtype=np.float64)

    def score(name: str, z: np.ndarray, pca: bool = True) -> None:
        labels = br.pca_kmeans(z, k, args.seed, br.PCA_DIM if pca else z.shape[1])
        s = br.clustering_scores(labels, y)
        print(f"{name:48s} AMI {s['ami']:.3f}  homogeneity {s['homogeneity']:.3f}", flush=True)

    print(f"{args.extractor} on {args.data_dir}: {len(y)} frames, {k} classes, K-means k={k}")
    l2 = x / np.linalg.norm(x, axis=1, keepdims=True)
    rt = np.sqrt(np.maximum(x, 0))
    rt /= np.linalg.norm(rt, axis=1, keepdims=True)
    score("features -> PCA-20", x)
    score("L2-normalised -> PCA-20", l2)
    score("square-rooted, L2-normalised -> PCA-20", rt)
    score("PCA-50", PCA(50, random_state=args.seed).fit_transform(x), pca=False)
    score("PCA-20 whitened", PCA(20, whiten=True, random_state=args.seed).fit_transform(x), False)
    for w in (30, 60, 120):
        score(f"L2-normalised, averaged over +-{w} s -> PCA-20", time_smoothed(l2, seconds, w))
    if hasattr(feats.extractor, "model") and hasattr(feats.extractor.model, "forward_features"):
        score("3x3 pooled last feature map -> PCA-20", grid_pooled(feats.extractor, feats.images))
    train, test = br.hour_split(times)
    sup = br.supervised_reference(x, truth, train, test)
    loho = loho_knn_ami(x, y, hours)
    print(
        f"supervised 10-NN AMI: even->odd hours {sup['knn_ami']:.3f}, leave-one-hour-out {loho:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
