"""Fit a feature model on an image array: the datamodule, the model and the trainer from their
group nodes, checkpoints that are complete or absent."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from aurora.data.datamodule import LoaderConfig, SkyDataModule
from aurora.infra.atomic import check_free_space, remove_stale_tmp
from aurora.infra.config import plain
from aurora.infra.errors import AuroraError, SettingsError, disk_full_error
from aurora.infra.logs import quiet_libraries
from aurora.training.checkpoints import latest_checkpoint, remove_incomplete_checkpoints

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """Outcome of a training run.

    Attributes:
        out_dir: run directory (checkpoints in ``out_dir/checkpoints``, logs in ``out_dir/tb``).
        best_ckpt: checkpoint with the lowest monitored loss ("" when none was written).
        last_ckpt: checkpoint of the last completed epoch.
        log_dir: TensorBoard log folder, or None without a TensorBoard logger.
        global_step: optimiser steps taken in total (including those of a resumed run).
        epochs: completed epochs.
        metrics: last logged values (floats) of every logged metric.
        model: the trained module (in memory, weights of the last step).
    """

    out_dir: Path
    best_ckpt: str
    last_ckpt: str
    log_dir: str | None
    global_step: int
    epochs: int
    metrics: dict[str, float] = field(default_factory=dict)
    model: pl.LightningModule | None = field(default=None, repr=False)


def fit_model(
    images: np.ndarray,
    model_cfg: Mapping[str, Any] | DictConfig,
    trainer_cfg: Mapping[str, Any] | DictConfig,
    out_dir: str | Path,
    *,
    logger_cfg: Mapping[str, Any] | DictConfig | None = None,
    loader: LoaderConfig | None = None,
    seed: int = 0,
    ckpt_path: str | None = None,
    callbacks: list[pl.Callback] | None = None,
) -> TrainResult:
    """Train a feature model on an image array.

    Args:
        images: (N, S, S, 3) uint8 array (memmap welcome).
        model_cfg: ``model`` group node (``_target_`` = a FeatureModule); ``image_size`` and
            ``seed`` are filled in here.
        trainer_cfg: ``trainer`` group node (``_target_: aurora.training.trainer.make_trainer``).
        out_dir: run directory for checkpoints and logs.
        logger_cfg: ``logger`` group node (``save_dir`` filled in here) or None for no logger.
        loader: batching and split settings (defaults of LoaderConfig when None).
        seed: seeds weights, split, shuffling and augmentations.
        ckpt_path: resume from this checkpoint (optimizer, schedule, step count and all).
        callbacks: extra Lightning callbacks
            (:func:`aurora.training.trainer.instantiate_callbacks` of a ``callbacks`` node).

    Returns:
        The run's :class:`TrainResult`.

    Raises:
        SettingsError: ``temporal_pair`` for a model that trains on single images, or a
            callback watches a validation metric and no image is held out.
        DiskFullError: before training when the checkpoint folder cannot hold the weights once,
            or when a checkpoint or log does not fit; no partial checkpoint is left and
            the complete ones are kept (a log line names the one to resume from).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out_dir / "checkpoints"
    remove_stale_tmp(ckpt_dir)  # temporaries of a killed earlier run in this folder
    quiet_libraries()  # Lightning's handlers, added when it was imported: each line once
    pl.seed_everything(seed, workers=True)
    dm = SkyDataModule(images, loader or LoaderConfig(), seed=seed)
    model = _make_model(model_cfg, dm, seed)
    # A checkpoint holds at least the weights (AdamW adds two moments): refuse now rather than
    # after the first epoch when even that will not fit.
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    check_free_space(ckpt_dir, weights, ckpt_dir)
    logger = False
    if logger_cfg is not None:
        logger = instantiate(plain(logger_cfg), save_dir=str(out_dir))
    callbacks = list(callbacks or [])
    trainer = instantiate(
        plain(trainer_cfg),
        out_dir=str(out_dir),
        logger=logger,
        monitor=_monitor(dm, callbacks),
        callbacks=callbacks,
    )
    _fit(trainer, model, dm, ckpt_path, ckpt_dir)
    return _result(trainer, model, out_dir)


def _make_model(
    model_cfg: Mapping[str, Any] | DictConfig, dm: SkyDataModule, seed: int
) -> pl.LightningModule:
    """The model of a ``model`` node for the images of ``dm``; pairs only for a model that
    takes them."""
    # _convert_="all": hyperparameters must be plain containers to load with weights_only=True.
    model = instantiate(plain(model_cfg), image_size=dm.image_size, seed=seed, _convert_="all")
    if dm.loader.temporal_pair and not getattr(model, "accepts_pairs", False):
        raise SettingsError(
            "train.loader.temporal_pair",
            dm.loader.temporal_pair,
            f"{type(model).__name__} trains on single images; 0 (pairs are for model=simclr)",
        )
    return model


def _monitor(dm: SkyDataModule, callbacks: list[pl.Callback]) -> str | None:
    """The metric of the best checkpoint: ``val/loss``, or None when no image is held out (a
    callback watching a validation metric then cannot work)."""
    monitor = "val/loss" if len(dm.val_idx) > 0 else None
    if monitor is None and dm.loader.val_fraction > 0:
        log.warning(
            "training on %d images without validation (too few to hold any out); the last "
            "checkpoint is kept",
            len(dm.train_idx),
        )
    watching = [c for c in callbacks if str(getattr(c, "monitor", "")).startswith("val/")]
    if monitor is None and watching:
        raise SettingsError(
            "train.loader.val_fraction",
            dm.loader.val_fraction,
            f"{type(watching[0]).__name__} watches {watching[0].monitor}, and "
            f"{len(dm.train_idx)} images at this fraction leave none for validation: raise it "
            "or leave the callback out",
        )
    return monitor


def _fit(
    trainer: pl.Trainer,
    model: pl.LightningModule,
    dm: SkyDataModule,
    ckpt_path: str | None,
    ckpt_dir: Path,
) -> None:
    """``trainer.fit``; a training that stops leaves complete checkpoints only (and names the
    one to resume from), a full disk raising :class:`aurora.infra.errors.DiskFullError`."""
    started = time.time()
    try:
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    except BaseException as err:
        remove_incomplete_checkpoints(ckpt_dir, since=started)
        resume = latest_checkpoint(ckpt_dir)
        if resume is not None:
            log.warning(
                "training stopped; its last complete checkpoint is %s (train.py resumes from it "
                "with ckpt_path=...)",
                os.path.abspath(resume),
            )
        full = None
        if isinstance(err, Exception) and not isinstance(err, AuroraError):
            full = disk_full_error(err, ckpt_dir)
        if full is not None:
            raise full from err
        raise


def _result(trainer: pl.Trainer, model: pl.LightningModule, out_dir: Path) -> TrainResult:
    """What a finished ``trainer`` left: checkpoints, steps, epochs, last metrics."""
    ckpt_cb = trainer.checkpoint_callback
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    log_dir = getattr(trainer.logger, "log_dir", None) if trainer.logger else None
    return TrainResult(
        out_dir=out_dir,
        best_ckpt=ckpt_cb.best_model_path if ckpt_cb else "",
        last_ckpt=ckpt_cb.last_model_path if ckpt_cb else "",
        log_dir=log_dir,
        global_step=int(trainer.global_step),
        epochs=int(trainer.current_epoch),
        metrics=metrics,
        model=model,
    )
