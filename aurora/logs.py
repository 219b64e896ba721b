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


def to_log_files(level: int, msg: str, *args: Any, exc_info: Any = None) -> None:
    """Log to the run's log files only (``FileHandler``s of aurora's and the root logger): what
    the console already shows in one line (or as a printed table) is kept whole in the file."""
    record = log.makeRecord(log.name, level, __file__, 0, msg, args, exc_info)
    handlers = {
        h
        for logger in (log, logging.getLogger())
        for h in logger.handlers
        if isinstance(h, logging.FileHandler)
    }
    for h in handlers:
        if record.levelno >= h.level:
            h.handle(record)
