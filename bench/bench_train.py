"""Training throughput (images/s) of SimCLR and the autoencoder through the real Trainer.

Usage: python bench/bench_train.py [--size 96] [--batch 32] [--steps 12] [--device cpu|gpu]
       [--backbone resnet18] [--precision 32-true] [--threads N]

Both models are timed in one run on the same synthetic sky array; the first 2 steps are
warm-up and not counted. Prints images/s per model (and peak GPU memory on a GPU).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import lightning.pytorch as pl
import numpy as np
import torch

from aurora.data.datamodule import LoaderConfig
from aurora.training.fit import fit_model

WARMUP = 2


class StepTimer(pl.Callback):
    """Wall time of the training steps after the warm-up."""

    def __init__(self) -> None:
        self.t0: float | None = None
        self.t1: float | None = None
        self.steps = 0

    def _sync(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == WARMUP and self.t0 is None:
            self._sync()
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.t0 is not None:
            self._sync()
            self.t1 = time.perf_counter()
            self.steps += 1


def sky_array(n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8 random bands and blobs inside the inscribed circle."""
    rng = np.random.default_rng(seed)
    yy, xx = (np.mgrid[:size, :size] + 0.5 - size / 2) / (size / 2)
    inside = (yy**2 + xx**2) <= 1
    out = np.zeros((n, size, size, 3), np.uint8)
    for i in range(n):
        a, off = rng.uniform(0, np.pi), rng.uniform(-0.5, 0.5)
        band = np.exp(-0.5 * ((xx * np.cos(a) + yy * np.sin(a) - off) / 0.1) ** 2)
        img = np.stack([0.3 * band, band, 0.2 * band], -1) + rng.normal(0, 0.03, (size, size, 3))
        out[i] = (np.clip(img, 0, 1) * 255 * inside[..., None]).astype(np.uint8)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--precision", default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--models", default="simclr,autoencoder")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = args.device == "gpu"
    precision = args.precision or ("bf16-mixed" if gpu else "32-true")
    n = args.batch * (args.steps + WARMUP)
    images = sky_array(n, args.size)
    loader = LoaderConfig(batch_size=args.batch, num_workers=args.workers, val_fraction=0.0)
    trainer = {
        "_target_": "aurora.training.trainer.make_trainer",
        "accelerator": "gpu" if gpu else "cpu",
        "precision": precision,
        "max_epochs": 1,
        "channels_last": gpu,
        "benchmark": gpu,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": True,
        "log_every_n_steps": 1000,
    }
    models = {
        "simclr": {"_target_": "aurora.models.SimCLR", "backbone": args.backbone},
        "autoencoder": {"_target_": "aurora.models.AutoEncoder"},
    }
    print(
        f"device={args.device} size={args.size} batch={args.batch} steps={args.steps} "
        f"precision={precision} threads={torch.get_num_threads()} backbone={args.backbone}"
    )
    for name in args.models.split(","):
        timer = StepTimer()
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        with tempfile.TemporaryDirectory() as tmp:
            fit_model(images, models[name], trainer, tmp, loader=loader, callbacks=[timer])
        ips = timer.steps * args.batch / (timer.t1 - timer.t0)
        # SimCLR pushes two views of each image through the network.
        line = f"{name:12s} {ips:9.1f} images/s  ({timer.steps} timed steps)"
        if gpu:
            line += f"  peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
        print(line, flush=True)


if __name__ == "__main__":
    main()
