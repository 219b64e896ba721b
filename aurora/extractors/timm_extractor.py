"""ImageNet networks from timm as feature extractors (ResNet-50, Inception-v3, MobileNet-v2).

Weights are resolved once, in the constructor, before any image is touched, by
:func:`aurora.models.weights.resolve_weights`: a local ``weights=PATH`` file, else with
``pretrained=True`` the Hugging Face cache or timm's download, else
:class:`~aurora.models.weights.WeightsUnavailableError` saying how to supply them; random
weights only with an explicit ``pretrained=False``.

Weights that need another architecture variant or another normalisation than timm's default
tag are described the timm way: ``model_kwargs`` go to ``timm.create_model`` (e.g.
``{"pad_type": "same"}`` for TensorFlow-trained weights) and ``pretrained_cfg_overlay`` replaces
fields of the model's pretrained config (``mean``, ``std``, ``input_size``, ``interpolation``).
The preprocessing is then read back from the model's resolved config
(``timm.data.resolve_model_data_config``), so the overlay is what the network sees. Both are
part of the features' cache identity.

The identity's ``state_sha256`` is the hash of the weights the network holds once they are
loaded (:func:`~aurora.models.weights.state_dict_sha256`): the feature cache trusts it, not
the hash of a file or of a manifest that says where the weights came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from aurora.extractors.feature_keys import LOADED_WEIGHTS_KEY
from aurora.infra.cache import file_sha256
from aurora.models.timm_config import (
    ExtractorConfigError,
    UnknownModelError,
    check_model_kwargs,
    check_pretrained_cfg_overlay,
    timm_value,
)
from aurora.models.weights import (
    WeightsUnavailableError,
    cached_hub_file,
    load_timm_weights,
    resolve_weights,
    state_dict_sha256,
    weights_unavailable_message,
)


class _Creator:
    """``timm.create_model`` of one network with its checked ``model_kwargs`` and overlay.

    Args:
        model_name: timm model name.
        kwargs: checked ``model_kwargs`` (plain values).
        overlay: checked ``pretrained_cfg_overlay`` (plain values).
    """

    def __init__(self, model_name: str, kwargs: dict[str, Any], overlay: dict[str, Any]) -> None:
        self.model_name = model_name
        self.kwargs = kwargs
        self.create_kwargs: dict[str, Any] = {
            **timm_value(kwargs),
            "num_classes": 0,
            "pretrained_cfg_overlay": timm_value(overlay) or None,
        }

    def __call__(self, with_weights: bool) -> nn.Module:
        """The network, with timm's pretrained weights when ``with_weights``."""
        import timm

        try:
            return timm.create_model(self.model_name, pretrained=with_weights, **self.create_kwargs)
        except TypeError as err:
            if not self.kwargs:
                raise
            raise ExtractorConfigError(
                f"timm model '{self.model_name}' does not accept model_kwargs {self.kwargs}: {err}"
            ) from err


def _network_with_weights(
    create: _Creator, *, pretrained: bool, weights: str | None, seed: int
) -> tuple[nn.Module, str, str | None, str | None]:
    """Decide where the weights come from, then build the network holding them.

    A run that cannot get its weights stops here, before any network is built.

    Returns:
        (network, weights source kind, weights file or None, that file's sha256 or None).
    """
    from timm.models import get_pretrained_cfg

    model_name = create.model_name
    default_cfg = get_pretrained_cfg(model_name)
    hub_id = default_cfg.hf_hub_id if default_cfg is not None else None
    url = default_cfg.url if default_cfg is not None else None
    source = resolve_weights(model_name, pretrained, weights, hub_id, url)
    path: str | None = None
    sha: str | None = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # reproducible random initialisation
        model = create(False)
    if source.path is not None:
        load_timm_weights(model, source.path, model_name)
        path, sha = str(source.path), file_sha256(source.path)
    elif source.kind == "hub":
        try:
            model = create(True)
        except ExtractorConfigError:
            raise
        except Exception as err:
            raise WeightsUnavailableError(
                weights_unavailable_message(
                    model_name, hub_id, f"the download failed ({type(err).__name__})."
                )
            ) from err
        local = cached_hub_file(hub_id) if hub_id else None
        if local is not None:
            path, sha = str(local), file_sha256(local)
    return model, source.kind, path, sha


