"""What a timm network may be asked for: checks of its ``model_kwargs`` and
``pretrained_cfg_overlay`` (JSON-native, no weights-source fields), shared by the timm
extractor and the SimCLR backbone."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from aurora.infra.config import plain
from aurora.infra.errors import AuroraError


class UnknownModelError(AuroraError, ValueError):
    """The configured model name is not a timm model."""


class ExtractorConfigError(AuroraError, ValueError):
    """``model_kwargs`` or ``pretrained_cfg_overlay`` cannot be applied to the timm model."""


#: ``create_model`` arguments the extractor sets itself; not allowed in ``model_kwargs``.
_RESERVED_KWARGS = frozenset(
    {
        "model_name",
        "pretrained",
        "num_classes",
        "pretrained_cfg",
        "pretrained_cfg_overlay",
        "features_only",
        "checkpoint_path",
        "pretrained_strict",
    }
)
#: Overlay fields that name where weights come from: a local file is ``weights=PATH`` (so a
#: saved solution can carry it and the identity holds its hash, not a machine's path).
_SOURCE_FIELDS = frozenset({"url", "file", "state_dict", "hf_hub_id", "hf_hub_filename", "source"})


def _json_native(value: Any) -> Any:
    """Plain JSON-like copy of a config value: mappings -> dicts, sequences -> lists.

    Accepts OmegaConf nodes too (Hydra passes ``DictConfig``/``ListConfig`` to the target).
    """
    value = plain(value)
    if isinstance(value, Mapping):
        return {str(k): _json_native(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_native(v) for v in value]
    return value


def timm_value(value: Any) -> Any:
    """Lists back to tuples, as timm's configs hold them."""
    if isinstance(value, list):
        return tuple(timm_value(v) for v in value)
    if isinstance(value, dict):
        return {k: timm_value(v) for k, v in value.items()}
    return value


def check_model_kwargs(model_name: str, model_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``model_kwargs``; returns them JSON-native.

    Raises:
        ExtractorConfigError: a key the extractor sets itself (``num_classes``, ...).
    """
    kwargs = _json_native(dict(model_kwargs))
    reserved = sorted(set(kwargs) & _RESERVED_KWARGS)
    if reserved:
        raise ExtractorConfigError(
            f"model_kwargs of timm model '{model_name}' may not set {reserved}: the extractor "
            f"sets them itself (weights: extractor.weights / extractor.pretrained; "
            f"normalisation: extractor.pretrained_cfg_overlay)"
        )
    return kwargs


def check_pretrained_cfg_overlay(model_name: str, overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a ``pretrained_cfg_overlay``; returns it JSON-native.

    Raises:
        ExtractorConfigError: unknown field, a weights-source field, or a bad mean/std/size.
    """
    from timm.models import PretrainedCfg

    out = _json_native(dict(overlay))
    allowed = {f.name for f in dataclasses.fields(PretrainedCfg)}
    unknown = sorted(set(out) - allowed)
    if unknown:
        raise ExtractorConfigError(
            f"pretrained_cfg_overlay of timm model '{model_name}' has unknown fields {unknown}; "
            f"timm's pretrained config fields are {sorted(allowed - _SOURCE_FIELDS)}"
        )
    source = sorted(set(out) & _SOURCE_FIELDS)
    if source:
        raise ExtractorConfigError(
            f"pretrained_cfg_overlay of timm model '{model_name}' sets {source}: give a local "
            f"weights file as extractor.weights=PATH instead"
        )
    for key in ("mean", "std"):
        if key in out:
            v = out[key]
            ok = isinstance(v, list) and len(v) == 3
            ok = ok and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
            if not ok or (key == "std" and min(v) <= 0):
                raise ExtractorConfigError(
                    f"pretrained_cfg_overlay.{key} of timm model '{model_name}' must be three "
                    f"numbers{' > 0' if key == 'std' else ''} (one per RGB channel), got {v!r}"
                )
            out[key] = [float(x) for x in v]
    for key in ("input_size", "test_input_size"):
        v = out.get(key)
        if v is None:
            continue
        ok = isinstance(v, list) and len(v) == 3 and all(isinstance(x, int) for x in v)
        if not ok or v[0] != 3 or v[1] != v[2] or v[1] < 1:
            raise ExtractorConfigError(
                f"pretrained_cfg_overlay.{key} of timm model '{model_name}' must be timm's "
                f"[3, S, S] (RGB, square: the sky is a square crop), got {v!r}"
            )
    return out
