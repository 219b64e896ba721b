"""Where a timm extractor's weights come from, decided once, and loading a local weights file.

:func:`resolve_weights` is the one decision (as timm's ``_resolve_pretrained_source`` decides
for a pretrained config), made before any network is built:

1. ``weights=PATH``: that local file (a timm checkpoint, ``.safetensors`` or ``.pth`` state
   dict), ``kind="file"``.
2. ``pretrained=True``: the Hugging Face cache (``timm/<model>.<tag>``) if it holds the file
   (``kind="hf_cache"``), otherwise timm's download from the hub (``kind="hub"``), chosen only
   when the hub answers within a few seconds (so an offline machine fails at once instead of
   retrying for a minute).
3. Neither works: :class:`WeightsUnavailableError` with the one message that says how to supply
   the weights. Random weights (``kind="random"``) only with an explicit ``pretrained=False``.

:func:`load_timm_weights` loads a local file strictly (classifier keys, which ``num_classes=0``
drops, are ignored; any other mismatch is a :class:`WeightsMismatchError` naming the keys).

:func:`state_dict_sha256` hashes the weights a network holds once they are loaded: every
extractor's identity carries it as ``state_sha256``
(:data:`aurora.extractors.feature_keys.LOADED_WEIGHTS_KEY`), so the feature cache is keyed by
bytes aurora hashed itself, never by a hash a file or a manifest claims.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import torch
from torch import nn

from aurora.infra.errors import AuroraError

#: Files a timm model repository on the hub may hold, in timm's order of preference.
HUB_FILES = ("model.safetensors", "open_clip_pytorch_model.bin", "pytorch_model.bin")
PROBE_TIMEOUT_S = 3.0


def state_dict_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, shapes, dtypes and values, in name order.

    What the feature cache trusts: computed by aurora from the tensors a network holds, so two
    networks share cached features only when their weights are the same bytes.
    """
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


class WeightsUnavailableError(AuroraError):
    """Pretrained weights were asked for and cannot be obtained (offline, no local file)."""


class WeightsMismatchError(AuroraError, ValueError):
    """A local weights file does not fit the model architecture."""


def weights_unavailable_message(model_name: str, hub_id: str | None, reason: str) -> str:
    """The one message shown when pretrained weights cannot be found.

    Args:
        model_name: timm model name as configured (e.g. ``resnet50``).
        hub_id: Hugging Face repository of the default pretrained tag (``timm/resnet50.a1_in1k``).
        reason: what was tried and failed, one short sentence.
    """
    repo = hub_id or f"timm/{model_name}"
    return (
        f"Pretrained weights for timm model '{model_name}' are not available: {reason} "
        f"Supply them in one of two ways: "
        f"(1) download them on a machine with internet (e.g. `hf download {repo}` or "
        f"timm.create_model('{model_name}', pretrained=True)), copy the weights file here "
        f"and set extractor.weights=PATH (a timm checkpoint, .safetensors or .pth state dict); "
        f"or (2) populate the Hugging Face cache (HF_HOME, default ~/.cache/huggingface) with "
        f"'{repo}' and run with HF_HUB_OFFLINE=1. "
        f"Random weights are used only with an explicit extractor.pretrained=false."
    )


def hf_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set to a true value."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(home) / "hub"