def _identity_cfg(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of timm's pretrained config that define the features, JSON-native.

    Lists, not tuples, so the identity round-trips through JSON.
    """
    keep = ("architecture", "tag", "hf_hub_id", "input_size", "interpolation", "mean", "std")
    return {k: list(cfg[k]) if isinstance(cfg.get(k), tuple) else cfg.get(k) for k in keep}


class TimmExtractor(nn.Module):
    """A timm ImageNet network with its classifier removed: images in, pooled features out.

    Args:
        model_name: timm model name (``resnet50``, ``inception_v3``, ``mobilenetv2_100``).
        pretrained: load ImageNet weights (see module docstring); ``False`` means random
            initialisation, seeded by ``seed`` so it is reproducible.
        weights: local weights file; implies pretrained weights and skips the hub.
        input_size: side in px fed to the network; default from the model's resolved
            pretrained config (after ``pretrained_cfg_overlay``).
        seed: seed of the random initialisation when ``pretrained=False``.
        model_kwargs: extra ``timm.create_model`` arguments (e.g. ``{"pad_type": "same"}``);
            part of :meth:`identity` when not empty.
        pretrained_cfg_overlay: fields replacing those of timm's pretrained config (``mean``,
            ``std``, ``input_size`` as ``[3, S, S]``, ``interpolation``, ...); the input size,
            interpolation and normalisation are resolved from the overlaid config. Part of
            :meth:`identity` when not empty. Weight sources (``file``, ``url``, ...) are not
            accepted here: a local file is ``weights``.
        preprocess: the preprocessing variant these features want (a key of the run's
            ``preprocess``; ImageNet networks normalise themselves: ``minimal``); stored, not
            part of :meth:`identity`.

    Raises:
        WeightsUnavailableError: pretrained weights asked for and not obtainable.
        WeightsMismatchError: ``weights`` file does not fit the architecture.
        ExtractorConfigError: ``model_kwargs`` or ``pretrained_cfg_overlay`` do not apply.
    """

    def __init__(
        self,
        model_name: str,
        pretrained: bool = True,
        weights: str | None = None,
        input_size: int | None = None,
        seed: int = 0,
        model_kwargs: Mapping[str, Any] | None = None,
        pretrained_cfg_overlay: Mapping[str, Any] | None = None,
        preprocess: str = "full",
    ) -> None:
        super().__init__()
        import timm
        from timm.data import resolve_model_data_config

        self.model_name = model_name
        self.pretrained = pretrained
        self.weights = weights
        self.seed = seed
        self.model_kwargs = model_kwargs
        self.pretrained_cfg_overlay = pretrained_cfg_overlay
        self.preprocess = preprocess

        if not timm.is_model(model_name):
            raise UnknownModelError(f"timm has no model named '{model_name}'")
        self.model_kwargs_ = check_model_kwargs(model_name, model_kwargs or {})
        self.pretrained_cfg_overlay_ = check_pretrained_cfg_overlay(
            model_name, pretrained_cfg_overlay or {}
        )
        create = _Creator(model_name, self.model_kwargs_, self.pretrained_cfg_overlay_)
        model, self.weights_source, self.weights_path, sha = _network_with_weights(
            create, pretrained=pretrained, weights=weights, seed=seed
        )
        cfg = dict(model.pretrained_cfg)
        if sha is None:
            sha = state_dict_sha256(model.state_dict())

        # The overlay is in model.pretrained_cfg, so this is the overlaid preprocessing.
        data_cfg = resolve_model_data_config(model)
        self.model = model.eval().requires_grad_(False)
        self.input_size = int(input_size or data_cfg["input_size"][-1])
        self.interpolation = str(data_cfg.get("interpolation", "bilinear"))
        if self.interpolation not in {"bilinear", "bicubic", "nearest"}:
            self.interpolation = "bilinear"
        self.num_features = int(model.num_features)
        self.weights_sha256 = sha
        self.pretrained_cfg = _identity_cfg(cfg)
        mean = torch.tensor(data_cfg["mean"], dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(data_cfg["std"], dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.state_sha256 = self.rehash_weights()

    def rehash_weights(self) -> str:
        """Hash the weights the network holds now (after any load) for :meth:`identity`."""
        self.state_sha256 = state_dict_sha256(self.state_dict())
        return self.state_sha256

    #: Identity fields that say where the weights came from, not what the network computes;
    #: a network rebuilt from a solution's weights file differs from the original only in these
    #: (its ``state_sha256`` is hashed again from the weights it loaded).
    WEIGHT_SOURCE_KEYS: tuple[str, ...] = ("pretrained", "weights_sha256", LOADED_WEIGHTS_KEY)

    def export_params(self) -> dict[str, Any]:
        """Plain constructor arguments that rebuild this network without its weights.

        :meth:`from_export` of these, then the weights of :meth:`state_dict`, is this
        extractor again (how a saved solution carries it: JSON and safetensors, no code).
        """
        return {
            "model_name": self.model_name,
            "input_size": self.input_size,
            "model_kwargs": self.model_kwargs_ or None,
            "pretrained_cfg_overlay": self.pretrained_cfg_overlay_ or None,
        }

    @classmethod
    def from_export(cls, params: Mapping[str, Any]) -> TimmExtractor:
        """The network of :meth:`export_params`, randomly initialised (load weights next)."""
        return cls(pretrained=False, weights=None, **params)

    def identity(self) -> dict[str, Any]:
        """Everything that defines the features (no runtime knobs).

        ``model_kwargs`` and ``pretrained_cfg_overlay`` appear only when set. ``state_sha256``
        is the hash of the weights loaded in the network, computed here
        (:meth:`rehash_weights`); ``weights_sha256`` is that of the file they came from.
        """
        extra: dict[str, Any] = {}
        if self.model_kwargs_:
            extra["model_kwargs"] = self.model_kwargs_
        if self.pretrained_cfg_overlay_:
            extra["pretrained_cfg_overlay"] = self.pretrained_cfg_overlay_
        return {
            "kind": "timm",
            "model_name": self.model_name,
            "pretrained": self.weights_source != "random",
            "weights_sha256": self.weights_sha256,
            LOADED_WEIGHTS_KEY: self.state_sha256,
            "input_size": self.input_size,
            "interpolation": self.interpolation,
            "mean": [float(v) for v in self.mean.flatten()],
            "std": [float(v) for v in self.std.flatten()],
            "num_features": self.num_features,
            "pretrained_cfg": self.pretrained_cfg,
            **extra,
        }

    def provenance(self) -> dict[str, Any]:
        """Where the weights came from (recorded next to the features, not hashed)."""
        return {
            "weights_source": self.weights_source,
            "weights_path": self.weights_path,
            "random_init": self.weights_source == "random",
            "seed": self.seed if self.weights_source == "random" else None,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Resize, normalise and embed.

        Args:
            x: (B, 3, H, W) float images in [0, 1]. The whole square is resized (no centre
                crop: the sky circle touches the borders).

        Returns:
            (B, num_features) float features.
        """
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(
                x,
                size=(self.input_size, self.input_size),
                mode=self.interpolation,
                align_corners=False if self.interpolation != "nearest" else None,
                antialias=self.interpolation != "nearest",
            ).clamp_(0.0, 1.0)
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return self.model(x)
