"""The keogram and activity curve of aurora.nights against the published ones of a YRS sequence.

Usage::

    python bench/bench_keogram.py SEQ_DIR

``SEQ_DIR`` is built by ``python ../shared/data/yrs_recipe/build_yrs.py --images-git IMG_GIT
--out SEQ_DIR --sequence N20031221G_08_11_1139`` (``../shared/REAL_DATA.md``): ``images/`` with
the 1,139 frames, ``keogram.mat`` and ``changeLine.mat`` beside them. The frames are read the
project's way (``aurora.data.sources.scan`` then ``aurora.data.decode.read_image``), one at a
time, into :class:`aurora.nights.KeogramBuilder` and :class:`aurora.nights.ActivityAccumulator`.

Published definitions (DeepVisionforAurora/AuroEventSeg, MATLAB, 1-based):
``observeTool/Keogram/calcKeogram.m`` takes ``img(:, 220)``: image column 219 0-based, all 440
rows, north up. ``auroralActMonitor.m`` masks the sky disc ``(j-220)^2 + (k-220)^2 < 220^2``
(row j, column k, 1-based) and computes ``changeD(i)`` with a window of 12 frames, for
``i = 61 .. T-59`` (the loop range of its 60-frame curves; zero elsewhere): it is compared on
those frames, where it is defined.

Prints the figures and ends with ``keogram max_abs_diff=N activity_max_rel_err=F``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.io

from aurora.data.decode import read_image
from aurora.data.sources import scan
from aurora.nights import ActivityAccumulator, KeogramBuilder

SIDE = 440
MERIDIAN_COLUMN = 219  # img(:, 220) in MATLAB
WINDOW = 12
LOOP_MARGIN = 60  # changeD is set for i = 1 + 60 .. T - 59 (1-based)


def sky_disc(side: int = SIDE) -> np.ndarray:
    """(side, side) bool: ``(j-220)^2 + (k-220)^2 < 220^2`` in MATLAB's 1-based indices."""
    j = np.arange(1, side + 1)
    return (j[:, None] - 220) ** 2 + (j[None, :] - 220) ** 2 < 220**2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("seq_dir", type=Path)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    manifest = scan(args.seq_dir / "images")
    records = sorted(manifest.records, key=lambda r: (r.timestamp is None, r.timestamp, r.id))
    rows = np.arange(SIDE)
    builder = KeogramBuilder(rows, np.full(SIDE, MERIDIAN_COLUMN))
    activity = ActivityAccumulator(sky_disc(), window=WINDOW)
    for record in records:
        image = read_image(record)
        builder.add(image, record.timestamp, record.id)
        activity.add(image)
    keo = builder.result()
    act = activity.result()
    elapsed = time.perf_counter() - t0

    published = scipy.io.loadmat(args.seq_dir / "keogram.mat")["keogram"]
    change_d = scipy.io.loadmat(args.seq_dir / "changeLine.mat")["changeD"].ravel()
    t = keo.keogram.shape[1]
    print(f"frames {t} (rejected {len(manifest.rejected)}), {elapsed:.1f} s to read and compute")
    print(
        f"keogram ours {keo.keogram.shape} {keo.keogram.dtype}, "
        f"published {published.shape} {published.dtype}"
    )
    if published.shape != keo.keogram.shape:
        print("keogram shapes differ")
        return 1
    diff = int(np.abs(keo.keogram.astype(np.int64) - published.astype(np.int64)).max())
    defined = np.arange(LOOP_MARGIN, t - LOOP_MARGIN + 1)  # 0-based i of the MATLAB loop
    ref = change_d[defined].astype(np.float64)
    ours = act[defined]
    rel = np.abs(ours - ref) / np.abs(ref)
    print(
        f"activity w={WINDOW}: compared on frames {defined[0]}..{defined[-1]} (0-based, "
        f"{defined.size} frames); ours defined on {int(np.isfinite(act).sum())} frames; "
        f"published range {ref.min():.6g}..{ref.max():.6g}"
    )
    print(f"keogram max_abs_diff={diff} activity_max_rel_err={float(rel.max()):.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
