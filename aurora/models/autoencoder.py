"""Convolutional autoencoder; its bottleneck is the CAE feature of the thesis."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from aurora.infra.errors import SettingsError
from aurora.models.augment import SkyAugment, sky_mask
from aurora.models.base import FeatureModule


def _channels(depth: int, width: int, max_width: int) -> list[int]:
    return [min(width * 2**i, max_width) for i in range(depth)]


class AutoEncoder(FeatureModule):
    """Conv encoder (stride-2 blocks) -> linear bottleneck -> mirrored decoder, masked MSE.

    Args:
        image_size: side S of the square input images; must be divisible by ``2**depth``.
        depth: number of stride-2 conv blocks in the encoder (and decoder).
        width: channels of the first block; doubled at each block up to ``max_width``.
        max_width: channel cap.
        latent_dim: size of the bottleneck (the extracted feature).
        lr: peak AdamW learning rate.
        weight_decay: AdamW weight decay (not applied to biases and norm scales).
        warmup_fraction: fraction of all steps spent in linear warm-up.
        min_lr_ratio: final learning rate of the cosine, relative to ``lr``.
        augment: optional :class:`~aurora.models.augment.AugmentConfig` fields; when given,
            the network reconstructs a random view of each training image.
        seed: seed of the per-step augmentation generator.
        grid_images: images per side of the logged original/reconstruction grid.
    """

    def __init__(
        self,
        image_size: int = 64,
        depth: int = 4,
        width: int = 32,
        max_width: int = 256,
        latent_dim: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        warmup_fraction: float = 0.02,
        min_lr_ratio: float = 0.01,
        augment: Mapping[str, Any] | None = None,
        seed: int = 0,
        grid_images: int = 8,
    ) -> None:
        super().__init__()
        if depth < 1 or image_size % (2**depth) != 0:
            raise SettingsError(
                "depth",
                depth,
                f"at least 1, with the image size {image_size} divisible by 2**depth",
            )
        augment = dict(augment) if augment is not None else None
        self.save_hyperparameters(
            {
                "image_size": image_size,
                "depth": depth,
                "width": width,
                "max_width": max_width,
                "latent_dim": latent_dim,
                "lr": lr,
                "weight_decay": weight_decay,
                "warmup_fraction": warmup_fraction,
                "min_lr_ratio": min_lr_ratio,
                "augment": augment,
                "seed": seed,
                "grid_images": grid_images,
            }
        )
        chans = _channels(depth, width, max_width)
        enc: list[nn.Module] = []
        c_in = 3
        for c in chans:
            enc += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.BatchNorm2d(c), nn.GELU()]
            enc += [nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.GELU()]
            c_in = c
        self.bottom = image_size // 2**depth
        self.bottom_channels = chans[-1]
        flat = chans[-1] * self.bottom**2
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(flat, latent_dim))
        dec: list[nn.Module] = []
        rev = chans[::-1]
        for i, c in enumerate(rev):
            c_out = rev[i + 1] if i + 1 < len(rev) else width
            dec += [nn.ConvTranspose2d(c, c_out, 4, stride=2, padding=1), nn.BatchNorm2d(c_out)]
            dec += [nn.GELU(), nn.Conv2d(c_out, c_out, 3, padding=1), nn.GELU()]
        self.fc_dec = nn.Linear(latent_dim, flat)
        self.decoder = nn.Sequential(*dec, nn.Conv2d(width, 3, 3, padding=1), nn.Sigmoid())
        self.augment = SkyAugment(**augment) if augment is not None else None
        self.feature_dim = latent_dim
        self.register_buffer("mask", sky_mask(image_size, image_size).float(), persistent=False)
        self._grid_batch: torch.Tensor | None = None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Bottleneck features.

        Args:
            x: images (B, 3, S, S) in [0, 1].

        Returns:
            Features (B, latent_dim).
        """
        return self.encoder(self._prep(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Sky-masked reconstruction (B, 3, S, S) in [0, 1] of features (B, latent_dim)."""
        h = self.fc_dec(z).view(-1, self.bottom_channels, self.bottom, self.bottom)
        return self.decoder(self._prep(h)) * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct images (B, 3, S, S)."""
        return self.decode(self.encode(x))

    def _loss(self, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        # Mean squared error over sky pixels only: the black corners are free to reconstruct.
        err = ((recon.float() - x.float()) ** 2) * self.mask
        return err.sum() / (self.mask.sum() * x.shape[0] * x.shape[1])

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        x = batch
        if self.augment is not None:
            x = self.augment(x, self.view_generator("train", self.global_step))
        loss = self._loss(x, self(x))
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(x))
        self.log_lr()
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        recon = self(batch)
        loss = self._loss(batch, recon)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(batch))
        if batch_idx == 0:
            self._grid_batch = torch.cat(
                [batch[: self.hparams.grid_images], recon[: self.hparams.grid_images]]
            )
        return loss

    def on_validation_epoch_end(self) -> None:
        if self._grid_batch is not None:
            n = len(self._grid_batch) // 2
            # Top row originals, bottom row reconstructions.
            self.log_image_grid("val/reconstructions", self._grid_batch, nrow=n)
            self._grid_batch = None
