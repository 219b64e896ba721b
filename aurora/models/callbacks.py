"""Trainer callbacks of the feature-learning runs."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm


class ChannelsLast(pl.Callback):
    """Put the module's weights and inputs in channels-last memory format (faster convs on GPU)."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.channels_last = True
        pl_module.to(memory_format=torch.channels_last)


class EpochProgressBar(TQDMProgressBar):
    """Lightning's bar without its nested sanity-check and validation bars: one line per
    training, the epoch and its losses (the validation loss shows on it when the pass ends).

    A nested bar closes by moving the cursor back up, which leaves a blank line behind where
    the terminal does not follow (and a stray line per epoch in any log); validating these
    data sets takes a moment anyway.
    """

    def init_sanity_tqdm(self) -> Tqdm:
        """No bar for the sanity check."""
        return Tqdm(disable=True)

    def init_validation_tqdm(self) -> Tqdm:
        """No bar for a validation pass."""
        return Tqdm(disable=True)
