"""What screening, keograms and events add to a real run's wall time (issue 27: at most 15 %).

Usage::

    python bench/bench_nights_cost.py                       # YRS 2003-12-21 (/tmp/yrs)
    python bench/bench_nights_cost.py --images DIR --truth CSV --cache DIR --pairs 2

``experiment=real`` (MobileNet-v2 of ``../shared/weights``) on the same folder and cache, in
turns: a warm-up with ``nights.enabled=false`` (fills the feature cache; not counted), then
``--pairs`` pairs of (nights on, with the scan's cache entry removed first so every frame is
read again; nights off). Each line gives the run's wall seconds and, for the runs with nights,
the seconds of its ``screen`` and ``nights`` stages from its log; the last line is
``nights_cost ratio=F stage_share=F`` (median on/off wall ratio; the two stages' share of the
nights-on run). ``--cold``: every run starts from an empty cache of its own (preprocessing and
MobileNet-v2 features included, as a first run on a new folder) and there is no warm-up.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_avg  # noqa: E402
from bench_structure import WEIGHTS, YRS, YRS_TRUTH, real_overrides, run_one  # noqa: E402

_STAGE = re.compile(r"\[(screen|nights)\s*\].*\(([\d.]+) s\)$")


class StageTimes(logging.Handler):
    """Adds up the seconds of the ``screen`` and ``nights`` stage lines the run logs."""

    def __init__(self) -> None:
        super().__init__()
        self.stages: dict[str, float] = {}

    @property
    def seconds(self) -> float:
        return sum(self.stages.values())

    def emit(self, record: logging.LogRecord) -> None:
        m = _STAGE.search(record.getMessage())
        if m:
            self.stages[m.group(1)] = self.stages.get(m.group(1), 0.0) + float(m.group(2))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=Path, default=YRS)
    ap.add_argument("--truth", type=Path, default=YRS_TRUTH)
    ap.add_argument("--weights", type=Path, default=WEIGHTS)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/nights_cost_cache"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/nights_cost"))
    ap.add_argument("--pairs", type=int, default=1)
    ap.add_argument(
        "--cold",
        action="store_true",
        help="every run from an empty cache (preprocessing and features too), as a first run",
    )
    args = ap.parse_args(argv)
    if args.cold:  # a cache of its own, emptied before every run (never the user's --cache)
        args.cache = args.out / "cold_cache"
    base = [
        *real_overrides(args.weights),
        "data=folder",
        f"data.root={args.images}",
        f"data.truth={args.truth}",
        f"paths.cache_dir={args.cache}",
    ]

    def timed(name: str, extra: list[str]) -> tuple[float, float]:
        out = args.out / name
        if out.exists():
            shutil.rmtree(out)
        handler = StageTimes()
        logging.getLogger("aurora").addHandler(handler)
        t0 = time.perf_counter()
        try:
            run_one([*base, *extra], out)
        finally:
            logging.getLogger("aurora").removeHandler(handler)
        if handler.stages:
            print("  stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in handler.stages.items()))
        return time.perf_counter() - t0, handler.seconds

    logging.getLogger("aurora").setLevel(logging.INFO)
    print(f"load {load_avg()}")
    if not args.cold:
        warm, _ = timed("warmup", ["nights.enabled=false"])
        print(f"warm-up (nights off, fills the feature cache): {warm:.1f} s")
    ratios, shares = [], []
    for k in range(args.pairs):
        shutil.rmtree(args.cache / ("" if args.cold else "nights"), ignore_errors=True)
        on, stages = timed(f"on_{k}", [])
        if args.cold:
            shutil.rmtree(args.cache, ignore_errors=True)
        off, _ = timed(f"off_{k}", ["nights.enabled=false"])
        ratios.append(on / off)
        shares.append(stages / on)
        print(
            f"pair {k}: nights on {on:.1f} s (screen + nights stages {stages:.1f} s), "
            f"off {off:.1f} s: ratio {on / off:.3f}"
        )
    print(f"load {load_avg()}")
    print(
        f"nights_cost ratio={statistics.median(ratios):.3f} "
        f"stage_share={statistics.median(shares):.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
