"""Feature extractors (timm ImageNet networks, our trained encoders), where their weights come
from (:mod:`.weights`), batched cached extraction and TensorBoard projector export.
Must not import run/, training.py, grid/, fusion/, report/ or solution/."""

from aurora.extractors.checkpoint_extractor import CheckpointExtractor
from aurora.extractors.feature_store import assemble_features
from aurora.extractors.inference import (
    Extractor,
    FeatureSet,
    StoreBatches,
    build_extractor,
    extract_features,
    feature_key,
    load_feature_set,
)
from aurora.extractors.projector import (
    add_projector_labels,
    export_feature_set,
    export_projector,
    read_metadata,
)
from aurora.extractors.timm_extractor import ExtractorConfigError, TimmExtractor, UnknownModelError
from aurora.extractors.weights import (
    WeightsMismatchError,
    WeightsSource,
    WeightsUnavailableError,
    load_timm_weights,
    resolve_weights,
    weights_unavailable_message,
)

__all__ = [
    "CheckpointExtractor",
    "Extractor",
    "ExtractorConfigError",
    "FeatureSet",
    "StoreBatches",
    "TimmExtractor",
    "UnknownModelError",
    "WeightsMismatchError",
    "WeightsSource",
    "WeightsUnavailableError",
    "add_projector_labels",
    "assemble_features",
    "build_extractor",
    "export_feature_set",
    "export_projector",
    "extract_features",
    "feature_key",
    "load_feature_set",
    "load_timm_weights",
    "read_metadata",
    "resolve_weights",
    "weights_unavailable_message",
]
