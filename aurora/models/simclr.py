"""SimCLR over a timm backbone; the feature is the backbone's pooled output."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from aurora.infra.errors import AuroraError
from aurora.models.augment import SkyAugment
from aurora.models.base import FeatureModule
from aurora.models.losses import NTXentLoss, pair_similarities


class BackboneError(AuroraError):
    """A timm backbone could not be built (unknown name or unavailable pretrained weights)."""


def create_backbone(
    name: str,
    pretrained: bool,
    pretrained_file: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    pretrained_cfg_overlay: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Build a timm model without classifier (``num_classes=0``: output = pooled features).

    Args:
        name: timm model name, e.g. ``resnet18``.
        pretrained: load pretrained weights (from ``pretrained_file``, else the hub).
        pretrained_file: local weights file (``.safetensors``/``.pth`` state dict), loaded with
            strict keys (a classifier in the file is ignored); used only with ``pretrained``.
        model_kwargs: extra ``timm.create_model`` arguments, e.g. ``{"pad_type": "same"}`` for
            TensorFlow-trained weights.
        pretrained_cfg_overlay: fields replacing timm's pretrained config (``mean``, ``std``):
            the normalisation :class:`SimCLR` applies is read from the overlaid config.

    Returns:
        The backbone module; ``backbone.num_features`` is the feature size.

    Raises:
        BackboneError: unknown model name, bad ``model_kwargs``/overlay, pretrained weights
            that cannot be obtained, or a weights file that does not fit the network.
    """
    from aurora.models.timm_config import (
        ExtractorConfigError,
        check_model_kwargs,
        check_pretrained_cfg_overlay,
        timm_value,
    )
    from aurora.models.weights import WeightsMismatchError, load_timm_weights

    if not timm.is_model(name):
        raise BackboneError(f"unknown timm backbone '{name}' (see timm.list_models())")
    try:
        extra = check_model_kwargs(name, model_kwargs or {})
        overlay = check_pretrained_cfg_overlay(name, pretrained_cfg_overlay or {})
    except ExtractorConfigError as err:
        raise BackboneError(str(err).replace("extractor.", "model.")) from err
    kwargs: dict[str, Any] = {**timm_value(extra), "num_classes": 0}
    if overlay:
        kwargs["pretrained_cfg_overlay"] = timm_value(overlay)
    from_hub = pretrained and not pretrained_file
    try:
        model = timm.create_model(name, pretrained=from_hub, **kwargs)
    except Exception as err:  # hub/network/file errors come in many types
        if not from_hub:
            raise BackboneError(f"could not build timm backbone '{name}': {err}") from err
        raise BackboneError(
            f"could not load pretrained weights for timm backbone '{name}' ({err}). "
            f"Without network access, download the weights elsewhere and set "
            f"model.pretrained_file=/path/to/{name}.safetensors, or use model.pretrained=false."
        ) from err
    if pretrained and pretrained_file:
        if not Path(pretrained_file).is_file():
            raise BackboneError(
                f"timm backbone '{name}': model.pretrained_file {pretrained_file} does not exist"
            )
        try:
            load_timm_weights(model, pretrained_file, name)
        except WeightsMismatchError as err:
            raise BackboneError(f"timm backbone '{name}': model.pretrained_file: {err}") from err
    return model


def freeze_batch_norm(module: nn.Module) -> int:
    """Put every batch-norm layer of ``module`` in eval mode (running statistics kept).

    Returns:
        The number of batch-norm layers frozen.
    """
    frozen = 0
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            frozen += 1
    return frozen


def freeze_parameters(module: nn.Module, prefixes: Sequence[str]) -> int:
    """Stop gradients to the parameters of ``module`` under the given name prefixes.

    Args:
        module: e.g. a timm backbone.
        prefixes: dotted module names, e.g. ``["conv_stem", "bn1", "blocks.0"]``; each must name
            at least one parameter (a prefix ``blocks.1`` names ``blocks.1.*``, not ``blocks.10``).

    Returns:
        The number of parameter tensors frozen.

    Raises:
        BackboneError: a prefix that names no parameter.
    """
    names = [n for n, _ in module.named_parameters()]
    frozen = 0
    for prefix in prefixes:
        hits = [n for n in names if n == prefix or n.startswith(f"{prefix}.")]
        if not hits:
            tops = sorted({n.split(".")[0] for n in names})
            raise BackboneError(
                f"model.frozen: '{prefix}' names no parameter of the backbone "
                f"(its top-level modules: {', '.join(tops)})"
            )
        for n, p in module.named_parameters():
            if n in hits and p.requires_grad:
                p.requires_grad_(False)
                frozen += 1
    return frozen


