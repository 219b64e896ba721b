"""Screening benchmark on real cameras: the Moon from the ephemeris confirmed in the pixels, and
the cloud score from the stars.

Runs the preprocessing chain (its detections only: a tiny output, as in ``bench_moon.py``)
and :func:`aurora.sky.screen.screen_frames` with the station entries of ``conf/station`` on:

1. ``../shared/data/themis_stream0_gill`` (120 frames, 2014-03-10 06:00-06:06 UT; the Moon is
   about 28 degrees up at azimuth 260 in every frame): bar ``moon`` = 1 on all 120.
2. Yellow River Station 2003-12-21 (``--yrs`` folder, 1,849 frames; the Moon 11-20 degrees
   below the horizon all day): bar ``moon`` = 1 on none.
3. ``../shared/data/kho_sony_samples/LYR-Sony-211121_170751.jpg`` (the Moon low in the east):
   bar flagged, and the detected spot within 5 degrees of the ephemeris Moon (centre to
   centre) with ``kho_sony``'s orientation from the star calibration of another frame.
4. ``../shared/data/kho_sony_cloudiness``: star counts and cloud scores of all 11 frames (the
   reference: the 95th percentile of these frames); bar: the clear frame scores clearer than
   both cloudy ones.

Usage:
    .venv/bin/python bench/bench_screen.py [--yrs /tmp/yrs/images] [--yrs-step 1]
Last line: ``screen gill_moon=N/120 yrs_moon=N kho_moon_sep_deg=F cloud_order_ok=0|1``.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import cv2
import numpy as np
from hydra.utils import instantiate
from omegaconf import OmegaConf

from aurora.data.themis.stream0 import read_stream0_frame, stream0_frames
from aurora.data.timestamps import parse_timestamp
from aurora.preprocess import PreprocessConfig, preprocess_image
from aurora.sky.camera import angular_distance, pixel_to_sky
from aurora.sky.cloud import cloud_scores, star_count
from aurora.sky.names import station_from_name
from aurora.sky.screen import Screening, screen_frames
from aurora.sky.spot import brightest_spot
from aurora.sky.station import Station

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CFG = PreprocessConfig(size=16, dark_threshold=0, star_kernel=0, moon="keep")


def station(name: str) -> Station:
    """The ``conf/station/NAME.yaml`` entry, built."""
    return instantiate(OmegaConf.load(ROOT / "conf" / "station" / f"{name}.yaml"))


def _read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise SystemExit(f"unreadable: {path}")
    return cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB) if img.ndim == 3 else img


def screen_images(images: list[np.ndarray], times: list, st: Station) -> Screening:
    """Preprocess (detections only), find each sky's brightest point, screen."""
    circ, moon, mxyr, glare, gxyr, bright = [], [], [], [], [], []
    for raw in images:
        res = preprocess_image(raw, CFG)
        c = res.circle
        circ.append((c.cx, c.cy, c.r))
        moon.append(res.moon.present)
        mxyr.append((res.moon.x, res.moon.y, res.moon.r))
        glare.append(res.glare.present)
        gxyr.append((res.glare.x, res.glare.y, res.glare.r))
        bright.append(brightest_spot(raw, c))
    return screen_frames(
        times=np.array([np.datetime64(t.replace(tzinfo=None), "ns") for t in times]),
        station=st,
        circle=np.array(circ),
        moon=np.array(moon),
        moon_xyr=np.array(mxyr),
        glare=np.array(glare),
        glare_xyr=np.array(gxyr),
        bright_xy=np.array(bright),
    )


def _summary(name: str, s: Screening, dt: float) -> None:
    n = len(s.moon)
    sep = s.moon_separation_deg[np.isfinite(s.moon_separation_deg)]
    med = f"{np.median(sep):.1f}" if sep.size else "nan"
    print(
        f"{name}: {n} frames in {dt:.1f} s; moon {int(s.moon.sum())}, glare {int(s.glare.sum())}, "
        f"daylight {int(s.daylight.sum())}, twilight {int(s.twilight.sum())}; Moon elevation "
        f"{np.nanmin(s.moon_elevation):.1f}..{np.nanmax(s.moon_elevation):.1f}, azimuth "
        f"{np.nanmin(s.moon_azimuth):.1f}..{np.nanmax(s.moon_azimuth):.1f}, lit "
        f"{np.nanmean(s.moon_illumination):.2f}; Sun max {np.nanmax(s.sun_elevation):.1f}; "
        f"spot-to-Moon separation median {med} deg"
    )


