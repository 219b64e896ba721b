"""Self-supervised features on a labelled real day (issue 28): train a recipe through train.py,
score its features beside ImageNet MobileNet-v2.

Usage:
    python bench/bench_ssl_real.py DIR TRUTH [--train-root TRAIN_DIR] [--out OUT]
        [--ckpt CKPT] [--weights PATH] [--eval-size 224] [--threads 1] [OVERRIDE ...]

e.g. on the Yellow River Station day of ``../shared/REAL_DATA.md`` (``build_yrs.py
--unlabelled --out /tmp/yrs_all`` for the day's 4,320 frames to train on)::

    python bench/bench_ssl_real.py /tmp/yrs/images /tmp/yrs/truth.csv \\
        --train-root /tmp/yrs_all/images trainer.max_epochs=4

Trains with :func:`aurora.run.train.train` (what ``python train.py`` runs) on the ``train``
config composed with ``data=folder data.root=TRAIN_DIR model=simclr_real
model.pretrained_file=WEIGHTS preprocess=minimal preprocess.size=128 logger=none`` and the
overrides (last wins; ``model.pretrained=false model.pretrained_file=null`` trains from scratch;
give ``trainer.max_epochs``: trainer=cpu's default is 20). Torch runs on ``--threads`` threads.
``--ckpt`` scores an existing checkpoint instead (no training). The labelled frames of DIR are
preprocessed with the same chain at the training size and at ``--eval-size``.

Prints, per feature set (the SimCLR backbone at the training size and at the evaluation size;
MobileNet-v2 from the ImageNet file at both sizes, untrained):

- ``km4 AMI``: K-means k=4 on PCA-20 against the truth;
- ``10-NN``/``linear`` accuracy and AMI: trained on even UTC hours, scored on odd hours;
- ``R2 bright``/``R2 time``: ridge R^2 on odd hours (fitted on even hours) from the features to
  the mean grey level inside the sky disc of the preprocessed frame, and to (sin, cos) of the
  hour (averaged).

``--cluster`` then runs ``experiment=real`` (``bench/bench_real.py``) on the best SimCLR row's
features (``extractors.simclr.input_size`` = that row's size) and prints the chosen cell's and
the fused AMI, and the fused AMI over the 10-NN AMI of the same features.

Its last line is ``ssl kmeans4_ami=F knn_ami=F brightness_r2=F minutes=F`` for the SimCLR row
with the best mean of K-means and 10-NN AMI (minutes: training wall time, 0 with ``--ckpt``).
Figures also go to ``OUT/bench_ssl_real.json``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_real import (  # noqa: E402  (bench scripts are not a package)
    BenchError,
    hour_split,
    known_mask,
    majority_accuracy,
    pca_kmeans,
)
from bench_simclr_real import disc_stats, ridge_r2  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MOBILENET_FILE = ROOT.parent / "shared/weights/mobilenetv2_100.tf_quant_in1k_dequant.safetensors"
TF = {
    "model_kwargs": {"pad_type": "same"},
    "pretrained_cfg_overlay": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
}
TRAIN_SIZE = 128
KNN_K = 10


def train_overrides(train_root: str, weights: Path, out: Path) -> list[str]:
    """The recipe's ``train`` overrides before the user's (which win)."""
    return [
        "data=folder",
        f"data.root={train_root}",
        "model=simclr_real",
        f"model.pretrained_file={weights}",
        "preprocess=minimal",
        f"preprocess.size={TRAIN_SIZE}",
        "logger=none",
        f"out_dir={out / 'train'}",
    ]


def compose_train(overrides: Sequence[str]) -> Any:
    """The ``train`` config as ``python train.py OVERRIDES`` composes it."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def read_truth(path: Path, ids: Sequence[str]) -> np.ndarray:
    """(N,) object: the ``morphology`` of each id (None where the table has none)."""
    with open(path, newline="") as f:
        table = {r["path"]: r["morphology"] for r in csv.DictReader(f)}
    return np.array([table.get(i) or None for i in ids], dtype=object)


def embed(fn: Callable[[Any], Any], images: Any, batch: int = 64) -> np.ndarray:
    """(N, D) float64 features of (N, S, S, 3) uint8 images through ``fn`` ((B,3,S,S) in [0,1])."""
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            x = torch.from_numpy(np.array(images[start : start + batch]))  # a writable copy
            out.append(fn(x.permute(0, 3, 1, 2).float() / 255.0).double().numpy())
    return np.concatenate(out)


