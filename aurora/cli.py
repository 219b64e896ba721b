"""What the command-line entry points share: known errors become one line, not a traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from omegaconf.errors import MissingMandatoryValue

from aurora.errors import AuroraError


def run_guarded(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Call ``fn`` and return a process exit code.

    Errors raised by aurora itself (their messages name the file, setting or model at fault)
    and unset required settings are printed as ``error: ...`` on one line with exit code 2;
    anything else is a bug and keeps its traceback.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        fn(*args, **kwargs)
    except MissingMandatoryValue as err:
        key = getattr(err, "full_key", None) or "a setting"
        print(f"error: {key} is not set (add {key}=... to the command)", flush=True)
        return 2
    except Exception as err:
        if not isinstance(err, AuroraError) and not type(err).__module__.startswith("aurora."):
            raise
        print(f"error: {err}", flush=True)
        return 2
    return 0
