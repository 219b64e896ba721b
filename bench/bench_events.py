"""Event boundaries of aurora.nights against the transitions of human labels (YRS day).

Usage::

    python bench/bench_events.py IMAGES TRUTH [overrides...] [--out DIR] [--run-dir DIR]

Runs ``cluster.py experiment=real data=folder data.root=IMAGES data.truth=TRUTH <overrides>``
in a subprocess into ``OUT/run`` (``--run-dir``: read an existing run instead), then reads the
run's ``events.csv`` and ``labels.csv``. Without ``events.csv`` (a run from before it), or
with ``--recompute``, the events are computed here with :func:`aurora.nights.find_events` and
this script's settings from the run's fused groups (``labels.csv``), its features
(``solution/reference.npz``: ``ids``, ``features``), the frames' times (file names) and, for
the onsets, the activity (w = 12) and mean brightness of an inscribed sky disc.

Truth: ``truth.csv`` (``path,morphology,time``), each label replaced by the majority over +-60 s,
a boundary wherever it changes. Beside the events: the naive boundaries (every change of the fused
group, smoothed the same way) and random boundaries of the events' count (mean over seeds).
F1 at +-120 s, one-to-one matching. Ends with ``events boundary_f1=F naive_f1=F random_f1=F``.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from aurora.data.decode import read_image
from aurora.data.sources import scan
from aurora.data.timestamps import parse_timestamp
from aurora.nights import (
    ActivityAccumulator,
    EventSettings,
    boundary_f1,
    find_events,
    read_events_csv,
    split_nights,
)
from aurora.nights.events import epoch_seconds, majority_smooth

REPO = Path(__file__).resolve().parents[1]
TOLERANCE_S = 120.0
SMOOTH_S = 120.0  # majority over +-60 s
WINDOW = 12


def run_cluster(images: str, truth: str, overrides: list[str], run_dir: Path) -> float:
    """Run the whole chain into ``run_dir``; its wall time in seconds."""
    cmd = [
        sys.executable,
        str(REPO / "cluster.py"),
        "experiment=real",
        "data=folder",
        f"data.root={images}",
        f"data.truth={truth}",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True)
    return time.perf_counter() - t0


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        return list(csv.DictReader(f))


def transitions(seconds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Times (s) of the frames whose smoothed label differs from the previous frame's."""
    smooth = majority_smooth(labels, seconds, SMOOTH_S)
    return seconds[1:][smooth[1:] != smooth[:-1]]


