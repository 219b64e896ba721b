"""What the benchmarks share: machine load, memory of a process, synthetic mixtures, and running
a measurement in a fresh process (so that one method's peak memory is not another's)."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable
from typing import Any

import numpy as np


def load_avg() -> str:
    """The 1/5/15-minute load averages, formatted (quote them next to any timing)."""
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def rss_mb() -> float:
    """Resident memory of this process now, in MB (``VmRSS``)."""
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MB (``VmHWM``).

    Not ``ru_maxrss``: Linux carries that over from the parent across fork + exec, so a spawned
    child would report its parent's peak when that is larger.
    """
    return _status_mb("VmHWM")


def gaussian_mixture(
    n: int, d: int = 10, comps: int = 30, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) float64 points of a Gaussian mixture with uneven weights and spreads, and their
    (n,) component ids."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=6.0, size=(comps, d))
    comp = rng.choice(comps, size=n, p=rng.dirichlet(np.full(comps, 2.0)))
    spread = rng.uniform(0.5, 2.0, comps)
    x = centers[comp] + rng.normal(size=(n, d)) * spread[comp, None]
    return x, comp


def _call(fn: Callable[..., Any], args: tuple[Any, ...], q: Any) -> None:
    try:
        q.put(("ok", fn(*args), peak_rss_mb()))
    except BaseException as err:  # reported to the parent, which decides
        q.put(("error", f"{type(err).__name__}: {err}", peak_rss_mb()))


def in_fresh_process(
    fn: Callable[..., Any], *args: Any, timeout: float | None = None
) -> tuple[Any, float]:
    """Run ``fn(*args)`` in a new (spawned) Python process.

    Args:
        fn: a module-level function (picklable by reference).
        *args: its arguments (picklable).
        timeout: seconds to wait for the result (None = no limit).

    Returns:
        (what ``fn`` returned, the child's peak RSS in MB).

    Raises:
        RuntimeError: the child raised (its error in one line) or died without answering.
    """
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_call, args=(fn, args, q))
    p.start()
    try:
        status, value, peak = q.get(timeout=timeout)
    except Exception as err:
        p.kill()
        raise RuntimeError(f"{fn.__name__} gave no result (exit code {p.exitcode})") from err
    finally:
        p.join()
    if status != "ok":
        raise RuntimeError(f"{fn.__name__} failed in its process: {value}")
    return value, peak
