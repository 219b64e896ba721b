"""Moon (and edge-glare, twilight) detector benchmark on a labelled folder.

Runs the preprocessing chain (its detections do not depend on the output size, so a tiny
output is used) on every ``--step``-th image of a truth table and prints, per class, how many
images were flagged as having the Moon, edge glare, or a twilight (bright) sky. When the table
has a ``moon`` column (the synthetic sky's ``labels.csv``), precision and recall of the Moon
flag against it are printed too, with the median centre error (``moon_x``, ``moon_y``).
Frames of a night without the Moon (Yellow River Station 2003-12-21, two days before new
moon, Sun and Moon below the horizon all day) should almost never be flagged.

Usage:
    .venv/bin/python bench/bench_moon.py /tmp/yrs/images --truth /tmp/yrs/truth.csv
    .venv/bin/python bench/bench_moon.py /tmp/synth600 --truth /tmp/synth600/labels.csv
Options: ``--step 4`` (every 4th image), ``--class-col morphology``, ``--list-flagged N``.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from aurora.preprocess import PreprocessConfig, preprocess_image

#: Detections are made on a fixed work square; a tiny output keeps the rest of the chain cheap.
CFG = PreprocessConfig(size=16, dark_threshold=0, star_kernel=0, moon="keep")
"""Run with ``PYTHONPATH=<a checkout of an older commit>`` to measure that version's detector."""


def _read(path: Path) -> np.ndarray | None:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        return None
    if img.ndim == 3:
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)
    return img


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--truth", type=Path, required=True, help="CSV with a path column")
    p.add_argument("--class-col", default="morphology")
    p.add_argument("--step", type=int, default=1, help="use every STEP-th image")
    p.add_argument("--list-flagged", type=int, default=0, help="print up to N flagged images")
    args = p.parse_args()
    with open(args.truth, newline="") as f:
        rows = list(csv.DictReader(f))[:: args.step]
    has_moon = bool(rows) and "moon" in rows[0]
    n_cls: Counter[str] = Counter()
    moon: Counter[str] = Counter()
    glare: Counter[str] = Counter()
    twilight: Counter[str] = Counter()
    tp = fp = fn = tn = 0
    errs: list[float] = []
    names: list[str] = []
    t0 = time.perf_counter()
    for row in rows:
        raw = _read(args.folder / row["path"])
        if raw is None:
            print(f"unreadable: {row['path']}")
            continue
        res = preprocess_image(raw, CFG)
        cls = row.get(args.class_col, "all")
        n_cls[cls] += 1
        moon[cls] += res.moon.present
        # getattr: the same script measures the chain before glare and twilight existed.
        glare[cls] += getattr(res, "glare", res.moon).present and hasattr(res, "glare")
        twilight[cls] += getattr(res, "twilight", False)
        if res.moon.present:
            names.append(row["path"])
        if has_moon:
            truth = row["moon"] in ("1", "True", "true")
            tp += res.moon.present and truth
            fp += res.moon.present and not truth
            fn += (not res.moon.present) and truth
            tn += (not res.moon.present) and not truth
            if res.moon.present and truth:
                mx, my = float(row["moon_x"]), float(row["moon_y"])
                errs.append(math.hypot(res.moon.x - mx, res.moon.y - my))
    dt = time.perf_counter() - t0
    n = sum(n_cls.values())
    print(f"{args.folder}: {n} images (every {args.step}) in {dt:.1f} s")
    head = f"{'class':<16}{'n':>6}{'moon':>7}{'rate':>8}{'glare':>7}{'rate':>8}{'twilight':>9}"
    print(head)

    def line(name: str, k: int, m: int, g: int, t: int) -> str:
        k1 = max(k, 1)
        return f"{name:<16}{k:>6}{m:>7}{m / k1:>8.1%}{g:>7}{g / k1:>8.1%}{t:>9}"

    for cls in sorted(n_cls):
        print(line(cls, n_cls[cls], moon[cls], glare[cls], twilight[cls]))
    print(line("all", n, sum(moon.values()), sum(glare.values()), sum(twilight.values())))
    if has_moon:
        prec, rec = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
        med = float(np.median(errs)) if errs else math.nan
        print(
            f"Moon vs truth: TP {tp} FP {fp} FN {fn} TN {tn}; precision {prec:.3f} "
            f"recall {rec:.3f}; agreement {(tp + tn) / max(n, 1):.3f}; "
            f"centre error median {med:.2f} px"
        )
    for name in names[: args.list_flagged]:
        print(f"flagged: {name}")


if __name__ == "__main__":
    main()
