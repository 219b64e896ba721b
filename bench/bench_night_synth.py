"""Event boundaries and onsets of aurora.nights on the synthetic night (known answers).

Usage::

    python bench/bench_night_synth.py [--size 256] [--seed 0] [--out DIR] [overrides...]
    python bench/bench_night_synth.py --run-dir DIR --night-dir NIGHT [--recompute] [...]

Generates the default synthetic night (``python -m aurora.data.synth NIGHT --night``: 21:00-03:00
UT, 60 s cadence, 4 onsets) into ``OUT/night`` (a temporary folder unless ``--out``; never the
repository), then runs ``cluster.py experiment=real data=folder data.root=NIGHT
data.truth=NIGHT/labels.csv <overrides>`` in this process (hydra compose +
:func:`aurora.run.run_cluster`) with the MobileNet-v2 of ``../shared/weights`` (``--weights``)
into ``OUT/run``, and reads the run's ``events.csv``. ``--recompute`` computes the events here
instead, with :func:`aurora.nights.find_events` and ``--set KEY=VALUE`` event settings, from the
run's outputs (``labels.csv`` groups, ``solution/reference.npz`` features, the keogram's
activity, ``screen.csv`` brightness): a quick way to try settings without a new run.

Truth (the night's ``events.csv``): a boundary at the start of every event but the first, an
onset at the start of every event with ``onset`` 1. Found: the start of every event but each
night's first, and the starts of the events flagged ``onset``. Precision, recall and F1 at
+-120 s (one-to-one matching), beside the naive boundaries (every change of the fused group,
smoothed over 120 s; naive onsets: those into one of the night's most active groups) and random
frames of the same count (mean over ``--seeds`` draws). Ends with
``night_synth boundary_p=F boundary_r=F onset_p=F onset_r=F``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np

from aurora.nights import EventSettings, boundary_f1, find_events, read_events_csv
from aurora.nights.boundaries import BoundaryScore
from aurora.nights.events import active_groups, epoch_seconds, majority_smooth

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenetv2_100.tf_quant_in1k_dequant.safetensors"
TOLERANCE_S = 120.0
SMOOTH_S = 120.0


def make_night(night: Path, size: int, seed: int) -> None:
    """The default synthetic night into ``night`` (a subprocess of the generator)."""
    cmd = [sys.executable, "-m", "aurora.data.synth", str(night), "--night"]
    subprocess.run([*cmd, "--size", str(size), "--seed", str(seed)], cwd=ROOT, check=True)


def run_night(night: Path, run_dir: Path, weights: Path, overrides: Sequence[str]) -> float:
    """``experiment=real`` on the night into ``run_dir``; its wall time in seconds."""
    from hydra import compose, initialize_config_dir

    from aurora.run import run_cluster

    ov = [
        "experiment=real",
        "extractor@extractors.mobilenet_v2=mobilenet_v2_tf",
        f"extractors.mobilenet_v2.weights={weights}",
        "data=folder",
        f"data.root={night}",
        f"data.truth={night / 'labels.csv'}",
        *overrides,
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("cluster", overrides=ov)
    t0 = time.perf_counter()
    run_cluster(cfg, run_dir)
    return time.perf_counter() - t0


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _seconds(texts: Sequence[str]) -> np.ndarray:
    return epoch_seconds([datetime.fromisoformat(t.replace("Z", "+00:00")) for t in texts])


def truth_times(night: Path) -> tuple[np.ndarray, np.ndarray]:
    """(boundaries, onsets): seconds of the true event starts (all but the first; onsets)."""
    rows = read_csv(night / "events.csv")
    starts = _seconds([r["start"] for r in rows])
    onset = np.array([r["onset"] == "1" for r in rows])
    return starts[1:], starts[onset]


def recompute(run_dir: Path, settings: EventSettings) -> list:
    """Events from the run's outputs with ``settings`` (one night per keogram)."""
    labels = {r["path"]: int(r["label"]) for r in read_csv(run_dir / "labels.csv")}
    bright = {r["path"]: float(r["brightness"] or "nan") for r in read_csv(run_dir / "screen.csv")}
    with np.load(run_dir / "solution" / "reference.npz", allow_pickle=False) as z:
        feats = dict(zip(z["ids"].tolist(), z["features"], strict=True))
    events = []
    for keo in sorted((run_dir / "keograms").glob("*.npz")):
        with np.load(keo, allow_pickle=False) as z:
            paths, times, act = z["paths"].tolist(), z["times"], z["activity"]
        keep = np.array([p in feats and p in labels for p in paths])
        ids = [p for p, k in zip(paths, keep, strict=True) if k]
        events += find_events(
            keo.stem,
            times[keep],
            features=np.stack([feats[i] for i in ids]),
            groups=np.array([labels[i] for i in ids]),
            activity=act[keep],
            brightness=np.array([bright.get(i, np.nan) for i in ids]),
            settings=settings,
        )
    return events


