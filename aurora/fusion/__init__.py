"""Fusion of many partitions into one grouping by co-association majority voting.
Must not import run/, report/ or solution/.

- :class:`CoAssociationVoting` (``voting.py``): the exact voting as a scikit-learn clusterer,
  ``X`` (n_samples, n_partitions); the work is in ``graph.py`` (signatures from
  ``partitions.py``, blockwise sparse products, exact cut).
- :func:`select_partitions` / :func:`load_partitions` (``selection.py``): candidates from
  ``ranking.csv``, as (P, n) rows in rank order.
- :func:`search_fusion` / :func:`run_fusion_search` (``search.py``): parameter choice by the
  thesis's loss.
- :class:`FusedNeighbours` (``neighbours.py``): labels new images by nearest neighbours in the
  embedding (a scikit-learn classifier, saved as ``.npz``).
- :class:`FusionSettings` (``settings.py``): the typed ``fusion.*`` settings, checked by the
  validators of ``params.py`` that the estimators call too.
"""

from aurora.fusion.graph import ThresholdComponents, components_for_thresholds, finalize_labels
from aurora.fusion.neighbours import FusedNeighbours
from aurora.fusion.params import FusionParameterError
from aurora.fusion.partitions import (
    FusionError,
    Signatures,
    compress_partitions,
    validate_partitions,
)
from aurora.fusion.search import (
    FusionSearchResult,
    fusion_grid_labels,
    group_size_loss,
    plot_search_landscape,
    run_fusion_search,
    search_fusion,
)
from aurora.fusion.selection import load_partitions, select_partitions
from aurora.fusion.settings import FusionSettings, SearchSettings, VotingSettings
from aurora.fusion.voting import CoAssociationVoting

__all__ = [
    "CoAssociationVoting",
    "FusedNeighbours",
    "FusionError",
    "FusionParameterError",
    "FusionSearchResult",
    "FusionSettings",
    "SearchSettings",
    "Signatures",
    "ThresholdComponents",
    "VotingSettings",
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
]
