"""Encoders trained here (autoencoder bottleneck, SimCLR backbone) as feature extractors.

The identity's ``state_sha256`` is the hash of the weights the encoder holds once they are loaded
(:func:`~aurora.models.weights.state_dict_sha256`), which the feature cache trusts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from aurora.extractors.feature_keys import LOADED_WEIGHTS_KEY
from aurora.infra.cache import file_sha256
from aurora.models.weights import state_dict_sha256


class CheckpointExtractor(nn.Module):
    """Features from a checkpoint written by ``python train.py model=autoencoder|simclr``.

    The module comes from :func:`aurora.models.load_encoder`; its ``encode`` takes images in
    [0, 1] and does its own normalisation, so this wrapper only resizes to the trained size.

    Args:
        ckpt_path: the Lightning ``.ckpt`` file.
        dihedral: average the features of the 8 rotations by multiples of 90 degrees and their
            mirrors of each image (exact on the pixel grid, 8x the extraction work). Meant for
            encoders trained to be invariant to rotations and mirrors (our SimCLR): the average
            removes what is left of the orientation from the features.
        preprocess: the preprocessing variant these features want (a key of the run's
            ``preprocess``); stored, not part of :meth:`identity`.
        train: the model (a key of the run's ``models``) trained for this extractor when
            ``ckpt_path`` is unset; None = the model named like the extractor. Stored as
            ``train_model`` (``train`` is :class:`torch.nn.Module`'s), not part of
            :meth:`identity`.
        input_size: side in px the images are resized to before encoding; None = the size the
            encoder was trained at. A convolutional encoder pools over any size: SimCLR trained
            on 128 px views may see more of the sky's forms at 224 px (BENCHMARKS.md, issue 28).

    Raises:
        aurora.models.CheckpointError: missing, unreadable or foreign checkpoint.
    """

    def __init__(
        self,
        ckpt_path: str,
        dihedral: bool = False,
        preprocess: str = "full",
        train: str | None = None,
        input_size: int | None = None,
    ) -> None:
        super().__init__()
        from aurora.models import CheckpointError, load_encoder

        if input_size is not None and (
            isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 8
        ):
            raise CheckpointError(
                f"extractor input_size must be null or an integer >= 8, got {input_size!r}"
            )

        path = Path(ckpt_path).expanduser()
        if not path.is_file():
            raise CheckpointError(
                f"checkpoint not found: {path}; train one with "
                f"`python train.py model=autoencoder` (or model=simclr) and set "
                f"extractor.ckpt_path to the written .ckpt file"
            )
        module, info = load_encoder(path)
        self._attach(module, info, str(ckpt_path), file_sha256(path), dihedral, input_size)
        self.preprocess = preprocess
        self.train_model = train

    def _attach(
        self,
        module: nn.Module,
        info: Mapping[str, Any],
        ckpt_path: str | None,
        ckpt_sha256: str | None,
        dihedral: bool,
        input_size: int | None = None,
    ) -> None:
        self.dihedral = bool(dihedral)
        self.ckpt_path = ckpt_path
        self.preprocess = "full"
        self.train_model: str | None = None
        self.encoder = module.eval().requires_grad_(False)
        self.info = dict(info)
        self.input_size = int(input_size or info["image_size"])
        self.num_features = int(info["feature_dim"])
        self.ckpt_sha256 = ckpt_sha256
        self.state_sha256 = self.rehash_weights()

    def rehash_weights(self) -> str:
        """Hash the weights the encoder holds now (after any load) for :meth:`identity`."""
        self.state_sha256 = state_dict_sha256(self.state_dict())
        return self.state_sha256

    #: Identity fields that say where the weights came from, not what the network computes
    #: (a rebuilt encoder's ``state_sha256`` is hashed again from the weights it loaded).
    WEIGHT_SOURCE_KEYS: tuple[str, ...] = ("ckpt_sha256", LOADED_WEIGHTS_KEY)

    def export_params(self) -> dict[str, Any]:
        """Plain constructor arguments that rebuild this encoder without its weights.

        :meth:`from_export` of these, then the weights of :meth:`state_dict`, is this
        extractor again (how a saved solution carries it: JSON and safetensors, no code).
        """
        params = {
            "model_class": self.info.get("model_class"),
            "hparams": self.info.get("hparams", {}),
            "feature_dim": self.num_features,
            "dihedral": self.dihedral,
        }
        if self.input_size != int(self.info["image_size"]):
            params["input_size"] = self.input_size
        return params

    @classmethod
    def from_export(cls, params: Mapping[str, Any]) -> CheckpointExtractor:
        """The encoder of :meth:`export_params`, untrained (load weights next).

        Raises:
            aurora.models.CheckpointError: the class is not one of aurora's feature modules.
        """
        from aurora.models import build_encoder

        hparams = dict(params["hparams"])
        module = build_encoder(str(params["model_class"]), hparams, source="solution")
        info = {
            "model_class": params["model_class"],
            "hparams": hparams,
            "image_size": int(hparams["image_size"]),
            "feature_dim": int(params["feature_dim"]),
        }
        obj = cls.__new__(cls)
        nn.Module.__init__(obj)
        dihedral, size = bool(params.get("dihedral", False)), params.get("input_size")
        obj._attach(module, info, None, None, dihedral, None if size is None else int(size))
        return obj

    def identity(self) -> dict[str, Any]:
        """Everything that defines the features: the weights loaded (``state_sha256``, hashed
        here), the checkpoint file they came from and the architecture."""
        identity = {
            "kind": "checkpoint",
            "model_class": self.info.get("model_class"),
            "ckpt_sha256": self.ckpt_sha256,
            LOADED_WEIGHTS_KEY: self.state_sha256,
            "input_size": self.input_size,
            "num_features": self.num_features,
            "hparams": self.info.get("hparams", {}),
        }
        if self.dihedral:  # only when on, so that caches of single-view features stay valid
            identity["dihedral"] = True
        return identity

    def provenance(self) -> dict[str, Any]:
        """Where the weights came from (recorded next to the features, not hashed)."""
        return {
            "ckpt_path": str(self.ckpt_path),
            "epoch": self.info.get("epoch"),
            "global_step": self.info.get("global_step"),
            "random_init": False,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Resize to ``input_size`` and encode (the mean over the 8 dihedral views if asked).

        Args:
            x: (B, 3, H, W) float images in [0, 1].

        Returns:
            (B, num_features) float features.
        """
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(
                x,
                size=(self.input_size, self.input_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            ).clamp_(0.0, 1.0)
        if not self.dihedral:
            return self.encoder.encode(x)
        # One view at a time: the memory of a batch stays that of one view.
        total = torch.zeros(())
        for view in (x, x.flip(-1)):
            for k in range(4):
                total = total + self.encoder.encode(torch.rot90(view, k, dims=(-2, -1)))
        return total / 8