def supervised(
    features: np.ndarray, truth: np.ndarray, train: np.ndarray, test: np.ndarray
) -> dict[str, float]:
    """10-NN and linear-probe accuracy and AMI on ``test``, trained on ``train`` (known truth)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, adjusted_mutual_info_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    known = known_mask(truth)
    tr, te = train & known, test & known
    if not tr.any() or not te.any():
        raise BenchError(f"the hour split leaves {int(tr.sum())} / {int(te.sum())} frames")
    y = truth.astype(str)
    knn = KNeighborsClassifier(n_neighbors=KNN_K).fit(features[tr], y[tr])
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(features[tr], y[tr])
    pk, pp = knn.predict(features[te]), probe.predict(features[te])
    return {
        "knn": float(accuracy_score(y[te], pk)),
        "knn_ami": float(adjusted_mutual_info_score(y[te], pk)),
        "probe": float(accuracy_score(y[te], pp)),
        "probe_ami": float(adjusted_mutual_info_score(y[te], pp)),
    }


def score(
    name: str,
    features: np.ndarray,
    truth: np.ndarray,
    nuisance: dict[str, np.ndarray],
    split: tuple[np.ndarray, np.ndarray],
    seed: int,
) -> dict[str, Any]:
    """Every figure of one (N, D) feature set (see the module docstring)."""
    from sklearn.metrics import adjusted_mutual_info_score

    known = known_mask(truth)
    labels = pca_kmeans(features[known], 4, seed)
    row: dict[str, Any] = {"name": name, "dim": int(features.shape[1])}
    row["kmeans4_ami"] = float(adjusted_mutual_info_score(truth[known].astype(str), labels))
    row.update(supervised(features, truth, *split))
    row["r2_brightness"] = ridge_r2(features, nuisance["brightness"], *split)
    angle = 2 * np.pi * nuisance["hour"] / 24.0
    row["r2_time"] = ridge_r2(features, np.c_[np.sin(angle), np.cos(angle)], *split)
    return row


COLUMNS = [
    ("kmeans4_ami", "km4 AMI"),
    ("knn", "10-NN acc"),
    ("knn_ami", "10-NN AMI"),
    ("probe", "lin acc"),
    ("probe_ami", "lin AMI"),
    ("r2_brightness", "R2 bright"),
    ("r2_time", "R2 time"),
]


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """One line per feature set."""
    head = ["features", *(h for _, h in COLUMNS)]
    body = [[r["name"], *(f"{r[k]:.3f}" for k, _ in COLUMNS)] for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(x, widths, strict=True))
        )
        for x in [head, *body]
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def train_recipe(cfg: Any) -> tuple[Path, float]:
    """Train with :func:`aurora.run.train.train`; (last checkpoint, wall minutes)."""
    from aurora.run.train import train

    t0 = time.perf_counter()
    result = train(cfg)
    return Path(result.last_ckpt), (time.perf_counter() - t0) / 60


def feature_sets(
    cfg: Any, data_dir: str, ckpt: Path, weights: Path, eval_size: int
) -> tuple[dict[str, np.ndarray], Any, Any]:
    """The feature sets to score, and the preprocessed labelled stores (train size, eval size)."""
    from hydra.utils import instantiate

    from aurora.extractors import TimmExtractor
    from aurora.models import load_encoder
    from aurora.preprocess.store import prepare_images

    model, info = load_encoder(ckpt)
    model.eval()
    size = int(info["image_size"])
    chain = instantiate(cfg.preprocess)
    cache, jobs = str(cfg.paths.cache_dir), int(cfg.get("jobs") or 2)
    stores = {
        s: prepare_images(data_dir, dataclasses.replace(chain, size=s), cache, jobs, False)
        for s in sorted({size, eval_size})
    }
    small, big = stores[size], stores[eval_size]
    if list(small.ids) != list(big.ids):
        raise BenchError("the two preprocessed stores hold different frames")
    out: dict[str, np.ndarray] = {}
    out[f"SimCLR @ {size} px"] = embed(model.encode, small.images)
    if eval_size != size:
        out[f"SimCLR @ {eval_size} px"] = embed(model.encode, big.images)
    for s, store in stores.items():
        net = TimmExtractor("mobilenetv2_100", weights=str(weights), input_size=s, **TF)
        out[f"MobileNet-v2 ImageNet @ {s} px"] = embed(net, store.images)
    return out, small, big


def cluster_overrides(ckpt: Path, size: int) -> list[str]:
    """``cluster`` overrides: ``experiment=real`` on the checkpoint's features at ``size`` px."""
    return [
        "experiment=real",
        f"extractors.simclr.ckpt_path={ckpt}",
        "extractors.simclr.preprocess=minimal",
        "extractors.simclr.dihedral=false",
        f"extractors.simclr.input_size={size}",
        "grid.extractors=[simclr]",
    ]