def naive(run_dir: Path, settings: EventSettings) -> tuple[np.ndarray, np.ndarray]:
    """(boundaries, onsets) of the naive rule: changes of the smoothed fused group."""
    labels = {r["path"]: int(r["label"]) for r in read_csv(run_dir / "labels.csv")}
    bounds, onsets = [], []
    for keo in sorted((run_dir / "keograms").glob("*.npz")):
        with np.load(keo, allow_pickle=False) as z:
            paths, times, act = z["paths"].tolist(), z["times"], z["activity"]
        keep = np.array([p in labels for p in paths])
        sec = epoch_seconds(times[keep])
        grp = np.array([labels[p] for p, k in zip(paths, keep, strict=True) if k])
        smooth = majority_smooth(grp, sec, SMOOTH_S)
        change = np.flatnonzero(smooth[1:] != smooth[:-1]) + 1
        active = active_groups(grp, act[keep], settings.active_fraction)
        bounds.append(sec[change])
        onsets.append(sec[[i for i in change if smooth[i] in active]])
    return np.concatenate(bounds), np.concatenate(onsets)


def random_score(
    frames: np.ndarray, count: int, true: np.ndarray, draws: int
) -> tuple[float, float]:
    """Mean precision and recall of ``count`` random frame times (``draws`` draws)."""
    rng = np.random.default_rng(0)
    count = min(count, frames.size)
    s = [
        boundary_f1(rng.choice(frames, count, replace=False), true, TOLERANCE_S)
        for _ in range(draws)
    ]
    return float(np.mean([x.precision for x in s])), float(np.mean([x.recall for x in s]))


def _line(name: str, n: int, s: BoundaryScore) -> str:
    return f"  {name:7s} {n:4d}: precision {s.precision:.3f} recall {s.recall:.3f} F1 {s.f1:.3f}"


def _settings(pairs: Sequence[str]) -> EventSettings:
    base = EventSettings()
    kw: dict[str, object] = {}
    for p in pairs:
        key, _, value = p.partition("=")
        kind = type(getattr(base, key))
        kw[key] = value if kind is str else kind(value)
    return dataclasses.replace(base, **kw)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("overrides", nargs="*", help="cluster.py overrides")
    ap.add_argument("--size", type=int, default=480, help="frame size (256 is faster)")
    ap.add_argument("--seed", type=int, default=0, help="the night's seed")
    ap.add_argument("--weights", type=Path, default=WEIGHTS, help="MobileNet-v2 TF weights")
    ap.add_argument("--out", type=Path, default=None, help="night in OUT/night, run in OUT/run")
    ap.add_argument("--run-dir", type=Path, default=None, help="read this run, do not run")
    ap.add_argument("--night-dir", type=Path, default=None, help="the run's night (--run-dir)")
    ap.add_argument("--recompute", action="store_true", help="events here, from --set settings")
    ap.add_argument("--set", action="append", default=[], help="event setting KEY=VALUE")
    ap.add_argument("--seeds", type=int, default=20, help="random draws")
    args = ap.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.run_dir is not None:
        if args.night_dir is None:
            ap.error("--run-dir needs --night-dir")
        run_dir, night = args.run_dir, args.night_dir
    else:
        out = args.out or Path(tempfile.mkdtemp(prefix="bench_night_synth_"))
        night, run_dir = out / "night", out / "run"
        make_night(night, args.size, args.seed)
        wall = run_night(night, run_dir, args.weights, args.overrides)
        print(f"night {night} (size {args.size}, seed {args.seed}); run {run_dir}: {wall:.0f} s")
    settings = _settings(args.set)
    if args.recompute or not (run_dir / "events.csv").exists():
        events = recompute(run_dir, settings)
        print(f"events computed here: {settings}")
    else:
        events = read_events_csv(run_dir / "events.csv")
        print(f"events: the run's events.csv ({run_dir / 'events.csv'})")
    firsts = {e.night: e.start for e in reversed(events)}
    found_b = epoch_seconds([e.start for e in events if e.start != firsts[e.night]])
    found_o = epoch_seconds([e.start for e in events if e.onset])
    true_b, true_o = truth_times(night)
    naive_b, naive_o = naive(run_dir, settings)
    frames = _seconds([r["time"] for r in read_csv(night / "labels.csv")])[1:]
    print(f"true boundaries {true_b.size}, onsets {true_o.size}; tolerance +-{TOLERANCE_S:.0f} s")
    scores = {}
    for what, found, nv, true in (
        ("boundaries", found_b, naive_b, true_b),
        ("onsets", found_o, naive_o, true_o),
    ):
        scores[what] = s = boundary_f1(found, true, TOLERANCE_S)
        rp, rr = random_score(frames, found.size, true, args.seeds)
        print(what)
        print(_line("events", found.size, s))
        print(_line("naive", nv.size, boundary_f1(nv, true, TOLERANCE_S)))
        print(f"  random  {found.size:4d}: precision {rp:.3f} recall {rr:.3f}")
    for e in events:
        print(
            f"  event {e.start:%H:%M}-{e.end:%H:%M} group {e.group:2d} share {e.share:.2f} "
            f"act {e.activity_mean:.3g}/{e.activity_peak:.3g} onset {e.onset}"
        )
    b, o = scores["boundaries"], scores["onsets"]
    print(
        f"night_synth boundary_p={b.precision:.3f} boundary_r={b.recall:.3f} "
        f"onset_p={o.precision:.3f} onset_r={o.recall:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
