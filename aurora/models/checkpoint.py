"""Rebuild a trained encoder from its Lightning checkpoint alone."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from aurora.infra.errors import AuroraError
from aurora.models.base import FeatureModule


class CheckpointError(AuroraError, ValueError):
    """A checkpoint that is missing, unreadable or not written by an aurora feature module."""


def load_encoder(ckpt_path: str | Path) -> tuple[FeatureModule, dict[str, Any]]:
    """Load a trained autoencoder or SimCLR module for feature extraction.

    Only the checkpoint is needed: it stores the module class and every constructor argument
    (``save_hyperparameters``). Pretrained weights are never fetched again (the trained
    weights replace them).

    Args:
        ckpt_path: a ``.ckpt`` file written by ``train.py``.

    Returns:
        (module in eval mode on the CPU, whose ``encode((B, 3, S, S) in [0, 1]) -> (B, D)``
        gives features; info dict with ``model_class``, ``feature_dim``, ``image_size``,
        ``epoch``, ``global_step``, ``hparams``).

    Raises:
        CheckpointError: missing file, unreadable file, or not an aurora feature checkpoint.
    """
    path = Path(ckpt_path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
    cls_path = ckpt.get("aurora_model_class") if isinstance(ckpt, dict) else None
    if not cls_path or "hyper_parameters" not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a checkpoint of an aurora feature model")
    hparams = dict(ckpt["hyper_parameters"])
    model = build_encoder(cls_path, hparams, source=str(path))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    info = {
        "model_class": cls_path,
        "feature_dim": int(ckpt.get("aurora_feature_dim", model.feature_dim)),
        "image_size": int(hparams["image_size"]),
        "epoch": int(ckpt.get("epoch", -1)),
        "global_step": int(ckpt.get("global_step", -1)),
        "hparams": hparams,
    }
    return model, info


def build_encoder(cls_path: str, hparams: dict[str, Any], source: str = "") -> FeatureModule:
    """An untrained feature module of one of aurora's own classes (weights loaded by the caller).

    Args:
        cls_path: dotted class name; must be a :class:`FeatureModule` in ``aurora.models``.
        hparams: constructor arguments (``pretrained`` is forced off: the caller's weights
            replace any).
        source: what named the class (for messages).

    Raises:
        CheckpointError: the class is not one of aurora's feature modules, or the arguments do
            not fit it.
    """
    module_name, _, cls_name = str(cls_path).rpartition(".")
    if module_name != "aurora.models" and not module_name.startswith("aurora.models."):
        raise CheckpointError(f"{source} names a model class outside aurora.models: {cls_path}")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as err:
        raise CheckpointError(f"{source} names an unknown model class {cls_path}") from err
    if not (isinstance(cls, type) and issubclass(cls, FeatureModule)):
        raise CheckpointError(f"{source}: {cls_path} is not an aurora feature module")
    build = dict(hparams)
    if "pretrained" in build:
        build["pretrained"] = False
    try:
        return cls(**build)
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"{source}: cannot build {cls_path} from its arguments: {err}"
        ) from err
