"""bench/_common.py: the fresh-process measurement the benchmarks' memory figures rest on."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))

from _common import gaussian_mixture, in_fresh_process  # noqa: E402


def _allocate(mb: int) -> float:
    a = np.ones((mb, 1024, 128))  # mb MiB of float64
    return float(a.sum())


def _fail() -> None:
    raise ValueError("planted")


def test_fresh_process_reports_its_own_peak_memory() -> None:
    small, peak_small = in_fresh_process(_allocate, 1)
    big, peak_big = in_fresh_process(_allocate, 150)
    assert big == 150 * 1024 * 128 and small == 1024 * 128
    # the child's own peak: the 150 MiB array is in it, and not in the small child's
    assert peak_big - peak_small == pytest.approx(149 * 1.048576, abs=25)


def test_fresh_process_error_is_one_line() -> None:
    with pytest.raises(RuntimeError, match="_fail failed in its process: ValueError: planted"):
        in_fresh_process(_fail)


def test_mixture_components_cover_every_point() -> None:
    x, comp = gaussian_mixture(500, d=4, comps=5, seed=1)
    assert x.shape == (500, 4) and comp.shape == (500,) and set(comp) <= set(range(5))
