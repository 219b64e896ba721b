"""The package's logger and the one-line-per-stage timer every stage of a run reports through."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("aurora")


@contextlib.contextmanager
def stage(name: str) -> Iterator[dict[str, Any]]:
    """Log one line per stage with its counts and wall time.

    Yields a dict the caller fills with ``msg`` (counts) before the block ends.
    """
    info: dict[str, Any] = {"msg": ""}
    t0 = time.perf_counter()
    yield info
    log.info("[%-10s] %s (%.1f s)", name, info["msg"], time.perf_counter() - t0)