class SimCLR(FeatureModule):
    """SimCLR: two all-sky views per image, timm backbone, MLP projection head, NT-Xent.

    Args:
        image_size: side S of the square training images (recorded for extraction).
        backbone: timm model name.
        pretrained: start from pretrained weights.
        pretrained_file: local weights file for ``pretrained`` (strict keys).
        model_kwargs: extra ``timm.create_model`` arguments (``{"pad_type": "same"}`` for
            TensorFlow-trained weights).
        pretrained_cfg_overlay: fields replacing timm's pretrained config; its ``mean`` and
            ``std`` are the input normalisation (0.5, 0.5 for TF weights: inputs in [-1, 1]).
        freeze_bn: keep the backbone's batch-norm layers in eval mode while training (their
            running statistics stay those of the initialisation; scales and shifts still learn).
        frozen: backbone parameters that do not train, as dotted name prefixes (e.g. the early
            blocks of an ImageNet start: ``["conv_stem", "bn1", "blocks.0", "blocks.1"]``).
        proj_hidden_dim: hidden width of the projection head.
        proj_dim: output size of the projection head.
        temperature: NT-Xent temperature.
        gather_distributed: under DDP, contrast each rank's views against the projections of
            all ranks (the objective of one process with the global batch); off, each rank
            contrasts within its own batch only.
        lr: peak AdamW learning rate.
        weight_decay: AdamW weight decay (not applied to biases and norm scales).
        warmup_fraction: fraction of all steps spent in linear warm-up.
        min_lr_ratio: final learning rate of the cosine, relative to ``lr``.
        augment: :class:`~aurora.models.augment.AugmentConfig` fields.
        seed: seed of the per-step augmentation generator.
        grid_images: number of view pairs in the logged grid.
    """

    def __init__(
        self,
        image_size: int = 96,
        backbone: str = "resnet18",
        pretrained: bool = False,
        pretrained_file: str | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        pretrained_cfg_overlay: Mapping[str, Any] | None = None,
        freeze_bn: bool = False,
        frozen: Sequence[str] = (),
        proj_hidden_dim: int = 512,
        proj_dim: int = 128,
        temperature: float = 0.1,
        gather_distributed: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        warmup_fraction: float = 0.05,
        min_lr_ratio: float = 0.01,
        augment: Mapping[str, Any] | None = None,
        seed: int = 0,
        grid_images: int = 8,
    ) -> None:
        super().__init__()
        augment = dict(augment) if augment is not None else {}
        self.save_hyperparameters(
            {
                "image_size": image_size,
                "backbone": backbone,
                "pretrained": pretrained,
                "pretrained_file": pretrained_file,
                "model_kwargs": dict(model_kwargs) if model_kwargs else None,
                "pretrained_cfg_overlay": (
                    dict(pretrained_cfg_overlay) if pretrained_cfg_overlay else None
                ),
                "freeze_bn": bool(freeze_bn),
                "frozen": [str(f) for f in frozen],
                "proj_hidden_dim": proj_hidden_dim,
                "proj_dim": proj_dim,
                "temperature": temperature,
                "gather_distributed": gather_distributed,
                "lr": lr,
                "weight_decay": weight_decay,
                "warmup_fraction": warmup_fraction,
                "min_lr_ratio": min_lr_ratio,
                "augment": augment,
                "seed": seed,
                "grid_images": grid_images,
            }
        )
        self.backbone = create_backbone(
            backbone, pretrained, pretrained_file, model_kwargs, pretrained_cfg_overlay
        )
        freeze_parameters(self.backbone, frozen)
        self.feature_dim = int(self.backbone.num_features)
        self.projector = nn.Sequential(
            nn.Linear(self.feature_dim, proj_hidden_dim),
            nn.BatchNorm1d(proj_hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(proj_hidden_dim, proj_dim),
        )
        self.criterion = NTXentLoss(temperature, gather_distributed)
        self.augment = SkyAugment(**augment)
        data_cfg = timm.data.resolve_data_config({}, model=self.backbone)
        self.register_buffer(
            "mean", torch.tensor(data_cfg["mean"]).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(data_cfg["std"]).view(1, 3, 1, 1), persistent=False
        )
        self._grid_batch: torch.Tensor | None = None

    def train(self, mode: bool = True) -> SimCLR:
        """Lightning's train/eval switch; with ``freeze_bn`` the backbone's norms stay in eval."""
        super().train(mode)
        if mode and self.hparams.get("freeze_bn", False):
            freeze_batch_norm(self.backbone)
        return self

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Lightning restores each submodule's recorded mode after validation, bypassing train().
        if self.hparams.get("freeze_bn", False):
            freeze_batch_norm(self.backbone)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (not the projection).

        Args:
            x: images (B, 3, H, W) in [0, 1]; H = W = ``image_size`` as trained.

        Returns:
            Features (B, feature_dim).
        """
        return self.backbone(self._prep((x - self.mean) / self.std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Projections (B, proj_dim) of images (B, 3, H, W) in [0, 1]."""
        return self.projector(self.encode(x))

    accepts_pairs = True

    def _shared_step(self, x: torch.Tensor, stage: str, step: int) -> torch.Tensor:
        """NT-Xent of one batch: (B, 3, S, S) images, or (B, 2, 3, S, S) temporal pairs whose
        first and second images give the first and second views."""
        gen = self.view_generator(stage, step)
        first, second = (x[:, 0], x[:, 1]) if x.ndim == 5 else (x, x)
        v1 = self.augment(first, gen)
        v2 = self.augment(second, gen)
        z = self(torch.cat([v1, v2]))
        z1, z2 = z.chunk(2)
        loss = self.criterion(z1, z2)
        pos, neg = pair_similarities(z1.detach(), z2.detach())
        on_step = stage == "train"
        kw = {"on_step": on_step, "on_epoch": not on_step, "batch_size": len(first)}
        self.log(f"{stage}/loss", loss, prog_bar=True, **kw)
        self.log(f"{stage}/pos_sim", pos, **kw)
        self.log(f"{stage}/neg_sim", neg, **kw)
        if stage == "val" and step == 0:
            n = self.hparams.grid_images
            self._grid_batch = torch.cat([v1[:n], v2[:n]])
        return loss

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self._shared_step(batch, "train", self.global_step)
        self.log_lr()
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor | None:
        if len(batch) < 2:  # a last batch of one image has no negatives
            return None
        return self._shared_step(batch, "val", batch_idx)

    def on_validation_epoch_end(self) -> None:
        if self._grid_batch is not None:
            n = len(self._grid_batch) // 2
            # Top row first views, bottom row second views of the same images.
            self.log_image_grid("val/view_pairs", self._grid_batch, nrow=n)
            self._grid_batch = None
