"""Features of each configured extractor, training our own encoders first when they have no
checkpoint (trained once per images, model, trainer, loader, seed and the callbacks that change
training; cached)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aurora.infra.atomic import link_or_copy
from aurora.infra.cache import Cache, stable_hash
from aurora.infra.config import UNSET
from aurora.infra.errors import RunError
from aurora.infra.logs import log, stage
from aurora.preprocess import PreprocessedStore
from aurora.run.extractor_plan import ExtractorPlan
from aurora.run.settings import RunSettings
from aurora.run.stores import ImageRows, StoreSet

#: Trainer and loader settings that change how fast training runs, not what it learns.
_RUNTIME_TRAINER = {"devices", "num_nodes", "strategy", "log_every_n_steps", "accelerator"}
_RUNTIME_LOADER = {"num_workers", "pin_memory"}
#: Callbacks that watch training without changing what it learns (an unknown one is assumed to
#: change it: early stopping does).
_WATCHING_CALLBACKS = {
    f"lightning.pytorch.callbacks.{name}"
    for name in (
        "LearningRateMonitor",
        "DeviceStatsMonitor",
        "ModelSummary",
        "RichModelSummary",
        "TQDMProgressBar",
        "RichProgressBar",
    )
}


@dataclass(frozen=True)
class ExtractedFeatures:
    """Features of one extractor, one row per image of the run.

    Attributes:
        name: the extractor's name (key of ``extractors``).
        features: (N, D) float32.
        key: cache key of ``features`` (names these rows: alignment and references change it).
        ids: (N,) image ids of the rows.
        random_init: the network has random weights (``pretrained=false``).
        store: the preprocessed store the features were extracted from.
        preprocess: the store's preprocessing variant (key of ``preprocess``).
        extractor_cfg: the extractor's node, ``ckpt_path`` filled in after training.
        identity: the extractor's identity (part of the features' cache key).
        extractor: the extractor itself.
        images: (N, S, S, 3) the preprocessed images behind the rows, or None before the
            run's rows are chosen.
    """

    name: str
    features: np.ndarray
    key: str
    ids: list[str]
    random_init: bool
    store: PreprocessedStore
    preprocess: str
    extractor_cfg: dict[str, Any]
    identity: dict[str, Any]
    extractor: Any
    images: ImageRows | None = None


def training_key(
    store_key: str,
    model_cfg: Mapping[str, Any],
    trainer_cfg: Mapping[str, Any],
    loader_cfg: Mapping[str, Any],
    seed: int,
    callbacks_cfg: Mapping[str, Any] | None = None,
) -> str:
    """Cache key of an encoder: what decides its weights, and nothing that only changes how
    fast it trains or what it logs.

    Without a callback that changes training, the key is that of a training without callbacks
    (the key of every encoder trained before the ``callbacks`` group existed).
    """
    trainer_identity = {k: v for k, v in trainer_cfg.items() if k not in _RUNTIME_TRAINER}
    loader_identity = {k: v for k, v in loader_cfg.items() if k not in _RUNTIME_LOADER}
    parts: list[Any] = [store_key, model_cfg, trainer_identity, loader_identity, seed]
    steering = {
        name: node
        for name, node in (callbacks_cfg or {}).items()
        if node is not None
        and not (isinstance(node, Mapping) and node.get("_target_") in _WATCHING_CALLBACKS)
    }
    if steering:
        parts.append(steering)
    return stable_hash(*parts)


def train_encoder_cached(
    images: np.ndarray,
    store_key: str,
    model_cfg: Mapping[str, Any],
    trainer_cfg: Mapping[str, Any],
    loader_cfg: Mapping[str, Any],
    *,
    seed: int,
    cache_root: str | Path,
    log_dir: str | Path,
    logger_cfg: Mapping[str, Any] | None = None,
    callbacks_cfg: Mapping[str, Any] | None = None,
) -> Path:
    """Train an encoder once per (images, model, trainer, loader, seed, callbacks that change
    training: :func:`training_key`); return its checkpoint.

    TensorBoard logs go to ``log_dir``; the best checkpoint is kept in the cache so later runs
    (and every job of a sweep) reuse it.

    Args:
        images: (N, S, S, 3) uint8 training images.
        store_key: cache key of ``images``.
        model_cfg: ``model`` group node (``_target_``).
        trainer_cfg: ``trainer`` group node.
        loader_cfg: batching and split settings (``aurora.data.datamodule.LoaderConfig``).
        seed: training seed.
        cache_root: cache folder.
        log_dir: where this run's logs and Lightning checkpoints go.
        logger_cfg: ``logger`` group node or None.
        callbacks_cfg: ``callbacks`` group node (name -> Lightning callback node) or None.

    Returns:
        Path of the cached checkpoint.
    """
    cache = Cache(cache_root)
    key = training_key(store_key, model_cfg, trainer_cfg, loader_cfg, seed, callbacks_cfg)
    if cache.exists("train", key):
        return cache.path("train", key) / "model.ckpt"
    # Lightning is loaded only when an encoder is trained (a cached checkpoint needs none).
    from aurora.data.datamodule import LoaderConfig
    from aurora.training.fit import fit_model
    from aurora.training.trainer import instantiate_callbacks

    with cache.writing("train", key) as tmp:
        result = fit_model(
            images,
            model_cfg,
            trainer_cfg,
            log_dir,
            logger_cfg=logger_cfg,
            loader=LoaderConfig(**loader_cfg),
            seed=seed,
            callbacks=instantiate_callbacks(callbacks_cfg),
        )
        best = result.best_ckpt or result.last_ckpt
        if not best:
            raise RunError(f"training in {log_dir} wrote no checkpoint")
        link_or_copy(best, tmp / "model.ckpt")  # one copy on disk: a hard link when it can
    return cache.path("train", key) / "model.ckpt"


def _train_planned(
    settings: RunSettings, plan: ExtractorPlan, store: PreprocessedStore, run_dir: Path
) -> Path:
    """The checkpoint of the encoder ``plan`` trains first, trained on ``store`` (or cached)."""
    if plan.trains is None:
        raise ValueError(f"extractor {plan.name!r} is not trained first")
    train = settings.train
    with stage("train") as st:
        ckpt = train_encoder_cached(
            store.images,
            store.key,
            train.models[plan.trains],
            train.trainer,
            train.loader,
            seed=settings.seed,
            cache_root=settings.cache_dir,
            log_dir=run_dir / "train" / plan.name,
            logger_cfg=train.logger,
            callbacks_cfg=train.callbacks,
        )
        st["msg"] = f"{plan.name}: {len(store)} images -> {ckpt}"
    return ckpt


def extract_all(
    settings: RunSettings,
    stores: StoreSet,
    run_dir: Path,
    names: Sequence[str],
    on_accepted: Callable[[int], None] | None = None,
    node_key: Mapping[str, str] | None = None,
    built: tuple[dict[str, tuple[dict[str, Any], Any]], dict[str, str]] | None = None,
) -> tuple[dict[str, ExtractedFeatures], dict[str, str]]:
    """Features for each named extractor (training our own encoders when needed).

    Every extractor that needs no training is built first, so missing ImageNet weights stop
    (or are skipped) before any image is preprocessed or any network trained.

    Args:
        settings: the run's settings (``extractors``, ``train``, ``extract``, ...).
        stores: preprocessed stores of the data set.
        run_dir: run directory (training logs go under ``run_dir/train/<name>``).
        names: extractor names (keys of ``settings.extractors``) to compute.
        on_accepted: called once with the number of accepted images of the first store,
            before any training or extraction (the settings checks against the data).
        node_key: extractor name -> the config key users set it under, for messages
            (default ``extractors.<name>``; a sweep job's is ``extractor``).
        built: what :func:`build_extractors` returned for ``names``, when the caller built
            them already (None: built here).

    Returns:
        Features per extractor (each in its own store's order, ``images`` unset), and
        extractors skipped (name -> one-line reason).
    """
    from aurora.extractors import build_extractor, extract_features

    out: dict[str, ExtractedFeatures] = {}
    specs, skipped = built if built is not None else build_extractors(settings, names, node_key)
    pending = on_accepted

    def data_checks(store: PreprocessedStore) -> None:
        """The settings checks against the data: once, before the first training/extraction."""
        nonlocal pending
        if pending is not None:
            pending(len(store))
            pending = None

    extract = settings.extract
    for name, (params, extractor) in specs.items():
        plan = settings.plans[name]
        variant = plan.preprocess
        if extractor is None:  # an encoder of ours, trained first (on the plan's store)
            store = stores.get(variant, plan.size)
            data_checks(store)
            params["ckpt_path"] = str(_train_planned(settings, plan, store, run_dir))
            extractor = build_extractor(params)
        store = stores.get(variant, int(extractor.input_size))
        data_checks(store)
        with stage("extract") as st:
            fs = extract_features(
                store,
                extractor,
                settings.cache_dir,
                batch_size=extract.batch_size,
                num_workers=extract.num_workers,
                device=extract.device,
            )
            st["msg"] = f"{name}: {fs.features.shape[0]} x {fs.features.shape[1]} features"
        random_init = bool(fs.provenance.get("random_init", False))
        if random_init:
            log.warning("extractor %s uses RANDOM weights (pretrained=false)", name)
        out[name] = ExtractedFeatures(
            name,
            fs.features,
            fs.key,
            list(fs.ids),
            random_init,
            store,
            variant,
            params,
            extractor.identity(),
            extractor,
        )
    return out, skipped


def unavailable_note(message: str, key: str) -> str:
    """Why an extractor without its weights was left out, and how to use it, in one line.

    Args:
        message: the :class:`~aurora.models.weights.WeightsUnavailableError` message (its first
            sentence says what was tried: "... are not available: WHY.").
        key: the extractor's config key (``extractors.resnet50``).
    """
    first = " ".join(message.split()).split(". ")[0].rstrip(".")
    why = first.split(" are not available: ", 1)[-1]
    return (
        f"its ImageNet weights are not on this machine ({why}); to use it, set "
        f"{key}.weights=PATH to a local weights file (README: Extractor weights)"
    )


def build_extractors(
    settings: RunSettings, names: Sequence[str], node_key: Mapping[str, str] | None = None
) -> tuple[dict[str, tuple[dict[str, Any], Any]], dict[str, str]]:
    """Every named extractor that needs no training, built (weights loaded); before any work.

    Args:
        settings: the run's settings.
        names: extractor names (keys of ``settings.extractors``).
        node_key: extractor name -> the config key users set it under, for messages.

    Returns:
        name -> (its node, the extractor or None when an encoder must be trained first), and
        the extractors skipped for missing weights (name -> one-line reason).

    Raises:
        RunError: an extractor needs a checkpoint and names no model to train, or its
            weights are missing and ``skip_unavailable_extractors`` is false.
    """
    # torch is loaded when features are extracted, not when cluster.py starts (a settings
    # error is reported in one line without it).
    from aurora.extractors import build_extractor
    from aurora.models.weights import WeightsUnavailableError

    skipped: dict[str, str] = {}
    specs: dict[str, tuple[dict[str, Any], Any]] = {}
    for name in names:
        plan = settings.plans[name]
        params = dict(plan.node)
        key = (node_key or {}).get(name, f"extractors.{name}")
        extractor = None
        if plan.trains is not None:
            if plan.trains not in settings.train.models:
                raise RunError(
                    f"extractor {name!r} needs a checkpoint: set extractors.{name}.ckpt_path=... "
                    f"or extractors.{name}.train to one of {sorted(settings.train.models)}"
                )
        else:
            if params.get("weights") == UNSET:  # an entry made for a local file (mobilenet_v2_tf)
                raise RunError(
                    f"{key}.weights is not set: extractor {name!r} needs its weights file "
                    f"(add {key}.weights=PATH to the command)"
                )
            try:
                extractor = build_extractor(params)
            except WeightsUnavailableError as err:
                if not settings.skip_unavailable_extractors:
                    raise RunError(
                        f"{err} (in this run the key is {key}.weights; or leave the extractor "
                        "out with grid.extractors, or set skip_unavailable_extractors=true)"
                    ) from err
                # A choice the run was allowed to make (experiment=demo): a note, not a warning.
                skipped[name] = unavailable_note(str(err), key)
                log.info("note: %s not used: %s", name, skipped[name])
                continue
        specs[name] = (params, extractor)
    return specs, skipped
