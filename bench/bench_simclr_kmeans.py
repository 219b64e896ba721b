"""Does SimCLR learn morphology? K-means AMI on SimCLR features vs on raw downscaled pixels.

Usage: python bench/bench_simclr_kmeans.py [--minutes 15] [--n 600] [--size 64]
       [--backbone resnet18] [--threads 2]

Renders the labelled synthetic sky (six morphologies), trains SimCLR for at most
``--minutes`` on the CPU, then runs K-means (k = 6, 10 restarts) on (a) the SimCLR backbone
features and (b) the raw pixels downscaled to 16x16, and prints the AMI of each with the true
morphology, side by side.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_mutual_info_score
from sklearn.preprocessing import StandardScaler

from aurora.data.datamodule import LoaderConfig
from aurora.data.synth import MORPHOLOGIES, render_sky
from aurora.models import load_encoder
from aurora.training.fit import fit_model


def synthetic_sky(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, size, size, 3) uint8 images masked to the inscribed circle, and morphology labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] + 0.5 - size / 2
    inside = (yy**2 + xx**2) <= (size / 2) ** 2
    imgs, labels = [], []
    for i in range(n):
        k = i % len(MORPHOLOGIES)
        moon = bool(rng.random() < 0.3)
        img, _ = render_sky(
            MORPHOLOGIES[k],
            np.random.default_rng(seed * 100_000 + i),
            size,
            moon,
            0.0,
            caption=False,
        )
        imgs.append(img * inside[..., None])
        labels.append(k)
    return np.stack(imgs).astype(np.uint8), np.array(labels)


def _dhms(minutes: float) -> str:
    """Lightning's max_time string DD:HH:MM:SS."""
    s = int(round(minutes * 60))
    return f"{s // 86400:02d}:{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def kmeans_ami(x: np.ndarray, y: np.ndarray, seed: int) -> float:
    z = StandardScaler().fit_transform(x)
    pred = KMeans(len(MORPHOLOGIES), n_init=10, random_state=seed).fit_predict(z)
    return float(adjusted_mutual_info_score(y, pred))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    images, labels = synthetic_sky(args.n, args.size, args.seed)
    print(f"rendered {args.n} images at {args.size} px in {time.perf_counter() - t0:.1f} s")

    model = {"_target_": "aurora.models.SimCLR", "backbone": args.backbone, "lr": 2e-3}
    trainer = {
        "_target_": "aurora.training.trainer.make_trainer",
        "accelerator": "cpu",
        "precision": "32-true",
        "max_epochs": args.epochs,
        "max_time": _dhms(args.minutes),
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "log_every_n_steps": 10,
    }
    loader = LoaderConfig(batch_size=args.batch, num_workers=1, val_fraction=0.05)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = fit_model(images, model, trainer, tmp, loader=loader, seed=args.seed)
        train_s = time.perf_counter() - t0
        encoder, info = load_encoder(res.last_ckpt)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        feats = torch.cat([encoder.encode(b) for b in x.split(128)]).numpy()
    small = torch.nn.functional.interpolate(x, size=(16, 16), mode="area")
    raw = small.flatten(1).numpy()
    ami_simclr = kmeans_ami(feats, labels, args.seed)
    ami_raw = kmeans_ami(raw, labels, args.seed)
    print(
        f"trained {res.global_step} steps / {res.epochs} epochs in {train_s / 60:.1f} min "
        f"({args.backbone}, {args.size} px, batch {args.batch}, {args.threads} threads)"
    )
    print(f"K-means AMI, SimCLR features ({info['feature_dim']}-d): {ami_simclr:.3f}")
    print(f"K-means AMI, raw pixels 16x16x3 (768-d):       {ami_raw:.3f}")
    print(f"ratio SimCLR / raw: {ami_simclr / max(ami_raw, 1e-9):.2f}")


if __name__ == "__main__":
    main()
