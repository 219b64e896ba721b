"""The fusion's settings (``fusion.*`` of ``conf/fusion/``), typed and checked once.

:meth:`FusionSettings.from_node` reads the plain ``fusion`` node (the run builds it in
:mod:`aurora.run.settings`); each value is checked by its validator of
:mod:`aurora.fusion.params`, the same one the estimators call, so a bad value is one
:class:`~aurora.infra.errors.SettingsError` naming its key before any work. What the data lowers
later (minimum sizes, the target number of groups) comes back through
:meth:`FusionSettings.fitted`, and the estimators are made from these values
(:meth:`FusionSettings.voting_estimator`, :meth:`SearchSettings.search`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from aurora.fusion.params import (
    validate_each,
    validate_min_cluster_size,
    validate_n_partitions,
    validate_target_groups,
    validate_threshold,
    validate_unassigned_penalty,
    validate_weights,
)
from aurora.fusion.search import FusionSearchResult, search_fusion
from aurora.fusion.voting import CoAssociationVoting
from aurora.infra.errors import SettingsError

__all__ = ["FusionSettings", "SearchSettings", "VotingSettings"]


def _known(node: Mapping[str, Any], key: str, fields: Sequence[str]) -> None:
    """Refuse a key of ``node`` that is not a setting (a typo, or a value set twice)."""
    for name in node:
        if name not in fields:
            raise SettingsError(f"{key}.{name}", node[name], f"not a setting; known: {fields}")


def _weights(node: Mapping[str, Any], key: str) -> tuple[float, ...] | None:
    """The optional ``weights`` list of ``node``, checked (None = all ones)."""
    value = node.get("weights")
    if value is None:
        return None
    return tuple(float(w) for w in validate_weights(value, key=f"{key}.weights"))


@dataclass(frozen=True)
class VotingSettings:
    """The voting's own knobs (``fusion.voting.*``); its threshold and minimum group size are
    ``fusion.threshold`` and ``fusion.min_cluster_size``.

    Attributes:
        weights: one non-negative weight per fused partition, or None = all ones.
        max_block_entries: memory knob: multiply-adds per sparse product block.
        progress: tqdm bar; None = only for large inputs.
    """

    weights: tuple[float, ...] | None = None
    max_block_entries: int = 4_000_000
    progress: bool | None = None

    @classmethod
    def from_node(cls, node: Mapping[str, Any] | None) -> VotingSettings:
        """Read and check a ``fusion.voting`` node (None = the defaults)."""
        node = node or {}
        _known(node, "fusion.voting", [f.name for f in dataclasses.fields(cls)])
        progress = node.get("progress")
        if progress is not None and not isinstance(progress, bool):
            raise SettingsError("fusion.voting.progress", progress, "null, true or false")
        return cls(
            weights=_weights(node, "fusion.voting"),
            max_block_entries=int(node.get("max_block_entries", cls.max_block_entries)),
            progress=progress,
        )


@dataclass(frozen=True)
class SearchSettings:
    """The grid of the fusion search (``fusion.search.*``; :func:`aurora.fusion.search_fusion`).

    Attributes:
        n_partitions: numbers of leading ranked partitions to fuse.
        thresholds: co-association thresholds.
        min_sizes: minimum group sizes.
        target_groups: G, the number of equal groups the loss aims for.
        unassigned_penalty: loss per unassigned image.
        weights: one weight per ranked partition, or None = all ones.
    """

    n_partitions: tuple[int, ...]
    thresholds: tuple[float, ...]
    min_sizes: tuple[int, ...]
    target_groups: int
    unassigned_penalty: float = 0.0
    weights: tuple[float, ...] | None = None

    @classmethod
    def from_node(cls, node: Mapping[str, Any]) -> SearchSettings:
        """Read and check a ``fusion.search`` node."""
        key = "fusion.search"
        _known(node, key, [f.name for f in dataclasses.fields(cls)])
        weights = _weights(node, key)
        return cls(
            n_partitions=validate_each(
                node.get("n_partitions"), validate_n_partitions, key=f"{key}.n_partitions"
            ),
            thresholds=validate_each(
                node.get("thresholds"),
                validate_threshold,
                key=f"{key}.thresholds",
                weights=weights,
                useful=True,
            ),
            min_sizes=validate_each(
                node.get("min_sizes"), validate_min_cluster_size, key=f"{key}.min_sizes"
            ),
            target_groups=validate_target_groups(
                node.get("target_groups"), key=f"{key}.target_groups"
            ),
            unassigned_penalty=validate_unassigned_penalty(
                node.get("unassigned_penalty", 0.0), key=f"{key}.unassigned_penalty"
            ),
            weights=weights,
        )

    def search(self, partitions_ranked: np.ndarray) -> FusionSearchResult:
        """Search the grid on (P, n) ranked partitions; numbers of partitions above P are left
        out (P alone when none is left)."""
        n_total = partitions_ranked.shape[0]
        n_avail = [p for p in self.n_partitions if p <= n_total] or [n_total]
        return search_fusion(
            partitions_ranked,
            n_partitions=n_avail,
            thresholds=list(self.thresholds),
            min_sizes=list(self.min_sizes),
            target_groups=self.target_groups,
            unassigned_penalty=self.unassigned_penalty,
            weights=None if self.weights is None else list(self.weights),
        )


@dataclass(frozen=True)
class FusionSettings:
    """How the best-ranked partitions are fused (``fusion.*``).

    Attributes:
        threshold: join two images when their co-association exceeds it.
        min_cluster_size: smaller groups get label -1.
        n_partitions: leading cells of ``ranking.csv`` that are fused.
        per_extractor: fuse each extractor's best cells separately.
        voting: the voting's own knobs.
        search: the grid that chooses the parameters by the thesis's loss, or None.
    """

    threshold: float = 0.5
    min_cluster_size: int = 20
    n_partitions: int = 10
    per_extractor: bool = True
    voting: VotingSettings = VotingSettings()
    search: SearchSettings | None = None

    @classmethod
    def from_node(cls, node: Mapping[str, Any]) -> FusionSettings:
        """Read and check the plain ``fusion`` node.

        Raises:
            SettingsError: an unknown key, or a value that cannot work (naming its key).
        """
        _known(node, "fusion", [f.name for f in dataclasses.fields(cls)])
        voting = VotingSettings.from_node(node.get("voting"))
        per_extractor = node.get("per_extractor", cls.per_extractor)
        if not isinstance(per_extractor, bool):
            raise SettingsError("fusion.per_extractor", per_extractor, "true or false")
        search = node.get("search")
        return cls(
            threshold=validate_threshold(
                node.get("threshold"), weights=voting.weights, useful=True, key="fusion.threshold"
            ),
            min_cluster_size=validate_min_cluster_size(
                node.get("min_cluster_size"), key="fusion.min_cluster_size"
            ),
            n_partitions=validate_n_partitions(node.get("n_partitions"), key="fusion.n_partitions"),
            per_extractor=per_extractor,
            voting=voting,
            search=SearchSettings.from_node(search) if search else None,
        )

    @property
    def candidates(self) -> int:
        """The most ranked partitions any setting fuses (per group of cells)."""
        return max(self.search.n_partitions) if self.search else self.n_partitions

    def fitted(
        self,
        min_cluster_size: int,
        search_min_sizes: Sequence[int] | None = None,
        target_groups: int | None = None,
    ) -> FusionSettings:
        """These settings with the values the data lowered (:class:`aurora.run.checks.DataFit`);
        the search's values are replaced when given and there is a search."""
        search = self.search
        if search is not None and search_min_sizes is not None and target_groups is not None:
            search = dataclasses.replace(
                search, min_sizes=tuple(search_min_sizes), target_groups=target_groups
            )
        return dataclasses.replace(self, min_cluster_size=min_cluster_size, search=search)

    def voting_estimator(self) -> CoAssociationVoting:
        """The voting of these settings (threshold, minimum size and knobs)."""
        v = self.voting
        return CoAssociationVoting(
            threshold=self.threshold,
            min_cluster_size=self.min_cluster_size,
            weights=None if v.weights is None else list(v.weights),
            max_block_entries=v.max_block_entries,
            progress=v.progress,
        )
