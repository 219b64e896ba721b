"""What the estimate needs of each extractor and reducer: input size, feature dimension, network
size, output dimension, from the configuration and the tables below (no network is built)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aurora.run.extractor_plan import ExtractorPlan
from aurora.run.settings import RunSettings

#: Feature dimension of a backbone (timm name): its pooled features (``num_classes=0``).
FEATURE_DIMS = {
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "inception_v3": 2048,
    "mobilenetv2_100": 1280,
    "efficientnet_b0": 1280,
    "densenet121": 1024,
    "convnext_tiny": 768,
}
#: An unknown network's dimension: 2048, as large as any configured one (an upper bound).
FALLBACK_DIM = 2048
#: Parameters of a backbone without its classifier (timm's figures, rounded up).
PARAMS = {
    "resnet18": 11_200_000,
    "resnet34": 21_300_000,
    "resnet50": 23_600_000,
    "inception_v3": 21_800_000,
    "mobilenetv2_100": 2_300_000,
    "efficientnet_b0": 4_100_000,
    "densenet121": 7_000_000,
    "convnext_tiny": 27_900_000,
}
FALLBACK_PARAMS = 30_000_000
#: Training activations kept for the backward pass, bytes per input pixel per image, float32
#: (rough figures: ResNet-50 about 150 MB per 224-px image, ResNet-18 about 40 MB).
TRAIN_ACTIVATION_BYTES_PER_PIXEL = {
    "resnet18": 800,
    "resnet34": 1200,
    "resnet50": 3000,
    "mobilenetv2_100": 1600,
    "inception_v3": 1700,
    "autoencoder": 800,
}
FALLBACK_TRAIN_ACTIVATION = 3000


@dataclass(frozen=True)
class ExtractorFigures:
    """What the estimate needs of one extractor: its plan (store, training) and sizes.

    Attributes:
        plan: the extractor's plan (``settings.plans[name]``).
        dim: feature dimension D.
        params: parameters of its network.
        activation: training activation bytes per input pixel.
        trains: the model (key of ``models``) trained first, or None (none, or not configured:
            the run stops on that before the estimate).
    """

    plan: ExtractorPlan
    dim: int
    params: int
    activation: int
    trains: str | None

    @property
    def name(self) -> str:
        """The extractor's name."""
        return self.plan.name

    @property
    def store(self) -> tuple[str, int]:
        """(preprocess variant, side in px) of the store it reads."""
        return self.plan.preprocess, self.plan.size


def _autoencoder_params(node: Mapping[str, Any], size: int) -> int:
    """Parameters of :class:`aurora.models.AutoEncoder` from its node (convs and two linears)."""
    depth, width = int(node.get("depth", 4)), int(node.get("width", 32))
    max_width, latent = int(node.get("max_width", 256)), int(node.get("latent_dim", 128))
    chans = [min(width * 2**i, max_width) for i in range(depth)]
    total, c_in = 0, 3
    for c in chans:
        total += 9 * c_in * c + 9 * c * c
        c_in = c
    rev = chans[::-1]
    for i, c in enumerate(rev):
        c_out = rev[i + 1] if i + 1 < len(rev) else width
        total += 16 * c * c_out + 9 * c_out * c_out
    flat = chans[-1] * max(1, size // 2**depth) ** 2
    return total + 2 * flat * latent + 9 * width * 3


def _model_figures(model: Mapping[str, Any], size: int) -> tuple[int, int, int]:
    """(feature dim, parameters, training activation bytes per pixel) of a ``models.<name>``
    (a model of unknown kind, or none (``{}``): the fallbacks, upper bounds)."""
    if "latent_dim" in model:  # the autoencoder: its bottleneck
        return (
            int(model["latent_dim"]),
            _autoencoder_params(model, size),
            TRAIN_ACTIVATION_BYTES_PER_PIXEL["autoencoder"],
        )
    backbone = str(model.get("backbone", ""))
    if backbone:  # SimCLR: the backbone's pooled features, plus the projection head
        dim = FEATURE_DIMS.get(backbone, FALLBACK_DIM)
        hidden, proj = int(model.get("proj_hidden_dim", 512)), int(model.get("proj_dim", 128))
        params = PARAMS.get(backbone, FALLBACK_PARAMS) + dim * hidden + hidden * proj
        act = 2 * TRAIN_ACTIVATION_BYTES_PER_PIXEL.get(backbone, FALLBACK_TRAIN_ACTIVATION)
        return dim, params, act  # two views of every image
    return FALLBACK_DIM, FALLBACK_PARAMS, FALLBACK_TRAIN_ACTIVATION


def describe_extractor(settings: RunSettings, name: str) -> ExtractorFigures:
    """The store, feature dimension and network size of extractor ``name``.

    The store is the extractor's plan's (:class:`~aurora.run.extractor_plan.ExtractorPlan`:
    for a checkpoint made elsewhere, ``train.image_size``, the size ours are trained at).
    Dimensions and parameters come from the tables above (:data:`FEATURE_DIMS`,
    :data:`PARAMS`) or the model's node.
    """
    plan = settings.plans[name]
    if plan.timm_model is not None:
        model_name = plan.timm_model
        return ExtractorFigures(
            plan,
            FEATURE_DIMS.get(model_name, FALLBACK_DIM),
            PARAMS.get(model_name, FALLBACK_PARAMS),
            TRAIN_ACTIVATION_BYTES_PER_PIXEL.get(model_name, FALLBACK_TRAIN_ACTIVATION),
            None,
        )
    model = settings.train.models.get(str(plan.model))
    dim, params, act = _model_figures(model or {}, plan.size)
    trains = plan.trains if model is not None else None
    return ExtractorFigures(plan, dim, params, act, trains)


def reduced_dim(reducer: Mapping[str, Any], dim: int) -> int:
    """Output dimension of a reducer node on ``dim``-d features.

    ``n_components`` an integer: that many (at most ``dim``); a fraction of the variance
    (``0.8``) or ``variance`` (VarianceMatchedUMAP): ``ceil(fraction * dim)``, which is what
    features with evenly spread variance need (bench_scale's 512-d mixture: 350 at 0.8, this
    gives 410; network features concentrate their variance and need fewer); none: ``dim``
    (the identity), except UMAP's default of 2.
    """
    comps = reducer.get("n_components")
    if comps is None and "variance" in reducer:
        comps = float(reducer["variance"])
        cap = reducer.get("max_components")
        d = math.ceil(comps * dim)
        return max(1, min(d, int(cap) if cap else d, dim))
    if comps is None:
        return 2 if "umap" in str(reducer.get("_target_", "")).lower() else dim
    if isinstance(comps, float) and 0 < comps < 1:
        return max(1, min(dim, math.ceil(comps * dim)))
    return max(1, min(dim, int(comps)))
