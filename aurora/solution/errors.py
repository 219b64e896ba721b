"""What can be wrong with a solution folder; every message names the file or the field."""

from __future__ import annotations

from aurora.infra.errors import AuroraError


class SolutionError(AuroraError):
    """A solution folder that cannot be used; the message names the file or the mismatch."""


class SolutionIntegrityError(SolutionError):
    """A file of the solution is missing or its SHA-256 differs from the manifest."""


class SolutionVersionError(SolutionError):
    """The solution was written by an incompatible format or aurora version."""


class ManifestError(SolutionError):
    """A manifest that breaks the schema (a field's type or range) or holds a ``_target_``."""


class SolutionExtractorError(SolutionError):
    """The solution's extractor cannot be saved or rebuilt; the message says why."""
