"""The recipe of ``python train.py``: check the settings, make the data set, preprocess it
(cached), fit the model. The one reader of the composed ``train`` config."""

from __future__ import annotations

import logging

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from aurora.data.datamodule import LoaderConfig
from aurora.data.dataset import ensure_dataset
from aurora.infra.config import plain
from aurora.infra.errors import AuroraError
from aurora.preprocess.store import prepare_images
from aurora.run.checks import check_jobs, check_seed, check_training
from aurora.training.fit import TrainResult, fit_model
from aurora.training.trainer import instantiate_callbacks

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> TrainResult:
    """Preprocess (cached) the configured data set and train the configured model.

    Args:
        cfg: the composed ``train`` config (groups data, preprocess, model, trainer, logger,
            callbacks, paths; keys ``seed``, ``jobs``, ``train.loader``, ``ckpt_path``,
            ``out_dir``).

    Returns:
        The run's :class:`~aurora.training.fit.TrainResult`; checkpoints and TensorBoard logs
        are in the run folder.

    Raises:
        SettingsError: a setting that cannot work, before any work (the message names the key).
        AuroraError: fewer than 2 usable images.
    """
    # Settings first, before any work (one error line naming the key).
    seed, jobs = check_seed(cfg.get("seed")), check_jobs(cfg.get("jobs"))
    check_training(plain(cfg.train.loader), plain(cfg.trainer))
    out_dir = cfg.get("out_dir") or HydraConfig.get().runtime.output_dir
    callbacks = instantiate_callbacks(cfg.get("callbacks"))  # a bad node stops before any work

    preprocess = instantiate(cfg.preprocess)
    root = ensure_dataset(str(cfg.data.root), plain(cfg.data.get("synth")), jobs)
    store = prepare_images(root, preprocess, str(cfg.paths.cache_dir), jobs)
    if len(store.ids) < 2:
        raise AuroraError(
            f"only {len(store.ids)} usable images in {root} ({len(store.rejected)} rejected, "
            "see the log); training needs at least 2"
        )
    log.info("training on %d preprocessed images from %s", len(store.ids), root)

    result = fit_model(
        store.images,
        cfg.model,
        cfg.trainer,
        out_dir,
        logger_cfg=cfg.logger,
        loader=LoaderConfig(**plain(cfg.train.loader)),
        seed=seed,
        ckpt_path=cfg.get("ckpt_path"),
        callbacks=callbacks,
    )
    log.info("best checkpoint: %s", result.best_ckpt)
    log.info("last checkpoint: %s", result.last_ckpt)
    return result
