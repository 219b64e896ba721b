"""A synthetic data set: plan every image, render them in parallel, write JPEGs and labels.csv.

Also the command line ``python -m aurora.data.synth OUT_DIR --n 600 --seed 0 --size 480``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from aurora.data.decode import default_jobs
from aurora.data.synth.frames import encode_jpeg, frame_name, frame_time, worker_init
from aurora.data.synth.sky import render_sky
from aurora.data.synth.truth import CSV_COLUMNS, MORPHOLOGIES, SkyMeta, SynthError
from aurora.infra.atomic import atomic_write_text

CLOUD_PROB = 0.35
#: First line of the package docstring, for ``--help``.
SUMMARY = "Synthetic colour all-sky camera images with known auroral morphology and nuisances."


def image_seed(seed: int, index: int) -> int:
    """Per-image seed from the data-set seed and the image index (independent of job count)."""
    # Python-int shift: the same value under NumPy 1 and 2 (NumPy 1 refuses uint64 >> int).
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0]) >> 1


@dataclass(frozen=True)
class ImagePlan:
    """Everything that decides one image of a data set, before any pixel is rendered."""

    index: int
    seed: int
    morphology: str
    moon: bool
    clouds: float
    when: datetime

    @property
    def name(self) -> str:
        """The image's file name."""
        return frame_name(self.when)


def plan_dataset(n: int, seed: int = 0, moon_prob: float = 0.3) -> list[ImagePlan]:
    """The per-image choices of :func:`generate`, cheap to compute for large ``n``.

    Morphologies: equal counts (up to one) in an order shuffled by ``seed``. Moon and clouds
    come from each image's own seed on a stream separate from its pixels, so they are
    independent of the morphology and of the job count.
    """
    reps = -(-n // len(MORPHOLOGIES))
    morphs = np.tile(np.array(MORPHOLOGIES), reps)[:n]
    morphs = np.random.default_rng([seed, 0xC1A55]).permutation(morphs)
    plans = []
    for i in range(n):
        seed_i = image_seed(seed, i)
        r = np.random.default_rng([seed_i, 1])
        moon = bool(r.random() < moon_prob)
        clouds = round(float(r.uniform(0.15, 1.0)), 3) if r.random() < CLOUD_PROB else 0.0
        plans.append(ImagePlan(i, seed_i, str(morphs[i]), moon, clouds, frame_time(i)))
    return plans


def render_plan(plan: ImagePlan, size: int) -> tuple[np.ndarray, SkyMeta]:
    """Render the image a plan describes; (size, size, 3) RGB uint8 and its ground truth."""
    rng = np.random.default_rng(plan.seed)
    return render_sky(plan.morphology, rng, size, plan.moon, plan.clouds, plan.when)


def _render_job(args: tuple[str, ImagePlan, int]) -> dict[str, str]:
    """Render, encode and write one planned image; its ``labels.csv`` row."""
    out_dir, plan, size = args
    img, meta = render_plan(plan, size)
    Path(out_dir, plan.name).write_bytes(encode_jpeg(img))
    return meta.row(plan.name, plan.seed)


def generate(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    size: int = 480,
    moon_prob: float = 0.3,
    jobs: int | None = None,
) -> Path:
    """Write ``n`` synthetic JPEGs and ``labels.csv`` into ``out_dir`` (a flat folder).

    Morphologies are balanced (equal counts up to one, shuffled by ``seed``); the Moon and
    clouds are drawn per image, independently of the morphology.

    Args:
        out_dir: destination folder (created if missing).
        n: number of images (>= 1).
        seed: data-set seed; the same seed gives byte-identical files for any ``jobs``.
        size: image side in pixels.
        moon_prob: probability that an image shows the Moon.
        jobs: worker processes (default: all CPUs); 1 renders in this process.

    Returns:
        Path of the written ``labels.csv``.
    """
    if n < 1:
        raise SynthError(f"number of images must be >= 1, got {n}")
    if size < 32:
        raise SynthError(f"image size must be at least 32 px, got {size}")
    if not 0.0 <= moon_prob <= 1.0:
        raise SynthError(f"moon_prob must be in [0, 1], got {moon_prob}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks = [(str(out), p, size) for p in plan_dataset(n, seed, moon_prob)]
    jobs = min(jobs or default_jobs(), n)
    if jobs <= 1:
        old = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            rows = [_render_job(t) for t in tasks]
        finally:
            cv2.setNumThreads(old)
    else:
        with ProcessPoolExecutor(jobs, initializer=worker_init) as pool:
            rows = list(pool.map(_render_job, tasks, chunksize=max(1, n // (jobs * 8))))
    lines = [",".join(CSV_COLUMNS)]
    lines += [",".join(r[c] for c in CSV_COLUMNS) for r in rows]
    labels = out / "labels.csv"
    atomic_write_text(labels, "\n".join(lines) + "\n")
    return labels


def read_labels(path: str | Path) -> list[dict[str, str]]:
    """Rows of a ``labels.csv`` written by :func:`generate`, as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m aurora.data.synth OUT_DIR --n 600 --seed 0 --size 480``.

    With ``--night``: a night of frames with known events (:mod:`aurora.data.synth.night`).
    """
    from aurora.data.synth.night import add_night_arguments, run_night  # only with --night

    p = argparse.ArgumentParser(prog="python -m aurora.data.synth", description=SUMMARY)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--n", type=int, default=None, help="number of images (default 600)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=480)
    p.add_argument("--moon-prob", type=float, default=None, help="default 0.3")
    p.add_argument("--jobs", type=int, default=None)
    add_night_arguments(p)
    a = p.parse_args(argv)
    try:
        if a.night:
            if a.n is not None or a.moon_prob is not None:
                raise SynthError("--n and --moon-prob do not apply to --night (see --duration)")
            print(run_night(a))
            return 0
        n, moon_prob = 600 if a.n is None else a.n, 0.3 if a.moon_prob is None else a.moon_prob
        labels = generate(a.out_dir, n, a.seed, a.size, moon_prob, a.jobs)
    except SynthError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {n} images and {labels}")
    return 0
