"""Clustering estimators scikit-learn lacks, constraint helpers and memory guards.
Must not import anything of aurora but infra/ (reduction/ and grid/ build on it)."""

from aurora.clustering.constraints import (
    constraints_from_reference,
    count_violations,
    lift_cannot_links,
    must_link_groups,
)
from aurora.clustering.cop_kmeans import COPKMeans, InfeasibleConstraintsError
from aurora.clustering.estimators import SparseSpectralClustering, WardClustering
from aurora.clustering.memory import (
    DEFAULT_MEMORY_BUDGET_BYTES,
    MemoryLimitError,
    check_estimator_memory,
    check_quadratic_memory,
)

__all__ = [
    "COPKMeans",
    "DEFAULT_MEMORY_BUDGET_BYTES",
    "InfeasibleConstraintsError",
    "MemoryLimitError",
    "SparseSpectralClustering",
    "WardClustering",
    "check_estimator_memory",
    "check_quadratic_memory",
    "constraints_from_reference",
    "count_violations",
    "lift_cannot_links",
    "must_link_groups",
]
