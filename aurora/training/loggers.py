"""The ``logger`` group's targets and what a ``logger`` node logs to (no Lightning import)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.utils import get_object


def no_logger(**_: Any) -> bool:
    """Target of ``logger=none``: Lightning's "no logger" value."""
    return False


def logs_to_tensorboard(node: Mapping[str, Any] | None) -> bool:
    """True when a ``logger`` node makes a TensorBoard logger (its class or a subclass).

    Args:
        node: the ``logger`` group node (``_target_`` and arguments), or None.

    Returns:
        Whether the logger it instantiates writes TensorBoard event files (False for a target
        that cannot be imported). Lightning is imported only when the target is a class
        (``logger=none``'s function needs none).
    """
    target = (node or {}).get("_target_")
    if not target:
        return False
    try:
        made = get_object(str(target))
    except ImportError:  # a logger that cannot be made logs nowhere (training says so first)
        return False
    if not isinstance(made, type):
        return False
    from lightning.pytorch.loggers import TensorBoardLogger

    return issubclass(made, TensorBoardLogger)
