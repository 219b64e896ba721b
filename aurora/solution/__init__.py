"""Saved solutions: a run's groups as data (layout :mod:`.layout`, loading :mod:`.store`, writing
:mod:`.save`) that label new images (:mod:`.apply`). Must not import run/ (run/ calls it)."""

from aurora.solution.apply import ApplyResult, apply_solution, label_images, write_apply_outputs
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
from aurora.solution.layout import MANIFEST
from aurora.solution.limits import SolutionLimits
from aurora.solution.save import save_solution
from aurora.solution.schema import FORMAT_VERSION, MANIFEST_SCHEMA
from aurora.solution.store import (
    NOVELTY_QUANTILE,
    Solution,
    aurora_version,
    load_solution,
    neighbour_distances,
    novelty_threshold,
)

__all__ = [
    "ALLOWED_EXTRACTORS",
    "ApplyResult",
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
    "SolutionLimits",
    "SolutionVersionError",
    "apply_solution",
    "aurora_version",
    "export_extractor",
    "label_images",
    "load_solution",
    "neighbour_distances",
    "novelty_threshold",
    "rebuild_extractor",
    "save_solution",
    "write_apply_outputs",
]
