"""Shared machinery of the feature-learning LightningModules."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch.optim.lr_scheduler import LambdaLR

# Stage codes mixed into the per-step augmentation seed.
_STAGE_CODE = {"train": 0, "val": 1}


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float = 0.0):
    """Learning-rate multiplier: linear warm-up to 1, then cosine decay to ``min_ratio``.

    Args:
        total_steps: number of optimiser steps of the whole run.
        warmup_steps: steps of the linear warm-up (at least 1).
        min_ratio: final multiplier at the end of the cosine.

    Returns:
        A function ``step -> multiplier`` for ``LambdaLR``.
    """
    warmup_steps = max(1, warmup_steps)
    decay_steps = max(1, total_steps - warmup_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / decay_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


class FeatureModule(pl.LightningModule):
    """Base class: optimiser and schedule, seeded views, channels-last, checkpoint metadata.

    Subclasses set ``self.feature_dim`` and implement ``encode(x: (B, 3, S, S)) -> (B, D)``.
    Hyperparameters expected in ``self.hparams``: ``lr``, ``weight_decay``,
    ``warmup_fraction``, ``min_lr_ratio``, ``seed``, ``image_size``.
    """

    feature_dim: int
    #: Whether a training item may be a pair of images (B, 2, 3, S, S): see
    #: ``LoaderConfig.temporal_pair``.
    accepts_pairs: bool = False
    #: Set by :class:`aurora.models.callbacks.ChannelsLast`; inputs are then made channels-last.
    channels_last: bool = False

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def view_generator(self, stage: str, step: int) -> torch.Generator:
        """CPU generator for the random views of one step.

        The seed depends only on (seed, stage, step, rank), never on RNG state carried over
        from earlier steps, so a run resumed from a checkpoint draws the same views as an
        uninterrupted run; validation uses the batch index, so its loss is comparable
        across epochs.
        """
        rank = self.global_rank if self._trainer is not None else 0
        seed = int(self.hparams.get("seed", 0))
        key = ((seed * 1_000_003 + step) * 7 + _STAGE_CODE[stage]) * 4099 + rank
        return torch.Generator().manual_seed(key % (2**63 - 1))

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        decay, no_decay = [], []
        for p in self.parameters():
            if p.requires_grad:
                # Biases and norm scales are not weight-decayed.
                (no_decay if p.ndim <= 1 else decay).append(p)
        opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": float(hp.weight_decay)},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=float(hp.lr),
        )
        total = int(self.trainer.estimated_stepping_batches)
        warm = int(round(float(hp.warmup_fraction) * total))
        sched = LambdaLR(opt, warmup_cosine(total, warm, float(hp.min_lr_ratio)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def log_lr(self) -> None:
        """Log the current learning rate as ``train/lr``."""
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.log("train/lr", lr, on_step=True, on_epoch=False, batch_size=1)

    def log_image_grid(self, tag: str, images: torch.Tensor, nrow: int) -> None:
        """Write an image grid to TensorBoard when that is the logger (no-op otherwise).

        Args:
            tag: TensorBoard image tag.
            images: (N, 3, H, W) in [0, 1].
            nrow: images per grid row.
        """
        if self._trainer is None or self.trainer.sanity_checking:
            return
        if not isinstance(self.logger, TensorBoardLogger):
            return
        from torchvision.utils import make_grid

        grid = make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=2)
        self.logger.experiment.add_image(tag, grid, global_step=self.global_step)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Enough for aurora.models.load_encoder to rebuild the module without any config.
        checkpoint["aurora_model_class"] = f"{type(self).__module__}.{type(self).__qualname__}"
        checkpoint["aurora_feature_dim"] = int(self.feature_dim)