def cached_hub_file(hub_id: str) -> Path | None:
    """A weights file of ``hub_id`` already in the local Hugging Face cache, if any."""
    from huggingface_hub import try_to_load_from_cache

    for name in HUB_FILES:
        hit = try_to_load_from_cache(hub_id, name, cache_dir=_hf_cache_dir())
        if isinstance(hit, str) and os.path.isfile(hit):
            return Path(hit)
    return None


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when the hub endpoint accepts a TCP connection within ``timeout`` seconds."""
    if hf_offline():
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class WeightsSource:
    """Where the weights of a timm network come from.

    Attributes:
        kind: ``file`` (``weights=PATH``), ``hf_cache`` (the local Hugging Face cache),
            ``hub`` (timm downloads them) or ``random`` (``pretrained=False``).
        path: the local file to load for ``file`` and ``hf_cache``; None otherwise.
    """

    kind: Literal["file", "hf_cache", "hub", "random"]
    path: Path | None = None


def resolve_weights(
    model_name: str,
    pretrained: bool,
    weights: str | Path | None,
    hub_id: str | None,
    url: str | None = None,
) -> WeightsSource:
    """Decide where the weights come from, before anything is built.

    Looks only at the file system, the environment (``HF_HUB_OFFLINE``, ``HF_HOME``, ...) and,
    when it has to download, whether the hub answers; it downloads and builds nothing.

    Args:
        model_name: timm model name, for the messages.
        pretrained: ImageNet weights wanted (ignored when ``weights`` is given).
        weights: a local weights file, or None.
        hub_id: Hugging Face repository of timm's default pretrained tag, or None.
        url: timm's download URL of that tag when it is not on the hub, or None.

    Returns:
        The :class:`WeightsSource`.

    Raises:
        WeightsUnavailableError: ``weights`` is not a file, or pretrained weights are wanted
            and timm has none, or they are neither cached nor downloadable now.
    """
    if weights is not None:
        local = Path(weights).expanduser()
        if not local.is_file():
            reason = f"extractor.weights={weights} is not a file."
            raise WeightsUnavailableError(weights_unavailable_message(model_name, hub_id, reason))
        return WeightsSource("file", local)
    if not pretrained:
        return WeightsSource("random")
    local = cached_hub_file(hub_id) if hub_id else None
    if local is not None:
        return WeightsSource("hf_cache", local)
    if hub_id is None and not url:
        reason = "timm has no pretrained weights for it."
        raise WeightsUnavailableError(weights_unavailable_message(model_name, hub_id, reason))
    if not hub_reachable():
        why = "HF_HUB_OFFLINE is set" if hf_offline() else "the hub cannot be reached"
        reason = f"{why} and the local cache has no copy."
        raise WeightsUnavailableError(weights_unavailable_message(model_name, hub_id, reason))
    return WeightsSource("hub")


def _classifier_names(pretrained_cfg: Mapping[str, Any]) -> tuple[str, ...]:
    cls = pretrained_cfg.get("classifier") or ()
    return (cls,) if isinstance(cls, str) else tuple(cls)


def load_timm_weights(model: nn.Module, path: str | Path, model_name: str) -> None:
    """Load a local weights file into a ``num_classes=0`` timm model, strictly.

    Wrappers such as ``{"state_dict": ...}`` / ``{"model": ...}`` and DDP/compile prefixes are
    unwrapped by timm's own loader.

    Args:
        model: the timm model built with ``num_classes=0``.
        path: ``.safetensors``, ``.pth``/``.pt``/``.bin`` state dict or timm training checkpoint.
        model_name: used in error messages.

    Raises:
        WeightsMismatchError: keys missing from the file, unexpected keys or wrong shapes.
    """
    from timm.models import load_state_dict

    try:
        state = load_state_dict(str(path), use_ema=False, weights_only=True)
    except Exception as err:  # unreadable / not a state dict
        raise WeightsMismatchError(
            f"cannot read weights file {path} for timm model '{model_name}': {err}"
        ) from err
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise WeightsMismatchError(
            f"weights file {path} for timm model '{model_name}' does not hold a state dict of "
            f"tensors"
        )
    own = model.state_dict()
    # num_classes=0 removes the classifier; a full ImageNet checkpoint still carries it.
    head = tuple(f"{c}." for c in _classifier_names(getattr(model, "pretrained_cfg", {})))
    state = {k: v for k, v in state.items() if k in own or not k.startswith(head)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(state[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or shapes:

        def show(keys: list[str]) -> str:
            more = f" ... (+{len(keys) - 8} more)" if len(keys) > 8 else ""
            return ", ".join(keys[:8]) + more

        raise WeightsMismatchError(
            f"weights file {path} does not match timm model '{model_name}': "
            f"missing keys [{show(missing)}]; unexpected keys [{show(unexpected)}]; "
            f"shape mismatches [{show(shapes)}]"
        )
    model.load_state_dict(state, strict=True)
