"""What SimCLR learns on a labelled real folder, and what its features encode instead.

Usage:
    python bench/bench_simclr_real.py DIR TRUTH [--out OUT] [--seed 0]
        [--mobilenet-weights PATH | --no-mobilenet] [OVERRIDE ...]

e.g. on the Yellow River Station day of ``../shared/REAL_DATA.md``::

    python bench/bench_simclr_real.py /tmp/yrs/images /tmp/yrs/truth.csv \\
        experiment=demo trainer.max_epochs=20

Composes the ``cluster`` config (``conf/``) with ``data=folder data.root=DIR data.truth=TRUTH``
and the overrides (last wins), then runs the project's own feature stage
(:func:`aurora.run.load_context`: the preprocessed store of ``preprocess.full`` at
``train.image_size``, SimCLR trained by :func:`aurora.run.train_encoder_cached`, features
extracted through the ``simclr`` extractor). Everything is cached, so a second call with the
same settings trains nothing and extracts nothing. With MobileNet-v2 weights (default: the
dequantised file of ``../shared/weights`` when it exists) its features are computed (cached)
beside, as the reference of what an ImageNet network sees in the same frames.

Prints, per feature set (SimCLR, MobileNet-v2, 32x32 grey pixels of the SimCLR store):

- K-means k=4 and k=8 on PCA-20: AMI and homogeneity with the truth;
- 10-NN and linear-probe accuracy trained on even UTC hours, tested on odd hours
  (:func:`bench_real.supervised_reference`);
- what the features encode: R^2 on odd hours of a ridge regression fitted on even hours from
  the standardised features to (a) the mean brightness of the preprocessed frame inside the sky
  disc, (b) the share of the sky disc at 0 (black: masked or subtracted away) and the Moon flag
  of the store, (c) the time of day (sin and cos of the hour, R^2 averaged); and the AMI of the
  K-means k=4 clusters with the brightness tertiles, the UTC hour and the Moon flag;
- the spread of the features: share of variance on the first principal component and the
  participation ratio (effective number of dimensions) of the PCA spectrum.

And for the SimCLR run: the training wall time (zero on a cache hit), the epoch of the checkpoint
kept (the lowest validation loss) and its validation loss. Figures also go to
``OUT/bench_simclr_real.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_real import (  # noqa: E402  (bench scripts are not a package)
    BenchError,
    clustering_scores,
    compose_config,
    frame_times,
    grey_pixels,
    hour_split,
    known_mask,
    majority_accuracy,
    pca_kmeans,
    supervised_reference,
)

ROOT = Path(__file__).resolve().parent.parent
MOBILENET_FILE = ROOT.parent / "shared/weights/mobilenetv2_100.tf_quant_in1k_dequant.safetensors"
KS = (4, 8)
RIDGE_ALPHAS = np.logspace(-2, 5, 15)


def mobilenet_overrides(weights: Path) -> list[str]:
    """Overrides that run the dequantised TF MobileNet-v2 as ``extractors.mobilenet_v2``."""
    return [
        f"extractors.mobilenet_v2.weights={weights}",
        "extractors.mobilenet_v2.model_kwargs={pad_type:same}",
        "extractors.mobilenet_v2.pretrained_cfg_overlay={mean:[0.5,0.5,0.5],std:[0.5,0.5,0.5]}",
    ]


def disc_stats(images: Any, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Mean brightness and black share inside the inscribed sky disc.

    Args:
        images: (N, S, S, 3) uint8 preprocessed images (any indexable, read ``chunk`` at a time).

    Returns:
        (mean grey level in [0, 1], share of disc pixels equal to 0), both (N,).
    """
    n, s = len(images), images.shape[1]
    yy, xx = np.mgrid[:s, :s]
    c = (s - 1) / 2
    disc = (yy - c) ** 2 + (xx - c) ** 2 <= (s / 2) ** 2
    mean, black = np.empty(n), np.empty(n)
    for start in range(0, n, chunk):
        block = np.asarray(images[start : start + chunk], dtype=np.float32).mean(axis=-1)
        inside = block[:, disc]  # (B, P)
        mean[start : start + len(block)] = inside.mean(axis=1) / 255.0
        black[start : start + len(block)] = (inside == 0).mean(axis=1)
    return mean, black


