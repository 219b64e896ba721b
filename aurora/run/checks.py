"""Settings checked before any heavy work: first on their own, then against the data's size.

Each check takes plain values (not a composed config) and either returns the values to use or
raises :class:`aurora.infra.errors.SettingsError` naming the key, the value and what is allowed.
Values the data cannot hold that came from a list (a k of the grid, a minimum group size of
the fusion search) are lowered to what the data allows, with a warning that names them, so
that a small folder still completes; a lone value that cannot work is an error.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aurora.fusion.settings import FusionSettings
from aurora.infra.errors import RunError, SettingsError

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
        if isinstance(v, bool) or not isinstance(v, int | float) or not float(v).is_integer():
            raise SettingsError(key, value, f"integers >= {minimum} only ({v!r} is not one)")
        if int(v) < minimum:
            raise SettingsError(key, value, f"integers >= {minimum} only ({v!r} is below)")
        out.append(int(v))
    return out


def _show_bound(x: float) -> str:
    """A range bound as written: ``4294967295``, ``0.5``, ``inf``."""
    return str(int(x)) if math.isfinite(x) and float(x).is_integer() else f"{x:g}"


def check_number(
    key: str, value: Any, low: float, high: float = math.inf, *, integer: bool = False
) -> float:
    """``value`` as a number in [low, high] (an integer when asked).

    Raises:
        SettingsError: not a number (NaN included), not an integer when one is needed, or out
            of range.
    """
    kind = "an integer" if integer else "a number"
    if high == math.inf:
        allowed = f"{kind} >= {_show_bound(low)}"
    else:
        allowed = f"{kind} in [{_show_bound(low)}, {_show_bound(high)}]"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SettingsError(key, value, allowed)
    if not low <= value <= high:  # NaN fails here too
        raise SettingsError(key, value, allowed)
    if integer and not float(value).is_integer():  # inf included
        raise SettingsError(key, value, allowed)
    return value


def check_int(key: str, value: Any, low: int, high: float = math.inf) -> int:
    """``value`` as an ``int`` in [low, high] (``3.0`` is 3).

    Raises:
        SettingsError: anything else.
    """
    return int(check_number(key, value, low, high, integer=True))


#: The largest seed numpy and Lightning accept (an unsigned 32-bit integer).
MAX_SEED = 2**32 - 1


def check_seed(value: Any, key: str = "seed") -> int:
    """The run seed: an integer in [0, 2**32 - 1] (what numpy and Lightning accept).

    Raises:
        SettingsError: anything else (``seed=abc``, ``seed=-1``).
    """
    return check_int(key, value, 0, MAX_SEED)


def check_jobs(value: Any, key: str = "jobs") -> int | None:
    """Worker processes for scanning, decoding and preprocessing: an integer >= 1, or None for
    every CPU this process may use (0 is not taken to mean "all": say null).

    Raises:
        SettingsError: anything else (``jobs=0``, ``jobs=-3``, ``jobs=two``).
    """
    if value is None:
        return None
    try:
        return check_int(key, value, 1)
    except SettingsError:
        raise SettingsError(
            key, value, "an integer >= 1, or null for every CPU of this process"
        ) from None


#: The forms of ``extract.device`` (what :func:`aurora.extractors.inference.resolve_device`
#: hands to torch).
DEVICE_FORMS = "auto, cpu, cuda, cuda:N (N = a CUDA device index) or mps"
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")


def check_device(value: Any, key: str = "extract.device", *, here: bool = False) -> str:
    """A torch device for feature extraction, in one of :data:`DEVICE_FORMS`.

    Args:
        value: the setting.
        key: its name, for the message.
        here: also check that this machine has the device (imports torch for ``cuda`` and
            ``mps`` only); a sweep's finalisation, which extracts nothing new, leaves it out.

    Returns:
        The device string, as given.

    Raises:
        SettingsError: another form (``cuda9``), or with ``here`` a device this machine lacks
            (``cuda:3`` with 1 GPU, ``cuda`` without CUDA, ``mps`` without Metal).
    """
    m = _DEVICE.match(value) if isinstance(value, str) else None
    if m is None or (m.group(2) is not None and m.group(1) in ("auto", "cpu")):
        raise SettingsError(key, value, DEVICE_FORMS)
    kind, index = m.group(1), m.group(2)
    if not here or kind in ("auto", "cpu"):
        return value
    import torch

    if kind == "mps":
        if index not in (None, "0") or not torch.backends.mps.is_available():
            raise SettingsError(key, value, "this machine has no MPS device: use auto or cpu")
        return value
    if not torch.cuda.is_available():
        why = "this machine has no CUDA device (torch.cuda.is_available() is false)"
        raise SettingsError(key, value, f"{why}: use auto or cpu")
    n = torch.cuda.device_count()
    if index is not None and int(index) >= n:
        have = "cuda:0" if n == 1 else f"cuda:0 to cuda:{n - 1}"
        raise SettingsError(
            key, value, f"this machine has {n} CUDA device(s) ({have}), or use auto"
        )
    return value


def check_extract(node: Mapping[str, Any], key: str = "extract", *, here: bool = False) -> None:
    """The ``extract`` node: ``batch_size`` >= 1, ``num_workers`` >= 0, ``device`` (see
    :func:`check_device`)."""
    check_int(f"{key}.batch_size", node.get("batch_size"), 1)
    check_int(f"{key}.num_workers", node.get("num_workers", 0), 0)
    check_device(node.get("device", "auto"), f"{key}.device", here=here)


def check_fit_sample(value: Any) -> int | None:
    """``grid.fit_sample``: None (fit on every row) or an integer of at least 100.

    Raises:
        SettingsError: anything else (a sample that small could not stand for the data).
    """
    if value is None:
        return None
    return int(check_number("grid.fit_sample", value, 100, integer=True))


@dataclass(frozen=True)
class GridCounts:
    """The grid axes after the checks on their own.

    Attributes:
        n_clusters: the k values (integers >= 2), in the order given.
        stability_splits: disjoint subsamples of the stability score (>= 2).
    """

    n_clusters: tuple[int, ...]
    stability_splits: int


def check_grid(n_clusters: Any, stability_splits: Any) -> GridCounts:
    """Check ``grid.n_clusters`` and ``grid.stability_splits`` on their own."""
    ks = int_list("grid.n_clusters", n_clusters, 2)
    splits = int(check_number("grid.stability_splits", stability_splits, 2, integer=True))
    return GridCounts(tuple(dict.fromkeys(ks)), splits)


def check_training(loader: Mapping[str, Any], trainer: Mapping[str, Any]) -> None:
    """Check the training loader and length on their own.

    Args:
        loader: the ``train.loader`` node (cluster.py and train.py alike).
        trainer: the ``trainer`` node.

    Raises:
        SettingsError: ``batch_size`` < 2, ``num_workers`` < 0, ``val_fraction`` outside
            [0, 0.5], ``pin_memory`` not null/true/false, ``temporal_pair`` < 0,
            ``trainer.max_epochs`` not an integer >= 1 (or null), ``trainer.max_steps`` not -1 or an
            integer >= 1, or both unbounded (-1): the learning-rate schedule needs a finite length.
    """
    check_int("train.loader.batch_size", loader.get("batch_size"), 2)
    check_int("train.loader.num_workers", loader.get("num_workers", 0), 0)
    check_number("train.loader.val_fraction", loader.get("val_fraction", 0.0), 0.0, 0.5)
    check_int("train.loader.temporal_pair", loader.get("temporal_pair", 0), 0)
    pin = loader.get("pin_memory")
    if pin is not None and not isinstance(pin, bool):
        raise SettingsError(
            "train.loader.pin_memory", pin, "null (when CUDA is used), true or false"
        )
    max_steps = trainer.get("max_steps", -1)
    if max_steps is not None and max_steps != -1:
        check_int("trainer.max_steps", max_steps, 1)
    max_epochs = trainer.get("max_epochs")
    if max_epochs is None or (max_epochs == -1 and max_steps not in (None, -1)):
        return  # Lightning's default length, or as many epochs as max_steps takes
    if max_epochs == -1:
        raise SettingsError(
            "trainer.max_epochs",
            max_epochs,
            "an integer >= 1; -1 (no end) only with trainer.max_steps >= 1, as the "
            "learning-rate schedule needs a length",
        )
    check_int("trainer.max_epochs", max_epochs, 1)


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


def check_against_data(
    n_accepted: int,
    grid: GridCounts,
    fusion: FusionSettings,
    k_key: str = "grid.n_clusters",
) -> DataFit:
    """Fit the grid and fusion settings to the number of accepted images.

    Args:
        n_accepted: images that passed preprocessing (reference images included).
        grid: the checked grid settings.
        fusion: the checked fusion settings.
        k_key: the key the k values were set under, for the warning (a sweep job's is
            ``clusterer.n_clusters``).

    Returns:
        The values to use: k at most ``n_accepted - 1`` (and at least 2), minimum sizes and
        the target number of groups at most ``n_accepted`` (a warning names each value that
        was lowered).

    Raises:
        RunError: fewer than 2 accepted images.
    """
    if n_accepted < 2:
        raise RunError(
            f"data.root: {n_accepted} image(s) of the folder accepted, and grouping needs at "
            "least 2 (is data.root the folder of the frames?)"
        )
    what = f"{n_accepted} accepted images"
    # k below the number of points: silhouette, spectral and Ward need at least one shared group.
    ks = fit_to_data(k_key, grid.n_clusters, max(2, n_accepted - 1), what)
    (mcs,) = fit_to_data("fusion.min_cluster_size", [fusion.min_cluster_size], n_accepted, what)
    search = fusion.search
    if search is None:
        return DataFit(tuple(ks), mcs)
    sizes = fit_to_data("fusion.search.min_sizes", list(search.min_sizes), n_accepted, what)
    (g,) = fit_to_data("fusion.search.target_groups", [search.target_groups], n_accepted, what)
    return DataFit(tuple(ks), mcs, tuple(sizes), g)
