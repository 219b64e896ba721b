"""Fusion of many partitions into one grouping by co-association majority voting."""

from aurora.fusion.voting import (
    CoAssociationVoting,
    FusionError,
    Signatures,
    compress_partitions,
    components_for_thresholds,
    finalize_labels,
    validate_partitions,
)

__all__ = [
    "CoAssociationVoting",
    "FusionError",
    "Signatures",
    "compress_partitions",
    "components_for_thresholds",
    "finalize_labels",
    "validate_partitions",
]
