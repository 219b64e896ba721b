"""The Lightning Trainer of our trainings: checkpoints written atomically, callbacks from nodes."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.plugins import CheckpointIO, TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from aurora.infra.atomic import atomic_write_bytes
from aurora.infra.config import plain
from aurora.infra.errors import SettingsError
from aurora.infra.logs import show_progress
from aurora.models.callbacks import ChannelsLast, EpochProgressBar


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

    The ``trainer`` config group instantiates this
    (``_target_: aurora.training.trainer.make_trainer``); every key other than the named ones
    goes to :class:`lightning.pytorch.Trainer` (accelerator, devices, num_nodes, strategy,
    precision, max_epochs, ...). Under SLURM, Lightning's
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
