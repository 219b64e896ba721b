"""The keogram and activity curve of aurora.nights against the published ones of a YRS sequence.

Usage::

    python bench/bench_keogram.py SEQ_DIR

``SEQ_DIR`` is built by ``python ../shared/data/yrs_recipe/build_yrs.py --images-git IMG_GIT
--out SEQ_DIR --sequence N20031221G_08_11_1139`` (``../shared/REAL_DATA.md``): ``images/`` with
the 1,139 frames, ``keogram.mat`` and ``changeLine.mat`` beside them. The frames go the way a
run takes them: ``aurora.data.sources.scan``, the station the file names name (``yrs``, its
entry composed from ``conf/station/yrs.yaml``), and the run's night scan
(:func:`aurora.run.night_scan.scan_nights`: the meridian and sky mask of that camera model,
:class:`aurora.nights.KeogramBuilder`, :class:`aurora.nights.ActivityAccumulator`).

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

from aurora.data.sources import scan
from aurora.run.night_scan import ScanSettings, scan_nights
from aurora.run.night_settings import NightSettings
from aurora.sky.camera import sky_mask
from aurora.sky.names import station_from_name

ROOT = Path(__file__).resolve().parents[1]

SIDE = 440
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
    names = {station_from_name(r.id) for r in records}
    if names != {"yrs"}:
        print(f"the file names name the stations {sorted(map(str, names))}, not yrs")
        return 1
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("cluster")
    stations = NightSettings.from_nodes(
        station=None,
        stations=OmegaConf.to_container(cfg.stations, resolve=True),
        screen=None,
        nights=None,
    ).stations
    camera = stations["yrs"].camera
    same_mask = bool(np.array_equal(sky_mask(camera, None, (SIDE, SIDE)), sky_disc()))
    print(f"the yrs camera's sky mask equals the published MATLAB mask: {same_mask}")
    result = scan_nights(
        records,
        [r.timestamp for r in records],
        ["yrs"] * len(records),
        stations,
        np.full((len(records), 3), np.nan),
        settings=ScanSettings(window=WINDOW, max_size=None),
        jobs=1,
    )
    (night,) = result.nights
    keo = night
    act = night.activity
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
