"""Preprocessing benchmark: throughput, Moon precision/recall and circle accuracy.

Writes synthetic KHO-like quicklooks (480x480 sky + 24 px caption strip = 480x504 JPEG,
Moon in about half of them) to a temporary folder, then in one run:

1. a straightforward per-image loop (decode with OpenCV, ``preprocess_image``, one process);
2. :func:`aurora.preprocess.build_preprocessed` with ``--jobs`` worker processes into an empty
   cache (decode, preprocess, memmap write, index);
3. the same call again (cache hit);

and prints images/s for each and their ratio, then Moon precision/recall and sky-circle error
against the generator's ground truth.

Usage: ``.venv/bin/python bench/bench_preprocess.py [--n 400] [--jobs 2]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from aurora.data.sources import scan
from aurora.data.synth import CLOUD_PROB, MORPHOLOGIES, render_sky
from aurora.preprocess import PreprocessConfig, preprocess_image
from aurora.preprocess_store import build_preprocessed


def make_dataset(root: Path, n: int, seed: int) -> list[dict[str, float | str]]:
    """Write ``n`` 480x504 JPEGs with a caption strip; return their ground truth."""
    rng = np.random.default_rng(seed)
    truth = []
    for i in range(n):
        moon = bool(rng.random() < 0.5)
        clouds = float(rng.random()) if rng.random() < CLOUD_PROB else 0.0
        img, meta = render_sky(
            MORPHOLOGIES[i % len(MORPHOLOGIES)],
            np.random.default_rng(seed * 100_000 + i),
            480,
            moon,
            clouds,
            caption=False,
        )
        frame = np.zeros((504, 480, 3), np.uint8)
        frame[:480] = img
        frame[482:500, 40:440] = 255
        cv2.putText(
            frame,
            f"Sony a7s at KHO frame {i}",
            (60, 496),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (0, 0, 0),
            1,
        )
        name = f"img{i:05d}.jpg"
        cv2.imwrite(
            str(root / name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92]
        )
        truth.append(
            {
                "id": name,
                "moon": moon,
                "cx": meta.circle_x,
                "cy": meta.circle_y,
                "r": meta.circle_r,
                "mx": meta.moon_x or np.nan,
                "my": meta.moon_y or np.nan,
            }
        )
    return truth


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    cfg = PreprocessConfig(size=224)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        root.mkdir()
        t0 = time.perf_counter()
        truth = make_dataset(root, args.n, args.seed)
        print(f"wrote {args.n} synthetic 480x504 JPEGs in {time.perf_counter() - t0:.1f} s")
        manifest = scan(root)
        files = sorted(root.glob("*.jpg"))

        c0 = time.process_time()
        t0 = time.perf_counter()
        for f in files:
            raw = cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)
            preprocess_image(raw, cfg)
        loop = args.n / (time.perf_counter() - t0)
        loop_cpu = (time.process_time() - c0) / args.n

        o0 = os.times()
        t0 = time.perf_counter()
        store = build_preprocessed(
            manifest, cfg, Path(tmp) / "cache", jobs=args.jobs, progress=False
        )
        built = args.n / (time.perf_counter() - t0)
        o1 = os.times()
        build_cpu = sum(b - a for a, b in zip(o0[:4], o1[:4], strict=True)) / args.n
        t0 = time.perf_counter()
        build_preprocessed(manifest, cfg, Path(tmp) / "cache", jobs=args.jobs, progress=False)
        hit = time.perf_counter() - t0

        print(f"per-image loop (1 process):      {loop:7.1f} images/s")
        print(
            f"build_preprocessed (jobs={args.jobs}):    {built:7.1f} images/s "
            f"({built / loop:.2f}x the loop)"
        )
        print(
            f"CPU per image: loop {loop_cpu * 1e3:.2f} ms, build {build_cpu * 1e3:.2f} ms "
            f"(parent + workers) -> CPU-bound rate on {args.jobs} idle cores "
            f"{args.jobs / build_cpu:.0f} images/s; load average now {os.getloadavg()[0]:.1f}"
        )
        print(f"cache hit:                       {hit * 1000:7.1f} ms for {args.n} images")

        by_id = {t["id"]: t for t in truth}
        tp = fp = fn = tn = 0
        pos_err, circ_err = [], []
        for i, rid in enumerate(store.ids):
            t = by_id[rid]
            det = bool(store.moon[i])
            tp += det and t["moon"]
            fp += det and not t["moon"]
            fn += (not det) and t["moon"]
            tn += (not det) and not t["moon"]
            if det and t["moon"]:
                pos_err.append(
                    np.hypot(store.moon_xyr[i, 0] - t["mx"], store.moon_xyr[i, 1] - t["my"])
                )
            c = store.circle[i]
            circ_err.append(max(abs(c[0] - t["cx"]), abs(c[1] - t["cy"]), abs(c[2] - t["r"])))
        print(
            f"kept {len(store)} of {args.n}; rejected: "
            f"{sorted({r.reason for r in store.rejected})} x{len(store.rejected)}"
        )
        print(
            f"Moon: TP {tp} FP {fp} FN {fn} TN {tn}; precision {tp / max(tp + fp, 1):.3f} "
            f"recall {tp / max(tp + fn, 1):.3f}; centre error median "
            f"{np.median(pos_err) if pos_err else float('nan'):.2f} px"
        )
        ce = np.asarray(circ_err)
        print(
            f"sky circle max(|dcx|,|dcy|,|dr|): median {np.median(ce):.2f} px, "
            f"95% {np.percentile(ce, 95):.2f} px, max {ce.max():.2f} px (480 px frames)"
        )


if __name__ == "__main__":
    main()