def disc_curves(images: str, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(T,) activity (w = 12) and mean brightness over the disc inscribed in each frame."""
    records = {r.id: r for r in scan(images).records}
    acc: ActivityAccumulator | None = None
    bright = np.full(len(ids), np.nan)
    for k, i in enumerate(ids):
        img = read_image(records[i]).astype(np.float64)
        img = img.mean(axis=2) if img.ndim == 3 else img
        if acc is None:
            h, w = img.shape
            r, c = np.ogrid[:h, :w]
            disc = (r - (h - 1) / 2) ** 2 + (c - (w - 1) / 2) ** 2 < (min(h, w) / 2) ** 2
            acc = ActivityAccumulator(disc, window=WINDOW, max_size=512)
        acc.add(img)
        bright[k] = img[disc].mean()
    return acc.result() if acc else np.zeros(0), bright  # type: ignore[union-attr]


def events_here(run_dir: Path, images: str, settings: EventSettings) -> tuple[list, dict]:
    """Events computed from the run's outputs (fallback until the run writes events.csv)."""
    rows = read_csv(run_dir / "labels.csv")
    with np.load(run_dir / "solution" / "reference.npz", allow_pickle=False) as z:
        feats = dict(zip(z["ids"].tolist(), z["features"], strict=True))
    rows = [r for r in rows if parse_timestamp(r["path"]) is not None and r["path"] in feats]
    times = [parse_timestamp(r["path"]) for r in rows]
    nights = split_nights(times)
    events = []
    for n, name in enumerate(nights.names):
        idx = nights.frames(n)
        idx = idx[np.argsort([times[i] for i in idx], kind="stable")]
        ids = [rows[i]["path"] for i in idx]
        act, bright = disc_curves(images, ids)
        events += find_events(
            name,
            [times[i] for i in idx],
            features=np.stack([feats[i] for i in ids]),
            groups=np.array([int(rows[i]["label"]) for i in idx]),
            activity=act,
            brightness=bright,
            settings=settings,
        )
    return events, {r["path"]: int(r["label"]) for r in rows}


def run_settings(run_dir: Path) -> str:
    """The run's ``nights.events`` settings, as its ``.hydra/config.yaml`` records them."""
    config = run_dir / ".hydra" / "config.yaml"
    if not config.exists():
        return "unknown"
    from omegaconf import OmegaConf

    events = OmegaConf.select(OmegaConf.load(config), "nights.events")
    return "unknown" if events is None else str(OmegaConf.to_container(events))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images")
    parser.add_argument("truth")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--run-dir", type=Path, default=None, help="read this run, do not run")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument(
        "--recompute", action="store_true", help="events from the settings below, not events.csv"
    )
    parser.add_argument("--min-event-s", type=float, default=EventSettings().min_event_s)
    parser.add_argument("--penalty", type=float, default=EventSettings().penalty)
    parser.add_argument("--group-weight", type=float, default=EventSettings().group_weight)
    parser.add_argument("--pca-dims", type=int, default=EventSettings().pca_dims)
    args = parser.parse_intermixed_args(argv)  # options before or after the overrides
    settings = EventSettings(
        min_event_s=args.min_event_s,
        penalty=args.penalty,
        group_weight=args.group_weight,
        pca_dims=args.pca_dims,
    )
    run_dir = args.run_dir
    if run_dir is None:
        out = args.out or Path(tempfile.mkdtemp(prefix="bench_events_"))
        run_dir = out / "run"
        print(f"run: {run_cluster(args.images, args.truth, args.overrides, run_dir):.0f} s")
    t0 = time.perf_counter()
    if (run_dir / "events.csv").exists() and not args.recompute:
        source = f"the run's events.csv (settings: {run_settings(run_dir)})"
        events = read_events_csv(run_dir / "events.csv")
        fused = {r["path"]: int(r["label"]) for r in read_csv(run_dir / "labels.csv")}
    else:
        source = f"computed here from labels.csv + solution/reference.npz, {settings}"
        events, fused = events_here(run_dir, args.images, settings)
    elapsed = time.perf_counter() - t0
    truth = [r for r in read_csv(Path(args.truth)) if r["path"] in fused]
    truth.sort(key=lambda r: r["time"])
    sec = epoch_seconds([parse_timestamp(r["path"]) for r in truth])  # type: ignore[misc]
    true_b = transitions(sec, np.array([r["morphology"] for r in truth]))
    naive_b = transitions(sec, np.array([fused[r["path"]] for r in truth]))
    found_b = epoch_seconds([e.start for e in events[1:]])  # one night here: starts but the first
    ours = boundary_f1(found_b, true_b, TOLERANCE_S)
    naive = boundary_f1(naive_b, true_b, TOLERANCE_S)
    rng = np.random.default_rng(0)
    rand = [
        boundary_f1(rng.choice(sec[1:], found_b.size, replace=False), true_b, TOLERANCE_S)
        for _ in range(args.seeds)
    ]
    rand_f1 = float(np.mean([r.f1 for r in rand]))
    print(f"events: {source}; {elapsed:.1f} s")
    print(f"frames {len(truth)}; true boundaries {true_b.size} (labels smoothed over +-60 s)")
    durations = np.array([e.duration_s for e in events])
    print(
        f"events {len(events)}, onsets {sum(e.onset for e in events)}, median duration "
        f"{np.median(durations):.0f} s"
    )
    for name, s, n in (("events", ours, found_b.size), ("naive", naive, naive_b.size)):
        print(
            f"{name:7s} boundaries {n:4d}: precision {s.precision:.3f} recall {s.recall:.3f} "
            f"F1 {s.f1:.3f}"
        )
    print(f"random  boundaries {found_b.size:4d}: F1 {rand_f1:.3f} (mean of {args.seeds} seeds)")
    for e in events:
        if e.onset:
            print(
                f"onset {e.start:%H:%M:%S}-{e.end:%H:%M:%S} group {e.group} "
                f"activity peak {e.activity_peak:.3g} at {e.peak_time:%H:%M:%S}"
            )
    print(f"events boundary_f1={ours.f1:.3f} naive_f1={naive.f1:.3f} random_f1={rand_f1:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