def ridge_r2(
    features: np.ndarray, target: np.ndarray, train: np.ndarray, test: np.ndarray
) -> float:
    """R^2 on ``test`` of a ridge regression (alpha by CV on ``train``) of standardised features.

    Args:
        features: (N, D); target: (N,) or (N, T) (R^2 averaged over the T outputs).
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(target, dtype=np.float64)
    if np.ptp(y[train], axis=0).max() == 0 or np.ptp(y[test], axis=0).max() == 0:
        return float("nan")  # constant target on a side: nothing to explain
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS))
    model.fit(np.asarray(features, dtype=np.float64)[train], y[train])
    pred = model.predict(np.asarray(features, dtype=np.float64)[test])
    return float(r2_score(y[test], pred))


def spectrum(features: np.ndarray) -> tuple[float, float]:
    """(share of variance on PC1, participation ratio (sum l)^2 / sum l^2) of (N, D) features."""
    x = np.asarray(features, dtype=np.float64)
    x = x - x.mean(axis=0)
    s = np.linalg.svd(x, compute_uv=False) ** 2
    return float(s[0] / s.sum()), float(s.sum() ** 2 / (s**2).sum())


def tertiles(values: np.ndarray) -> np.ndarray:
    """(N,) int: 0, 1, 2 for the lower, middle and upper third of ``values``."""
    edges = np.quantile(values, [1 / 3, 2 / 3])
    return np.searchsorted(edges, values, side="right")


def diagnose(
    name: str,
    features: np.ndarray,
    truth: np.ndarray,
    nuis: dict[str, np.ndarray],
    train: np.ndarray,
    test: np.ndarray,
    seed: int,
) -> dict[str, Any]:
    """Every figure of one feature set (see the module docstring)."""
    from sklearn.metrics import adjusted_mutual_info_score as ami

    known = known_mask(truth)
    row: dict[str, Any] = {"name": name, "dim": int(features.shape[1])}
    for k in KS:
        labels = np.full(len(truth), -1, dtype=np.int64)
        labels[known] = pca_kmeans(features[known], k, seed)
        sc = clustering_scores(labels[known], truth[known])
        row[f"k{k}_ami"], row[f"k{k}_homog"] = sc["ami"], sc["homogeneity"]
        if k == KS[0]:
            all_labels = pca_kmeans(features, k, seed)
            row["k4_ami_bright"] = float(ami(tertiles(nuis["brightness"]), all_labels))
            row["k4_ami_hour"] = float(ami(nuis["hour"].astype(int), all_labels))
            row["k4_ami_moon"] = float(ami(nuis["moon"].astype(int), all_labels))
    row.update(supervised_reference(features, truth, train, test))
    row["r2_brightness"] = ridge_r2(features, nuis["brightness"], train, test)
    row["r2_black"] = ridge_r2(features, nuis["black"], train, test)
    row["r2_moon"] = ridge_r2(features, nuis["moon"].astype(float), train, test)
    angle = 2 * np.pi * nuis["hour"] / 24.0
    row["r2_time"] = ridge_r2(features, np.c_[np.sin(angle), np.cos(angle)], train, test)
    row["pc1_share"], row["eff_dim"] = spectrum(features)
    return row


def checkpoint_info(ckpt: Path) -> dict[str, Any]:
    """Epoch, step and monitored (validation) loss of the checkpoint the cache kept."""
    import torch

    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as err:  # an unreadable checkpoint only loses this line of the report
        return {"error": str(err)}
    out: dict[str, Any] = {"epoch": state.get("epoch"), "global_step": state.get("global_step")}
    for key, cb in (state.get("callbacks") or {}).items():
        if "ModelCheckpoint" in str(key) and cb.get("best_model_score") is not None:
            out["best_val_loss"] = float(cb["best_model_score"])
    return out


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


COLUMNS = [
    ("k4_ami", "AMI k4"),
    ("k4_homog", "hom k4"),
    ("k8_ami", "AMI k8"),
    ("k8_homog", "hom k8"),
    ("knn", "10-NN"),
    ("probe", "linear"),
    ("r2_brightness", "R2 bright"),
    ("r2_black", "R2 black"),
    ("r2_moon", "R2 moon"),
    ("r2_time", "R2 time"),
    ("k4_ami_bright", "AMI4 bri3"),
    ("k4_ami_hour", "AMI4 hour"),
    ("k4_ami_moon", "AMI4 moon"),
    ("pc1_share", "PC1"),
    ("eff_dim", "eff dim"),
]


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """One line per feature set, the columns of ``COLUMNS``."""
    head = ["features", *(h for _, h in COLUMNS)]
    body = [[r["name"], *(_fmt(r.get(k)) for k, _ in COLUMNS)] for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(x, widths, strict=True))
        )
        for x in [head, *body]
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def bench(
    data_dir: str,
    truth_csv: str,
    overrides: Sequence[str],
    out: Path,
    mobilenet: Path | None,
    seed: int = 0,
) -> dict[str, Any]:
    """Train (cached) SimCLR with the composed config, extract, diagnose; print the table.

    Raises:
        BenchError: no truth, no times, or a one-sided time split.
    """
    from aurora.run import RunSettings, load_context

    extra = mobilenet_overrides(mobilenet) if mobilenet is not None else []
    cfg = compose_config(data_dir, truth_csv, [*extra, *overrides])
    names = ["simclr"] + (["mobilenet_v2"] if mobilenet is not None else [])
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ctx = load_context(RunSettings.from_cfg(cfg), out, names)
    features_s = time.perf_counter() - t0
    truth = ctx.truth.classes
    if truth is None or not known_mask(truth).any():
        raise BenchError(f"no image of {data_dir} has a class in {truth_csv}")
    times = frame_times(truth_csv, ctx)
    if any(t is None for t in times):
        raise BenchError(f"{sum(t is None for t in times)} images have no time (truth 'time')")
    train, test = hour_split(times)
    simclr = ctx.features["simclr"]
    brightness, black = disc_stats(simclr.images)
    nuis = {
        "brightness": brightness,
        "black": black,
        "moon": np.asarray(ctx.moon, dtype=bool),
        "hour": np.array([t.hour + t.minute / 60 + t.second / 3600 for t in times]),
    }
    rows = [
        diagnose(name, np.asarray(f.features, dtype=np.float64), truth, nuis, train, test, seed)
        for name, f in ctx.features.items()
    ]
    pix = grey_pixels(simclr.images).astype(np.float64)
    rows.append(
        diagnose(
            f"pixels 32x32 ({simclr.images.shape[1]} px store)",
            pix,
            truth,
            nuis,
            train,
            test,
            seed,
        )
    )
    ckpt = Path(str(simclr.extractor_cfg.get("ckpt_path", "")))
    info = checkpoint_info(ckpt) if ckpt.is_file() else {}
    known = known_mask(truth)
    header = (
        f"bench_simclr_real: {len(ctx.ids)} images ({int(known.sum())} labelled), "
        f"store {simclr.images.shape[1]} px; Moon flagged on {nuis['moon'].mean():.1%}; "
        f"black share of the disc: median {np.median(black):.3f}; "
        f"majority class on odd hours {majority_accuracy(truth, train, test):.3f}\n"
        f"SimCLR: train+extract {features_s:.0f} s (0 on a cache hit), checkpoint kept: "
        f"epoch {info.get('epoch')}, step {info.get('global_step')}, "
        f"val loss {_fmt(info.get('best_val_loss'))}; {ckpt}"
    )
    note = (
        "AMI/hom kK: K-means k=K on PCA-20 vs truth; 10-NN/linear: accuracy on odd UTC hours, "
        "trained on even; R2 X: ridge R^2 on odd hours (bright = mean grey level of the "
        "preprocessed disc, black = share of the disc at 0, moon = Moon flag, time = sin/cos "
        "of the hour); AMI4 X: AMI of the k=4 clusters with brightness tertiles / UTC hour / "
        "Moon flag; PC1: variance share of the first PC; eff dim: participation ratio"
    )
    print("\n".join(["", header, format_table(rows), note]), flush=True)
    figures = {
        "data_root": data_dir,
        "truth": truth_csv,
        "overrides": list(overrides),
        "mobilenet_weights": str(mobilenet) if mobilenet else None,
        "features_seconds": round(features_s, 1),
        "checkpoint": {"path": str(ckpt), **info},
        "moon_share": float(nuis["moon"].mean()),
        "black_median": float(np.median(black)),
        "rows": rows,
    }
    (out / "bench_simclr_real.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; returns the exit code (known errors: one line, code 2)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data_dir", help="labelled image folder")
    ap.add_argument("truth", help="truth CSV: path (relative to DIR), morphology, time")
    ap.add_argument("--out", type=Path, default=None, help="run folder (default outputs/...)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the PCA/K-means")
    ap.add_argument("--mobilenet-weights", type=Path, default=None, help="MobileNet-v2 file")
    ap.add_argument("--no-mobilenet", action="store_true", help="SimCLR and pixels only")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of the cluster config")
    args = ap.parse_intermixed_args(argv)
    out = args.out or ROOT / "outputs" / "bench_simclr_real" / time.strftime("%Y-%m-%d_%H-%M-%S")
    mobilenet = None
    if not args.no_mobilenet:
        mobilenet = args.mobilenet_weights or (MOBILENET_FILE if MOBILENET_FILE.is_file() else None)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from aurora.infra.guard import run_guarded

    return run_guarded(
        bench, args.data_dir, args.truth, args.overrides, Path(out), mobilenet, args.seed
    )


if __name__ == "__main__":
    sys.exit(main())
