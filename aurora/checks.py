"""Settings checked before any heavy work: first on their own, then against the data's size.

Each check takes plain values (not a composed config) and either returns the values to use or
raises :class:`aurora.errors.SettingsError` naming the key, the value and what is allowed.
Values the data cannot hold that came from a list (a k of the grid, a minimum group size of
the fusion search) are lowered to what the data allows, with a warning that names them, so
that a small folder still completes; a lone value that cannot work is an error.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aurora.errors import SettingsError

log = logging.getLogger("aurora")


def int_list(key: str, value: Any, minimum: int) -> list[int]:
    """A list of integers >= ``minimum`` from a list or a lone value (``grid.n_clusters=3``).

    Raises:
        SettingsError: empty, not integers, or below ``minimum``.
    """
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    if not items:
        raise SettingsError(key, items, f"give at least one integer >= {minimum}")
    out: list[int] = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int | float) or float(v) != int(v):
            raise SettingsError(key, value, f"integers >= {minimum} only ({v!r} is not one)")
        if int(v) < minimum:
            raise SettingsError(key, value, f"integers >= {minimum} only ({v!r} is below)")
        out.append(int(v))
    return out


def check_number(
    key: str, value: Any, low: float, high: float = math.inf, *, integer: bool = False
) -> float:
    """``value`` as a number in [low, high] (an integer when asked).

    Raises:
        SettingsError: not a number, not an integer when one is needed, or out of range.
    """
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SettingsError(key, value, f"{kind} in [{low:g}, {high:g}]")
    if integer and float(value) != int(value):
        raise SettingsError(key, value, f"{kind} in [{low:g}, {high:g}]")
    if not low <= value <= high:
        raise SettingsError(key, value, f"{kind} in [{low:g}, {high:g}]")
    return value


def check_fit_sample(value: Any) -> int | None:
    """``grid.fit_sample``: None (fit on every row) or an integer of at least 100.

    Raises:
        SettingsError: anything else (a sample that small could not stand for the data).
    """
    if value is None:
        return None
    return int(check_number("grid.fit_sample", value, 100, integer=True))


@dataclass(frozen=True)
class GridSettings:
    """The grid axes after the checks on their own.

    Attributes:
        n_clusters: the k values (integers >= 2), in the order given.
        stability_splits: disjoint subsamples of the stability score (>= 2).
    """

    n_clusters: tuple[int, ...]
    stability_splits: int


def check_grid(n_clusters: Any, stability_splits: Any) -> GridSettings:
    """Check ``grid.n_clusters`` and ``grid.stability_splits`` on their own."""
    ks = int_list("grid.n_clusters", n_clusters, 2)
    splits = int(check_number("grid.stability_splits", stability_splits, 2, integer=True))
    return GridSettings(tuple(dict.fromkeys(ks)), splits)


def check_fusion(fusion: Mapping[str, Any]) -> None:
    """Check the fusion settings on their own (``fusion.*`` and ``fusion.search.*``)."""
    check_number("fusion.threshold", fusion.get("threshold"), 0.0, 1.0)
    check_number("fusion.min_cluster_size", fusion.get("min_cluster_size"), 1, integer=True)
    check_number("fusion.n_partitions", fusion.get("n_partitions"), 1, integer=True)
    search = fusion.get("search")
    if search:
        int_list("fusion.search.n_partitions", search.get("n_partitions"), 1)
        int_list("fusion.search.min_sizes", search.get("min_sizes"), 1)
        int_list("fusion.search.target_groups", search.get("target_groups"), 1)
        thresholds = search.get("thresholds")
        if not isinstance(thresholds, Sequence) or not thresholds:
            raise SettingsError(
                "fusion.search.thresholds", thresholds, "a list of numbers in [0, 1]"
            )
        for t in thresholds:
            check_number("fusion.search.thresholds", t, 0.0, 1.0)
        check_number("fusion.search.unassigned_penalty", search.get("unassigned_penalty", 0.0), 0.0)


def check_training(loader: Mapping[str, Any], max_epochs: Any) -> None:
    """Check the training loader and length on their own (``train.loader.*``, ``trainer.*``)."""
    check_number("train.loader.batch_size", loader.get("batch_size"), 2, integer=True)
    vf = loader.get("val_fraction", 0.0)
    check_number("train.loader.val_fraction", vf, 0.0, 0.5)
    if max_epochs is not None and max_epochs != -1:
        check_number("trainer.max_epochs", max_epochs, 1, integer=True)


def fit_to_data(key: str, values: Sequence[int], n: int, why: str) -> list[int]:
    """Lower the values above ``n`` to ``n`` (once each), with a warning naming them.

    Args:
        key: the setting, for the messages.
        values: the configured integers.
        n: the largest value the data allows.
        why: where the bound comes from, for the messages (e.g. "15 accepted images").

    Returns:
        The values, each at most ``n``, duplicates removed, order kept.
    """
    too_big = [v for v in values if v > n]
    if not too_big:
        return list(values)
    out = list(dict.fromkeys(min(v, n) for v in values))
    shown = values[0] if len(values) == 1 else list(values)
    used = out[0] if len(out) == 1 else out
    log.warning(
        "%s=%s: %s above %d, the most %s allow; using %s", key, shown, too_big, n, why, used
    )
    return out


@dataclass(frozen=True)
class DataFit:
    """Grid and fusion values fitted to the number of accepted images.

    Attributes:
        n_clusters: the k values of the grid (each at most the accepted count).
        min_cluster_size: ``fusion.min_cluster_size`` to use.
        search_min_sizes: ``fusion.search.min_sizes`` to use (None without a search).
        target_groups: ``fusion.search.target_groups`` to use (None without a search).
    """

    n_clusters: tuple[int, ...]
    min_cluster_size: int
    search_min_sizes: tuple[int, ...] | None = None
    target_groups: int | None = None


def check_against_data(n_accepted: int, grid: GridSettings, fusion: Mapping[str, Any]) -> DataFit:
    """Fit the grid and fusion settings to the number of accepted images.

    Args:
        n_accepted: images that passed preprocessing (reference images included).
        grid: the checked grid settings.
        fusion: the plain ``fusion`` node (checked by :func:`check_fusion`).

    Returns:
        The values to use: k at most ``n_accepted - 1`` (and at least 2), minimum sizes and
        the target number of groups at most ``n_accepted`` (a warning names each value that
        was lowered).

    Raises:
        SettingsError: fewer than 2 accepted images.
    """
    if n_accepted < 2:
        raise SettingsError(
            "data.root", f"{n_accepted} accepted image(s)", "at least 2 accepted images to group"
        )
    what = f"{n_accepted} accepted images"
    # k below the number of points: silhouette, spectral and Ward need at least one shared group.
    ks = fit_to_data("grid.n_clusters", grid.n_clusters, max(2, n_accepted - 1), what)
    (mcs,) = fit_to_data(
        "fusion.min_cluster_size", [int(fusion["min_cluster_size"])], n_accepted, what
    )
    search = fusion.get("search")
    if not search:
        return DataFit(tuple(ks), mcs)
    sizes = fit_to_data(
        "fusion.search.min_sizes",
        int_list("fusion.search.min_sizes", search["min_sizes"], 1),
        n_accepted,
        what,
    )
    (g,) = fit_to_data(
        "fusion.search.target_groups", [int(search["target_groups"])], n_accepted, what
    )
    return DataFit(tuple(ks), mcs, tuple(sizes), g)
