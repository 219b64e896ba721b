"""Saved solutions: a run's groups as data that labels new images (see :mod:`.store`)."""

from aurora.solution.errors import (
    ManifestError,
    SolutionError,
    SolutionExtractorError,
    SolutionIntegrityError,
    SolutionVersionError,
)
from aurora.solution.extractor import (
    ALLOWED_EXTRACTORS,
    SolutionExtractor,
    export_extractor,
    rebuild_extractor,
)
from aurora.solution.schema import FORMAT_VERSION, MANIFEST_SCHEMA
from aurora.solution.store import (
    MANIFEST,
    NOVELTY_QUANTILE,
    Solution,
    aurora_version,
    load_solution,
    neighbour_distances,
    novelty_threshold,
    save_solution,
)

__all__ = [
    "ALLOWED_EXTRACTORS",
    "FORMAT_VERSION",
    "MANIFEST",
    "MANIFEST_SCHEMA",
    "NOVELTY_QUANTILE",
    "ManifestError",
    "Solution",
    "SolutionError",
    "SolutionExtractor",
    "SolutionExtractorError",
    "SolutionIntegrityError",
    "SolutionVersionError",
    "aurora_version",
    "export_extractor",
    "load_solution",
    "neighbour_distances",
    "novelty_threshold",
    "rebuild_extractor",
    "save_solution",
]
