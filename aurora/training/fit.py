"""Training of the feature extractors (what ``python train.py`` runs)."""

from __future__ import annotations

import io
import logging
import os
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.plugins import CheckpointIO, TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from aurora.data.datamodule import LoaderConfig, SkyDataModule
from aurora.data.dataset import ensure_dataset
from aurora.infra.atomic import atomic_write_bytes, check_free_space, remove_stale_tmp
from aurora.infra.config import plain
from aurora.infra.errors import AuroraError, SettingsError, disk_full_error
from aurora.infra.logs import quiet_libraries, show_progress
from aurora.models.callbacks import ChannelsLast, EpochProgressBar
from aurora.preprocess.store import prepare_images
from aurora.run.checks import check_jobs, check_seed, check_training

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


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but atomic in place and clear when the disk is full.

    Lightning's own writer stages a checkpoint in the system temporary folder and moves it
    over; across file systems that move is a copy, which a full disk cuts short, leaving a
    truncated ``.ckpt``. Here the checkpoint is serialised in memory (as Lightning does),
    its size checked against the free space, written to a temporary sibling and renamed into
    place: a checkpoint path holds a complete checkpoint or nothing, and a full disk raises
    :class:`aurora.infra.errors.DiskFullError` naming the checkpoint and the bytes it needed.
    Remote paths (``s3://`` ...) go to Lightning's writer.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        """Write ``checkpoint`` to ``path`` (complete or not at all)."""
        if storage_options is not None or not _is_local_file_protocol(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(path, buffer.getbuffer())
        return None


def make_trainer(
    out_dir: str | Path,
    logger: Any = False,
    channels_last: bool = False,
    monitor: str | None = "val/loss",
    callbacks: list[pl.Callback] | None = None,
    **trainer_kwargs: Any,
) -> pl.Trainer:
    """A Lightning Trainer with best + last checkpoints under ``out_dir/checkpoints``.

    ``last.ckpt`` is a symbolic link to the newest checkpoint written (Lightning's
    ``save_last="link"``), not a second copy: with a monitored metric Lightning writes
    ``last`` only in the steps it writes the best one, so the two were identical files.
    Checkpoints are written through :class:`AtomicCheckpointIO`. The progress bar (one line per
    training, :class:`aurora.models.callbacks.EpochProgressBar`) is drawn on a terminal only:
    ``enable_progress_bar`` is ignored when the output is a file or a pipe.

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
        save_last="link",
    )
    callbacks = [ckpt, *(callbacks or [])]
    bar = show_progress(trainer_kwargs.pop("enable_progress_bar", True))
    if bar:
        callbacks.append(EpochProgressBar(refresh_rate=10))
    if channels_last:
        callbacks.append(ChannelsLast())
    plugins = trainer_kwargs.pop("plugins", None) or []
    plugins = list(plugins) if isinstance(plugins, list | tuple) else [plugins]
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    try:
        return pl.Trainer(
            default_root_dir=str(out_dir),
            logger=logger,
            callbacks=callbacks,
            plugins=plugins,
            enable_progress_bar=bar,
            **trainer_kwargs,
        )
    except MisconfigurationException as err:  # e.g. accelerator=gpu on a machine without one
        asked = {
            k: trainer_kwargs[k]
            for k in ("accelerator", "devices", "strategy")
            if k in trainer_kwargs
        }
        raise SettingsError("trainer", asked, str(err).splitlines()[0]) from None


def instantiate_callbacks(nodes: Mapping[str, Any] | DictConfig | None) -> list[pl.Callback]:
    """The Lightning callbacks of a ``callbacks`` group node (``conf/callbacks/``), in order.

    Args:
        nodes: name -> node with a ``_target_`` (a :class:`lightning.pytorch.Callback` class)
            and its arguments; a null node is switched off (``callbacks.early_stopping=null``).

    Returns:
        New callbacks, one per node (a callback keeps state: one list per training).

    Raises:
        SettingsError: a node that is not a callback class with arguments it takes.
    """
    callbacks: list[pl.Callback] = []
    for name, node in (plain(nodes) or {}).items():
        if node is None:
            continue
        key = f"callbacks.{name}"
        if not isinstance(node, dict) or "_target_" not in node:
            raise SettingsError(key, node, "a callback is a node with a _target_ and its arguments")
        try:
            callback = instantiate(node, _convert_="all")
        except InstantiationException as err:
            raise SettingsError(key, node, " ".join(str(err).split())) from err
        if not isinstance(callback, pl.Callback):
            raise SettingsError(
                f"{key}._target_", node["_target_"], "it is not a Lightning callback class"
            )
        callbacks.append(callback)
    return callbacks


def no_logger(**_: Any) -> bool:
    """Target of ``logger=none``: Lightning's "no logger" value."""
    return False


def is_complete_checkpoint(path: str | Path) -> bool:
    """True when ``path`` is a whole torch checkpoint (a zip archive whose directory reads).

    A checkpoint cut short by a full disk or a kill lacks the zip's central directory at its
    end, so this is cheap and does not load any tensor. A dangling link is not complete.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            return len(zf.namelist()) > 0
    except (OSError, zipfile.BadZipFile):
        return False


def remove_incomplete_checkpoints(folder: str | Path, since: float = 0.0) -> list[Path]:
    """Remove what a failed or killed training left half-written in a checkpoint folder.

    Removes temporaries of dead writers and every ``*.ckpt`` modified at or after ``since``
    that is not a complete checkpoint (including links whose target is gone). Complete
    checkpoints are kept: they are what a rerun resumes from.

    Args:
        folder: checkpoint folder (``out_dir/checkpoints``); a missing folder is fine.
        since: epoch seconds; older files are left alone.

    Returns:
        The paths removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = remove_stale_tmp(folder)
    for path in sorted(folder.glob("*.ckpt")):
        try:
            mtime = path.lstat().st_mtime
        except FileNotFoundError:
            continue
        if mtime >= since - 1 and not is_complete_checkpoint(path):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The newest complete checkpoint in ``folder`` (``last.ckpt`` first), or None."""
    folder = Path(folder)
    last = folder / "last.ckpt"
    if is_complete_checkpoint(last):
        return last
    found = [p for p in folder.glob("*.ckpt") if is_complete_checkpoint(p)]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


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
        callbacks: extra Lightning callbacks (:func:`instantiate_callbacks` of a ``callbacks``
            node).

    Returns:
        The run's :class:`TrainResult`.

    Raises:
        SettingsError: a callback watches a validation metric and no image is held out.
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
    # _convert_="all": hyperparameters must be plain containers to load with weights_only=True.
    model = instantiate(plain(model_cfg), image_size=dm.image_size, seed=seed, _convert_="all")
    if dm.loader.temporal_pair and not getattr(model, "accepts_pairs", False):
        raise SettingsError(
            "loader.temporal_pair",
            dm.loader.temporal_pair,
            f"{type(model).__name__} trains on single images; 0 (pairs are for model=simclr)",
        )
    # A checkpoint holds at least the weights (AdamW adds two moments): refuse now rather than
    # after the first epoch when even that will not fit.
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    check_free_space(ckpt_dir, weights, ckpt_dir)
    logger = False
    if logger_cfg is not None:
        logger = instantiate(plain(logger_cfg), save_dir=str(out_dir))
    monitor = "val/loss" if len(dm.val_idx) > 0 else None
    if monitor is None and dm.loader.val_fraction > 0:
        log.warning(
            "training on %d images without validation (too few to hold any out); the last "
            "checkpoint is kept",
            len(dm.train_idx),
        )
    callbacks = list(callbacks or [])
    watching = [c for c in callbacks if str(getattr(c, "monitor", "")).startswith("val/")]
    if monitor is None and watching:
        raise SettingsError(
            "loader.val_fraction",
            dm.loader.val_fraction,
            f"{type(watching[0]).__name__} watches {watching[0].monitor}, and "
            f"{len(dm.train_idx)} images at this fraction leave none for validation: raise it "
            "or leave the callback out",
        )
    trainer = instantiate(
        plain(trainer_cfg),
        out_dir=str(out_dir),
        logger=logger,
        monitor=monitor,
        callbacks=callbacks,
    )
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
            callbacks, paths; keys ``seed``, ``loader``, ``ckpt_path``, ``out_dir``, ``jobs``).

    Returns:
        The run's :class:`TrainResult`; checkpoints and TensorBoard logs are in the run dir.
    """
    # Settings first, before any work (one error line naming the key).
    seed, jobs = check_seed(cfg.get("seed")), check_jobs(cfg.get("jobs"))
    check_training(plain(cfg.loader), plain(cfg.trainer), loader_key="loader")
    out_dir = cfg.get("out_dir")
    if not out_dir:
        from hydra.core.hydra_config import HydraConfig

        out_dir = HydraConfig.get().runtime.output_dir
    callbacks = instantiate_callbacks(cfg.get("callbacks"))  # a bad node stops before any work
    preprocess_cfg = instantiate(cfg.preprocess)
    synth = plain(cfg.data.get("synth"))
    root = ensure_dataset(str(cfg.data.root), synth, jobs)
    store = prepare_images(root, preprocess_cfg, str(cfg.paths.cache_dir), jobs)
    if len(store.ids) < 2:
        raise AuroraError(
            f"only {len(store.ids)} usable images in {root} ({len(store.rejected)} rejected, "
            "see the log); training needs at least 2"
        )
    log.info("training on %d preprocessed images from %s", len(store.ids), root)
    loader = LoaderConfig(**plain(cfg.loader))
    result = fit_model(
        store.images,
        cfg.model,
        cfg.trainer,
        out_dir,
        logger_cfg=cfg.logger,
        loader=loader,
        seed=seed,
        ckpt_path=cfg.get("ckpt_path"),
        callbacks=callbacks,
    )
    log.info("best checkpoint: %s", result.best_ckpt)
    log.info("last checkpoint: %s", result.last_ckpt)
    return result
