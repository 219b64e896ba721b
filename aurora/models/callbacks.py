"""Trainer callbacks of the feature-learning runs."""

from __future__ import annotations

import lightning.pytorch as pl
import torch


class ChannelsLast(pl.Callback):
    """Put the module's weights and inputs in channels-last memory format (faster convs on GPU)."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.channels_last = True
        pl_module.to(memory_format=torch.channels_last)