def cluster_figures(data_dir: str, truth: str, ckpt: Path, size: int, out: Path) -> dict[str, Any]:
    """Chosen cell's and fused AMI of ``experiment=real`` on the SimCLR features (bench_real)."""
    from bench_real import bench as bench_real

    figures = bench_real(data_dir, truth, cluster_overrides(ckpt, size), out)
    chosen, fused = figures["rows"][0], figures["rows"][1]
    knn = figures["rows"][-1]["knn_ami"]  # the SimCLR features' own row
    return {
        "size": size,
        "chosen_cell": chosen["name"],
        "chosen_ami": chosen["ami"],
        "fused_ami": fused["ami"],
        "fused_groups": fused["groups"],
        "knn_ami": knn,
        "fused_over_knn": fused["ami"] / knn if knn else float("nan"),
    }


def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Train (or take ``--ckpt``), extract, score; print the table and the last line."""
    import torch

    torch.set_num_threads(args.threads)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    base = train_overrides(args.train_root or args.data_dir, args.weights, out)
    cfg = compose_train([*base, *args.overrides])
    ckpt, minutes = (Path(args.ckpt), 0.0) if args.ckpt else train_recipe(cfg)
    print(f"checkpoint {ckpt} ({minutes:.1f} min of training)", flush=True)
    sets, store, big = feature_sets(cfg, args.data_dir, ckpt, args.weights, args.eval_size)
    truth = read_truth(Path(args.truth), store.ids)
    if not known_mask(truth).any():
        raise BenchError(f"no frame of {args.data_dir} has a class in {args.truth}")
    from aurora.data.metadata import read_time_column

    times = read_time_column(Path(args.truth), store.ids, missing_ok=True)
    if any(t is None for t in times):
        raise BenchError(f"{sum(t is None for t in times)} frames have no time in {args.truth}")
    split = hour_split(times)
    nuisance = {
        "brightness": disc_stats(big.images)[0],
        "hour": np.array([t.hour + t.minute / 60 + t.second / 3600 for t in times]),
    }
    rows = [score(n, f, truth, nuisance, split, args.seed) for n, f in sets.items()]
    ssl = [r for r in rows if r["name"].startswith("SimCLR")]
    best = max(ssl, key=lambda r: r["kmeans4_ami"] + r["knn_ami"])
    print(
        f"\nbench_ssl_real: {len(store.ids)} labelled frames; majority class on odd hours "
        f"{majority_accuracy(truth, *split):.3f}; overrides {' '.join(args.overrides) or '-'}"
    )
    print(format_table(rows))
    figures = {
        "data_dir": args.data_dir,
        "train_root": args.train_root or args.data_dir,
        "overrides": list(args.overrides),
        "checkpoint": str(ckpt),
        "minutes": round(minutes, 2),
        "threads": args.threads,
        "rows": rows,
    }
    if args.cluster:
        size = int(best["name"].split("@")[1].split()[0])
        c = cluster_figures(args.data_dir, args.truth, ckpt, size, out / "cluster")
        figures["cluster"] = c
        print(
            f"experiment=real on SimCLR @ {size} px: chosen cell AMI {c['chosen_ami']:.3f}, "
            f"fused AMI {c['fused_ami']:.3f} ({c['fused_groups']} groups) = "
            f"{c['fused_over_knn']:.2f} x its 10-NN AMI {c['knn_ami']:.3f}"
        )
    (out / "bench_ssl_real.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(
        f"ssl kmeans4_ami={best['kmeans4_ami']:.3f} knn_ami={best['knn_ami']:.3f} "
        f"brightness_r2={best['r2_brightness']:.3f} minutes={minutes:.1f}",
        flush=True,
    )
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; returns the exit code (known errors: one line, code 2)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data_dir", help="labelled image folder (scored)")
    ap.add_argument("truth", help="truth CSV: path, morphology, time")
    ap.add_argument("--train-root", default=None, help="folder trained on (default: DIR)")
    ap.add_argument("--out", type=Path, default=None, help="run folder (default outputs/...)")
    ap.add_argument("--ckpt", default=None, help="score this checkpoint, train nothing")
    ap.add_argument("--weights", type=Path, default=MOBILENET_FILE, help="MobileNet-v2 file")
    ap.add_argument("--eval-size", type=int, default=224, help="second evaluation size (px)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--seed", type=int, default=0, help="seed of the PCA/K-means")
    ap.add_argument(
        "--cluster",
        action="store_true",
        help="also run experiment=real on the best SimCLR features (chosen cell, fused AMI)",
    )
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of the train config")
    args = ap.parse_intermixed_args(argv)
    if args.out is None:
        args.out = ROOT / "outputs" / "bench_ssl_real" / time.strftime("%Y-%m-%d_%H-%M-%S")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from aurora.infra.guard import run_guarded

    return run_guarded(bench, args)


if __name__ == "__main__":
    sys.exit(main())
