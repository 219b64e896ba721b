"""One frozen plan per configured extractor: the preprocessed store it reads (variant and side),
whether an encoder of ours is trained first, and the checkpoint it names.

Made once from the config with the rest of the settings (:mod:`aurora.run.settings`) and read
by the feature stage (:mod:`aurora.run.features`), ``mode=prepare`` (:mod:`aurora.run.prepare`)
and the budget (:mod:`aurora.run.budget`), so the three make the same decisions. Nothing here
builds a network or imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aurora.infra.config import UNSET

#: Input side of the timm models whose pretrained config is not at the default (224 px); the
#: side is timm's pretrained config after ``pretrained_cfg_overlay``, known here without timm.
TIMM_INPUT_SIZE = {"inception_v3": 299}
DEFAULT_TIMM_INPUT_SIZE = 224


@dataclass(frozen=True)
class ExtractorPlan:
    """What the run decides of one extractor before building it.

    Attributes:
        name: the extractor's name (key of ``extractors``).
        node: its ``extractors.<name>`` node (read only; an unset ``ckpt_path`` reads ``"???"``).
        preprocess: the preprocessing variant it reads (key of ``preprocess``; ``full`` when
            the node names none).
        size: side in px of the store it reads: ``train.image_size`` for an encoder trained
            here; a timm network's ``input_size``, else its overlay's, else timm's default
            (:data:`TIMM_INPUT_SIZE`); a checkpoint's ``train.image_size`` (the size ours are
            trained at). Once built, a network's own ``input_size`` decides the store it is
            extracted from (the same for every configured extractor; a checkpoint made
            elsewhere, or a timm model whose default is not in the table, may differ: the
            budget then estimates with this size).
        model: the model of ours it encodes with (key of ``models``: the node's ``train``,
            else the extractor's name), or None for a timm network.
        trains: the model trained first when the node has no checkpoint (``ckpt_path: ???``;
            ``model``), else None.
        ckpt_path: the checkpoint the node names, or None (none, or trained first).
        timm_model: the timm model name of an ImageNet network, or None (one of ours).
    """

    name: str
    node: Mapping[str, Any]
    preprocess: str
    size: int
    model: str | None
    trains: str | None
    ckpt_path: str | None
    timm_model: str | None


def _timm_size(node: Mapping[str, Any], model_name: str) -> int:
    """A timm network's input side from its node: ``input_size``, else the overlay's, else the
    model's default."""
    overlay = (node.get("pretrained_cfg_overlay") or {}).get("input_size")
    size = node.get("input_size") or (overlay[-1] if overlay else None)
    return int(size or TIMM_INPUT_SIZE.get(model_name, DEFAULT_TIMM_INPUT_SIZE))


def plan_extractor(name: str, node: Mapping[str, Any], *, image_size: int) -> ExtractorPlan:
    """The plan of extractor ``name`` from its node.

    Args:
        name: the extractor's name.
        node: the plain ``extractors.<name>`` node.
        image_size: ``train.image_size``, the side our encoders are trained at.
    """
    node = dict(node)
    preprocess = str(node.get("preprocess", "full"))
    ckpt = node.get("ckpt_path")
    trains = str(node.get("train") or name) if ckpt == UNSET else None
    timm_model = str(node["model_name"]) if "model_name" in node else None
    if trains is not None:  # the store it is trained on, at the size it is trained at
        size = int(image_size)
    elif timm_model is not None:
        size = _timm_size(node, timm_model)
    else:
        size = int(node.get("input_size") or image_size)
    return ExtractorPlan(
        name=name,
        node=node,
        preprocess=preprocess,
        size=size,
        model=None if timm_model else str(node.get("train") or name),
        trains=trains,
        ckpt_path=None if ckpt in (None, UNSET) else str(ckpt),
        timm_model=timm_model,
    )


def plan_extractors(
    extractors: Mapping[str, Mapping[str, Any]], *, image_size: int
) -> dict[str, ExtractorPlan]:
    """The plan of every extractor node (name -> plan), in the nodes' order."""
    return {n: plan_extractor(n, node, image_size=image_size) for n, node in extractors.items()}
