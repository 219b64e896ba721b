"""Configuration nodes as plain values, and estimators built from a node's ``_target_``.

The orchestrator (:mod:`aurora.run`) turns the composed Hydra config into plain settings once;
everything below it takes plain dicts. :func:`plain` is the one OmegaConf -> Python converter
of the package; :func:`make_estimator` instantiates a reducer or clusterer node.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.utils import instantiate
from omegaconf import MISSING, OmegaConf

from aurora.infra.errors import SettingsError

#: How an unset required value (``???`` in YAML) reads in a plain container.
UNSET: str = MISSING


def plain(node: Any) -> Any:
    """A plain value from a config node: containers resolved to dicts/lists, the rest as is.

    Args:
        node: an OmegaConf ``DictConfig``/``ListConfig``, a mapping, or any value.

    Returns:
        A resolved ``dict``/``list`` for an OmegaConf container (an unset ``???`` value stays
        the string ``"???"``), a shallow ``dict`` copy of another mapping, else ``node``.
    """
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    if isinstance(node, Mapping):
        return dict(node)
    return node


def make_estimator(cfg: Mapping[str, Any], seed: int) -> Any:
    """Instantiate an estimator from a YAML node with ``_target_``; seed its ``random_state``.

    Args:
        cfg: the config node (``_target_`` plus constructor arguments).
        seed: run seed, used when the estimator has a ``random_state`` the config leaves null.

    Returns:
        The unfitted estimator.
    """
    node = plain(cfg)
    if "_target_" not in node:
        raise SettingsError("_target_", None, f"an estimator class to build; the node is {node}")
    est = instantiate(node, _convert_="all")
    params = est.get_params(deep=False) if hasattr(est, "get_params") else {}
    if "random_state" in params and node.get("random_state") is None:
        est.set_params(random_state=int(seed))
    return est
