"""Feature extractors (timm ImageNet networks, our trained encoders), where their weights come
from (:mod:`.weights`), batched cached extraction and TensorBoard projector export.
Must not import run/, training/, grid/, fusion/, report/ or solution/."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aurora.extractors.checkpoint_extractor import CheckpointExtractor
    from aurora.extractors.feature_keys import feature_key
    from aurora.extractors.feature_store import FeatureSet, assemble_features, load_feature_set
    from aurora.extractors.inference import (
        Extractor,
        StoreBatches,
        build_extractor,
        extract_features,
    )
    from aurora.extractors.projector import (
        add_projector_labels,
        export_feature_set,
        export_projector,
        read_metadata,
    )
    from aurora.extractors.timm_extractor import TimmExtractor

#: Where each name of the package is defined. Its modules are imported on first use, so that
#: :mod:`aurora.extractors.feature_keys` can be read without torch (the run's budget does).
_HOMES = {
    "CheckpointExtractor": "checkpoint_extractor",
    "Extractor": "inference",
    "FeatureSet": "feature_store",
    "StoreBatches": "inference",
    "TimmExtractor": "timm_extractor",
    "add_projector_labels": "projector",
    "assemble_features": "feature_store",
    "build_extractor": "inference",
    "export_feature_set": "projector",
    "export_projector": "projector",
    "extract_features": "inference",
    "feature_key": "feature_keys",
    "load_feature_set": "feature_store",
    "read_metadata": "projector",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # once: later reads find it without this function
    return value


__all__ = [
    "CheckpointExtractor",
    "Extractor",
    "FeatureSet",
    "StoreBatches",
    "TimmExtractor",
    "add_projector_labels",
    "assemble_features",
    "build_extractor",
    "export_feature_set",
    "export_projector",
    "extract_features",
    "feature_key",
    "load_feature_set",
    "read_metadata",
]
