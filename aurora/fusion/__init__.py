"""Fusion of many partitions into one grouping by co-association majority voting.

- :class:`CoAssociationVoting`: the exact voting, scaled by signatures and sparse products.
- :func:`select_partitions` / :func:`load_partitions`: candidates from ``ranking.csv``.
- :func:`search_fusion` / :func:`run_fusion_search`: parameter choice by the thesis's loss.
- :class:`FusedNeighbours`: labels new images by nearest neighbours in the embedding.
"""

from aurora.fusion.neighbours import FusedNeighbours
from aurora.fusion.search import (
    FusionSearchResult,
    fusion_grid_labels,
    group_size_loss,
    plot_search_landscape,
    run_fusion_search,
    search_fusion,
    write_labels_csv,
)
from aurora.fusion.selection import RANKING_COLUMNS, load_partitions, select_partitions
from aurora.fusion.voting import (
    CoAssociationVoting,
    FusionError,
    Signatures,
    components_for_thresholds,
    compress_partitions,
    finalize_labels,
    validate_partitions,
)

__all__ = [
    "RANKING_COLUMNS",
    "CoAssociationVoting",
    "FusedNeighbours",
    "FusionError",
    "FusionSearchResult",
    "Signatures",
    "compress_partitions",
    "components_for_thresholds",
    "finalize_labels",
    "fusion_grid_labels",
    "group_size_loss",
    "load_partitions",
    "plot_search_landscape",
    "run_fusion_search",
    "search_fusion",
    "select_partitions",
    "validate_partitions",
    "write_labels_csv",
]
