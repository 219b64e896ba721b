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

With ``--real DIR --truth CSV`` (a labelled real folder, e.g. Yellow River Station:
``path,morphology,time``) it measures instead how much of the morphology each variant of the
chain keeps: every ``--step``-th image through the thesis chain and the beyond-thesis steps of
``experiment=demo`` (background subtraction, gain cap, moonlight), each output reduced to
32x32 grey pixels, then a 10-NN classifier trained on even hours and tested on odd hours
(neighbouring frames are near duplicates: never a random split) and PCA-20 + K-means (k = number
of classes) scored by AMI. The labels only score; nothing is fitted to them.
``.venv/bin/python bench/bench_preprocess.py --real /tmp/yrs/images --truth /tmp/yrs/truth.csv``
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
from aurora.preprocess import PreprocessConfig, build_preprocessed, preprocess_image


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


#: Chain variants compared on real frames (PreprocessConfig overrides; size 64).
VARIANTS: dict[str, dict[str, float | bool]] = {
    "thesis chain (preprocess=full)": {},
    "experiment=demo (background 0.3, max_gain 6, moonlight)": {
        "background": 0.3,
        "max_gain": 6.0,
        "moon_light": True,
    },
    "max_gain 6 + moonlight, no background": {"max_gain": 6.0, "moon_light": True},
    "background 0.3 only": {"background": 0.3},
    "background 0.6, max_gain 6, moonlight": {
        "background": 0.6,
        "max_gain": 6.0,
        "moon_light": True,
    },
}


def real_information(folder: Path, truth: Path, step: int) -> None:
    """Print what each chain variant keeps of the morphology of a labelled real folder."""
    import csv

    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_mutual_info_score
    from sklearn.neighbors import KNeighborsClassifier

    with open(truth, newline="") as f:
        rows = list(csv.DictReader(f))[::step]
    raws = []
    for r in rows:
        img = cv2.imread(str(folder / r["path"]), cv2.IMREAD_UNCHANGED)
        raws.append(img if img.ndim == 2 else cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB))
    y = np.array([r["morphology"] for r in rows])
    even = np.array([int(r["time"][11:13]) % 2 == 0 for r in rows])
    k = len(set(y))
    majority = max(np.mean(y[~even] == c) for c in set(y))
    print(f"{folder}: {len(rows)} images, {k} classes; odd-hour majority share {majority:.3f}")
    for name, kw in VARIANTS.items():
        cfg = PreprocessConfig(size=64, **kw)
        t0 = time.perf_counter()
        x = np.empty((len(raws), 32 * 32), np.float32)
        for i, raw in enumerate(raws):
            out = preprocess_image(raw, cfg).image
            grey = np.zeros((64, 64), np.uint8) if out is None else out[..., 1]
            x[i] = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).ravel() / 255.0
        knn = KNeighborsClassifier(10).fit(x[even], y[even])
        acc = float(np.mean(knn.predict(x[~even]) == y[~even]))
        z = PCA(20, random_state=0).fit_transform(x)
        ami = adjusted_mutual_info_score(y, KMeans(k, n_init=10, random_state=0).fit_predict(z))
        print(
            f"  {name:<58} 10-NN acc {acc:.3f}  PCA-20 K-means AMI {ami:.3f}  "
            f"({time.perf_counter() - t0:.0f} s)"
        )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--real", type=Path, default=None, help="labelled real image folder")
    p.add_argument("--truth", type=Path, default=None, help="path,morphology,time CSV")
    p.add_argument("--step", type=int, default=1, help="with --real: every STEP-th image")
    args = p.parse_args()
    if args.real is not None:
        if args.truth is None:
            p.error("--real needs --truth")
        real_information(args.real, args.truth, args.step)
        return
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
