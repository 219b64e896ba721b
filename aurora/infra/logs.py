"""The package's logger, the one-line-per-stage timer every stage of a run reports through, and
what keeps a run's output one line per event: no progress bars off a terminal, each library
line once, no adverts, the known library warnings handled.

The console and the log file are set by ``conf/hydra/job_logging/aurora.yaml`` (Hydra): the
console shows messages (warnings prefixed ``warning:``) and keeps other libraries' info lines
(Lightning's hardware lines and model summary) for the log file, which has everything with
times and logger names. :func:`quiet_libraries` mends what libraries set up for themselves
when they are imported.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("aurora")

#: Loggers whose info lines the console leaves to the log file: a library's own account of what
#: it does (hardware found, model summary, seeds), which aurora's stage lines already give.
LIBRARY_LOGGERS = ("lightning", "pytorch_lightning", "timm")
#: Lightning's loggers that print its notices (rank_zero_info, rank_zero_warn).
_LIGHTNING_NOTICES = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)
#: Start of the lines that advertise a product rather than report on the run.
ADVERT_PREFIXES = ("💡 Tip:",)


def console_is_terminal() -> bool:
    """True when standard output is a terminal (not a file, pipe or closed stream)."""
    try:
        return bool(sys.stdout is not None and sys.stdout.isatty())
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


def show_progress(requested: bool = True) -> bool:
    """Whether to draw a progress bar: when asked for and the output is a terminal. A bar
    written to a file or pipe is hundreds of carriage-return fragments, one per refresh."""
    return bool(requested) and console_is_terminal()


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


class ConsoleFormatter(logging.Formatter):
    """Console lines: the message alone; a warning or an error says so (``warning: ...``)."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {text}"
        return text


class LibraryInfoFilter(logging.Filter):
    """A console handler's filter: other libraries' info lines go to the log file only
    (:data:`LIBRARY_LOGGERS`); their warnings and errors, and every line of aurora, pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return record.name.split(".")[0] not in LIBRARY_LOGGERS


class AdvertFilter(logging.Filter):
    """Drops lines that advertise a product (:data:`ADVERT_PREFIXES`: Lightning's tips)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to drop
            return True
        return not message.lstrip().startswith(ADVERT_PREFIXES)


def _route_lightning() -> None:
    """Lightning's lines once, through the root logger's handlers (console and log file).

    On import, ``lightning`` adds its own console handler (``INFO: ...`` on stderr) while still
    passing its records up to the root logger, so with Hydra's handlers each line showed twice;
    ``lightning.pytorch`` / ``lightning.fabric``, imported before the root logger had handlers,
    print on their own and pass nothing up. With handlers on the root logger, both are undone.
    """
    if not logging.getLogger().handlers:
        return  # nothing else would print their lines
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:  # the libraries' own console handlers
                logger.removeHandler(handler)
        logger.propagate = True
    for name in _LIGHTNING_NOTICES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, AdvertFilter) for f in logger.filters):
            logger.addFilter(AdvertFilter())


def _known_warnings() -> None:
    """Silence the library warnings aurora cannot act on, each by its message.

    The warnings aurora can act on are mended where they arise instead (explicit parameters to
    scikit-learn and UMAP, workers sized for the data).
    """
    # Lightning 2.6 still builds torch's deprecated LeafSpec when it flattens a batch; the fix is
    # Lightning's (it reaches us from inside the Trainer, on every fit).
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
    )
    # Lightning suggests more DataLoader workers on every fit; aurora's loader sizes them itself
    # (train.loader.num_workers: 0 on small data sets and in tests, where workers cost more
    # than they give).
    warnings.filterwarnings("ignore", message=r".*does not have many workers", category=UserWarning)
    # Lightning's hint when an epoch has fewer batches than log_every_n_steps: the demo's and the
    # tests' small data sets, where the epoch-level values are logged anyway.
    warnings.filterwarnings(
        "ignore", message=r"The number of training batches \(\d+\) is smaller than the logging"
    )


def quiet_libraries() -> None:
    """Each library line once, no adverts, the known library warnings handled (idempotent).

    Called by each entry point (:func:`aurora.run.cli.main`, :func:`aurora.run.train.train`) and
    before each training (Lightning adds its handlers when it is first imported).
    """
    _route_lightning()
    _known_warnings()