def gill() -> int:
    folder = SHARED / "themis_stream0_gill"
    files = sorted(p for p in folder.iterdir() if ".pgm" in p.name)
    st = station(station_from_name(files[0].name) or "none")
    images, times = [], []
    for f in files:
        for i, t in enumerate(stream0_frames(f)):
            images.append(read_stream0_frame(f, i))
            times.append(t)
    t0 = time.perf_counter()
    s = screen_images(images, times, st)
    _summary(f"GILL ({st.name})", s, time.perf_counter() - t0)
    return int(s.moon.sum())


def yrs(folder: Path, step: int) -> int | None:
    if not folder.is_dir():
        print(f"YRS: {folder} absent (build it as ../shared/REAL_DATA.md says); skipped")
        return None
    paths = sorted(folder.glob("*.bmp"))[::step]
    st = station(station_from_name(paths[0].name) or "none")
    t0 = time.perf_counter()
    s = screen_images([_read(p) for p in paths], [parse_timestamp(p.name) for p in paths], st)
    _summary(f"YRS ({st.name}, every {step})", s, time.perf_counter() - t0)
    return int(s.moon.sum())


def kho() -> float:
    path = SHARED / "kho_sony_samples" / "LYR-Sony-211121_170751.jpg"
    st = station(station_from_name(path.name) or "none")
    raw = _read(path)
    res = preprocess_image(raw, CFG)
    t0 = time.perf_counter()
    s = screen_images([raw], [parse_timestamp(path.name)], st)
    _summary(f"KHO ({st.name})", s, time.perf_counter() - t0)
    az0, el0 = s.moon_azimuth[0], s.moon_elevation[0]
    print(
        f"  ephemeris Moon az {az0:.2f} el {el0:.2f} -> pixel "
        f"({s.moon_x[0]:.0f}, {s.moon_y[0]:.0f})"
    )
    seps = []
    bx, by = brightest_spot(raw, res.circle)
    for what, info in (("Moon", res.moon), ("glare", res.glare)):
        if info.present:
            az, el = pixel_to_sky(info.x, info.y, camera=st.camera, circle=res.circle)
            sep = float(angular_distance(az, el, az0, el0))
            seps.append(sep)
            print(
                f"  detected {what} at ({info.x:.0f}, {info.y:.0f}) r {info.r:.0f} px: az {az:.2f} "
                f"el {el:.2f}, {sep:.2f} deg from the ephemeris (centre to centre)"
            )
    az, el = pixel_to_sky(bx, by, camera=st.camera, circle=res.circle)
    sep_b = float(angular_distance(az, el, az0, el0))
    print(f"  brightest point ({bx:.0f}, {by:.0f}): {sep_b:.2f} deg from the ephemeris")
    print(f"  flagged moon={int(s.moon[0])} glare={int(s.glare[0])}")
    return min(seps) if seps and s.moon[0] else math.nan


def cloudiness() -> int:
    folder = SHARED / "kho_sony_cloudiness"
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    st = station("kho_sony")
    counts = []
    for r in rows:
        rgb = _read(folder / r["filename"])
        circle = preprocess_image(rgb, CFG).circle
        counts.append(star_count(rgb, camera=st.camera, circle=circle))
    scores, ref = cloud_scores(np.array(counts, float), reference=st.clear_sky_stars)
    print(f"cloudiness: reference {ref:.1f} stars (95th percentile of the 11 frames)")
    for r, n, sc in zip(rows, counts, scores, strict=True):
        print(f"  {r['label']:<13}{n:>6} stars  score {sc:.3f}  {r['filename']}")
    clear = [sc for r, sc in zip(rows, scores, strict=True) if r["label"] == "clear"]
    cloudy = [sc for r, sc in zip(rows, scores, strict=True) if r["label"] == "clouds"]
    return int(max(clear) < min(cloudy))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--yrs", type=Path, default=Path("/tmp/yrs/images"))
    p.add_argument("--yrs-step", type=int, default=1, help="use every STEP-th YRS frame")
    args = p.parse_args()
    g = gill()
    y = yrs(args.yrs, args.yrs_step)
    k = kho()
    c = cloudiness()
    print(
        f"screen gill_moon={g}/120 yrs_moon={'nan' if y is None else y} "
        f"kho_moon_sep_deg={k:.2f} cloud_order_ok={c}"
    )


if __name__ == "__main__":
    main()
