"""Training of the feature extractors (what ``python train.py`` runs)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from omegaconf import DictConfig, OmegaConf

from aurora.data.datamodule import LoaderConfig, SkyDataModule
from aurora.errors import AuroraError
from aurora.models.callbacks import ChannelsLast

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


def make_trainer(
    out_dir: str | Path,
    logger: Any = False,
    channels_last: bool = False,
    monitor: str | None = "val/loss",
    callbacks: list[pl.Callback] | None = None,
    **trainer_kwargs: Any,
) -> pl.Trainer:
    """A Lightning Trainer with best + last checkpoints under ``out_dir/checkpoints``.

    The ``trainer`` config group instantiates this (``_target_: aurora.training.make_trainer``);
    every key other than the named ones goes to :class:`lightning.pytorch.Trainer` (accelerator,
    devices, num_nodes, strategy, precision, max_epochs, ...). Under SLURM, Lightning's
    SLURMEnvironment is detected automatically.

    Args:
        out_dir: run directory.
        logger: a Lightning logger, or False.
        channels_last: convert weights and inputs to channels-last memory format.
        monitor: metric whose minimum marks the best checkpoint; None keeps only ``last``.
        callbacks: extra callbacks (e.g. early stopping).
        **trainer_kwargs: passed to the Trainer.
    """
    ckpt = ModelCheckpoint(
        dirpath=Path(out_dir) / "checkpoints",
        filename="best-epoch{epoch:03d}-step{step}",
        auto_insert_metric_name=False,
        monitor=monitor,
        mode="min",
        save_top_k=1 if monitor else 0,
        save_last=True,
    )
    callbacks = [ckpt, *(callbacks or [])]
    if trainer_kwargs.get("enable_progress_bar", True):
        callbacks.append(TQDMProgressBar(refresh_rate=10))
    if channels_last:
        callbacks.append(ChannelsLast())
    return pl.Trainer(
        default_root_dir=str(out_dir), logger=logger, callbacks=callbacks, **trainer_kwargs
    )


def no_logger(**_: Any) -> bool:
    """Target of ``logger=none``: Lightning's "no logger" value."""
    return False


def _container(cfg: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


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
        model_cfg: ``model`` group config (``_target_`` = a FeatureModule); ``image_size`` and
            ``seed`` are filled in here.
        trainer_cfg: ``trainer`` group config (``_target_: aurora.training.make_trainer``).
        out_dir: run directory for checkpoints and logs.
        logger_cfg: ``logger`` group config (``save_dir`` filled in here) or None for no logger.
        loader: batching and split settings (defaults of LoaderConfig when None).
        seed: seeds weights, split, shuffling and augmentations.
        ckpt_path: resume from this checkpoint (optimizer, schedule, step count and all).
        callbacks: extra Lightning callbacks.

    Returns:
        The run's :class:`TrainResult`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(seed, workers=True)
    dm = SkyDataModule(images, loader or LoaderConfig(), seed=seed)
    # _convert_="all": hyperparameters must be plain containers to load with weights_only=True.
    model = instantiate(_container(model_cfg), image_size=dm.image_size, seed=seed, _convert_="all")
    logger = False
    if logger_cfg is not None:
        logger = instantiate(_container(logger_cfg), save_dir=str(out_dir))
    monitor = "val/loss" if len(dm.val_idx) > 0 else None
    if monitor is None and dm.loader.val_fraction > 0:
        log.warning(
            "training on %d images without validation (too few to hold any out); the last "
            "checkpoint is kept",
            len(dm.train_idx),
        )
    trainer = instantiate(
        _container(trainer_cfg),
        out_dir=str(out_dir),
        logger=logger,
        monitor=monitor,
        callbacks=list(callbacks or []),
    )
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
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


def train(cfg: DictConfig) -> TrainResult:
    """Preprocess (cached) the configured data set and train the configured model.

    Args:
        cfg: the composed ``train`` config (groups data, preprocess, model, trainer, logger,
            paths; keys ``seed``, ``loader``, ``ckpt_path``, ``out_dir``, ``jobs``).

    Returns:
        The run's :class:`TrainResult`; checkpoints and TensorBoard logs are in the run dir.
    """
    from aurora.pipeline import ensure_dataset, prepare_images

    out_dir = cfg.get("out_dir")
    if not out_dir:
        from hydra.core.hydra_config import HydraConfig

        out_dir = HydraConfig.get().runtime.output_dir
    preprocess_cfg = instantiate(cfg.preprocess)
    synth = cfg.data.get("synth")
    synth = _container(synth) if synth is not None else None
    root = ensure_dataset(str(cfg.data.root), synth, int(cfg.jobs))
    store = prepare_images(root, preprocess_cfg, str(cfg.paths.cache_dir), int(cfg.jobs))
    if len(store.ids) < 2:
        raise AuroraError(
            f"only {len(store.ids)} usable images in {root} ({len(store.rejected)} rejected, "
            "see the log); training needs at least 2"
        )
    log.info("training on %d preprocessed images from %s", len(store.ids), root)
    loader = LoaderConfig(**_container(cfg.loader))
    result = fit_model(
        store.images,
        cfg.model,
        cfg.trainer,
        out_dir,
        logger_cfg=cfg.logger,
        loader=loader,
        seed=int(cfg.seed),
        ckpt_path=cfg.get("ckpt_path"),
    )
    log.info("best checkpoint: %s", result.best_ckpt)
    log.info("last checkpoint: %s", result.last_ckpt)
    return result
