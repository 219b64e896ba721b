"""What every command-line entry point shares: known errors become one line, not a traceback.

``cluster.py`` (through :func:`aurora.run.cli.main`), ``train.py``, a sweep job and the sweep's
finalisation all run their work under :func:`run_guarded`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from hydra.errors import InstantiationException
from omegaconf.errors import MissingMandatoryValue

from aurora.infra.errors import AuroraError, disk_full_error, out_of_memory_error


def error_line(err: BaseException) -> str | None:
    """The one-line message for ``err`` (without ``error:``), or None when it is a bug.

    The policy is by type: an :class:`aurora.infra.errors.AuroraError` (every error a user can
    cause derives from it) prints its own message, also when Hydra's ``instantiate`` wrapped
    it (a constructor refusing a setting of the YAML). Otherwise a full disk (``ENOSPC`` /
    ``EDQUOT`` anywhere in the ``__cause__`` / ``__context__`` chain, also when raised from
    inside Lightning or torch and wrapped) names the path and the free space, and exhausted
    memory (``MemoryError``, torch's CUDA ``OutOfMemoryError``) names the stage that ran out
    and what to lower there (:func:`aurora.infra.errors.stage_of`). Anything else, a ``ValueError``
    raised by aurora's own code included, is a bug: None.
    """
    if not isinstance(err, Exception):
        return None
    if isinstance(err, InstantiationException) and isinstance(err.__cause__, AuroraError):
        err = err.__cause__
    if isinstance(err, AuroraError):
        return " ".join(str(err).split()) or type(err).__name__
    resource = disk_full_error(err) or out_of_memory_error(err)
    return None if resource is None else str(resource)


def one_line(err: BaseException) -> str:
    """The error on one line: aurora's own (and disk/memory) errors by their message, a bug
    with its type."""
    own = error_line(err)
    if own is not None:
        return own
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def run_guarded(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Call ``fn`` and return a process exit code.

    :class:`aurora.infra.errors.AuroraError` (the messages name the file, setting or model at
    fault), unset required settings, a full disk and exhausted memory are printed as
    ``error: ...`` on one line with exit code 2 (see :func:`error_line`); anything else is a bug
    and keeps its traceback.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        fn(*args, **kwargs)
    except MissingMandatoryValue as err:
        key = getattr(err, "full_key", None) or "a setting"
        print(f"error: {key} is not set (add {key}=... to the command)", flush=True)
        return 2
    except Exception as err:
        line = error_line(err)
        if line is None:
            raise
        print(f"error: {line}", flush=True)
        return 2
    return 0
