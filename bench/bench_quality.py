"""Quality bar of issue 9: the whole chain on the synthetic sky, Moon masking on and off.

Usage:
    python bench/bench_quality.py [--n 1200] [--experiment quality] [--out outputs/bench_quality]
        [--cache .cache/aurora] [--threads 2] [OVERRIDE ...]

Runs :func:`aurora.run.run_cluster` twice on the built-in synthetic sky (``--n`` images,
six morphologies, Moon in 30% of them), once with Moon masking on (``preprocess.full.moon=mask``)
and once with it off (``moon=keep``), sharing one cache folder so the second run reuses the
data set and everything that does not depend on the masking. Extra arguments are Hydra
overrides applied to both runs (e.g. ``trainer.max_epochs=5``). Prints, per run:

- AMI of the best grid cell (chosen by the internal Borda ranking, not by the truth) with the
  true morphology (bar: >= 0.7);
- homogeneity of the fused grouping on its assigned images, and the unassigned fraction
  (bar: >= 0.9 with <= 15%);
- AMI of the fused grouping with the Moon flag (bar with masking on: <= 0.05);
- wall time;

and two diagnostics that use the truth (never used by the chain): the best AMI of any grid
cell, and how separable the chosen cell's features are at all: 5-fold accuracy of a
10-nearest-neighbour classifier of the morphology and balanced accuracy of one of the Moon
flag, trained on the true labels (an upper bound on what clustering the same features can find,
and a measure of how much of the Moon the features still carry).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from aurora.run import run_cluster

ROOT = Path(__file__).resolve().parent.parent


def run_once(overrides: list[str], out_dir: Path) -> tuple[dict[str, Any], float]:
    """One whole run of the chain; returns its summary and wall time in seconds."""
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("cluster", overrides=overrides)
    t0 = time.perf_counter()
    summary = run_cluster(cfg, out_dir)
    return summary, time.perf_counter() - t0


def figures(summary: dict[str, Any]) -> dict[str, float]:
    """The quality-bar figures of one run summary."""
    return {
        "best_cell_ami": float(summary["best_cell_external"]["ami"]),
        "fused_homogeneity": float(summary["fused_external"]["homogeneity"]),
        "fused_ami": float(summary["fused_external"]["ami"]),
        "unassigned": float(summary["fused_unassigned_fraction"]),
        "moon_ami": float(summary.get("fused_ami_moon", float("nan"))),
        "n_groups": float(summary["n_groups"]),
    }


def separability(run_dir: Path, data_root: Path) -> dict[str, float]:
    """Supervised diagnostics of one run (truth from the synthetic sky's labels.csv).

    Args:
        run_dir: output folder of a run (its ``results.csv`` and ``solution/``; the features
            are those of the solution's extractor, the one whose fused grouping was chosen).
        data_root: the synthetic data set (its ``labels.csv`` has path, morphology, moon).

    Returns:
        ``best_any_cell_ami`` (max AMI over all grid cells), ``knn_morphology_acc`` and
        ``knn_moon_bacc`` (5-fold 10-NN on the solution extractor's standardised features).
    """
    with open(data_root / "labels.csv", newline="") as fh:
        truth = {r["path"]: r for r in csv.DictReader(fh)}
    with open(run_dir / "results.csv", newline="") as fh:
        best_any = max(float(r["ami"]) for r in csv.DictReader(fh))
    ref = np.load(run_dir / "solution" / "reference.npz")
    feats, ids = ref["features"], [str(i) for i in ref["ids"]]
    morph = np.array([truth[i]["morphology"] for i in ids])
    moon = np.array([truth[i]["moon"] == "1" for i in ids])
    knn = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=10))
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    acc = cross_val_score(knn, feats, morph, cv=folds).mean()
    bacc = cross_val_score(knn, feats, moon, cv=folds, scoring="balanced_accuracy").mean()
    return {
        "best_any_cell_ami": best_any,
        "knn_morphology_acc": float(acc),
        "knn_moon_bacc": float(bacc),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1200)
    ap.add_argument("--experiment", default="quality")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_quality")
    ap.add_argument("--cache", default=str(ROOT / ".cache" / "aurora"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--moon", nargs="+", default=["mask", "keep"], choices=["mask", "keep"])
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for both runs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    base = [
        f"experiment={args.experiment}",
        f"data.synth.n={args.n}",
        f"paths.cache_dir={args.cache}",
        *args.overrides,
    ]
    results: dict[str, dict[str, float]] = {}
    times: dict[str, float] = {}
    extractors: dict[str, str] = {}
    for moon in args.moon:
        summary, seconds = run_once([*base, f"preprocess.full.moon={moon}"], args.out / moon)
        results[moon], times[moon] = figures(summary), seconds
        root = Path(summary["data_root"])
        results[moon] |= separability(args.out / moon, root if root.is_absolute() else ROOT / root)
        with open(args.out / moon / "solution" / "manifest.json") as fh:
            extractors[moon] = json.load(fh)["extractor"]["name"]
        print(f"[{moon}] best cell {summary['best_cell']}: {json.dumps(results[moon])}", flush=True)

    print(f"\nquality bench: {args.n} synthetic images, experiment={args.experiment}")
    print(f"  overrides: {' '.join(args.overrides) or '(none)'}")
    print(f"  {'figure':<34}{'bar':>10}" + "".join(f"{'moon=' + m:>12}" for m in results))
    rows = [
        ("best cell AMI (Borda-chosen)", ">= 0.70", "best_cell_ami"),
        ("fused homogeneity", ">= 0.90", "fused_homogeneity"),
        ("fused unassigned fraction", "<= 0.15", "unassigned"),
        ("fused AMI with morphology", "", "fused_ami"),
        ("fused AMI with Moon flag", "<= 0.05*", "moon_ami"),
        ("fused groups", "", "n_groups"),
        ("diagnostic: best AMI of any cell", "", "best_any_cell_ami"),
        ("diagnostic: 10-NN morphology acc.", "", "knn_morphology_acc"),
        ("diagnostic: 10-NN Moon bal. acc.", "", "knn_moon_bacc"),
    ]
    for label, bar, key in rows:
        cells = "".join(f"{r[key]:>12.3f}" for r in results.values())
        print(f"  {label:<34}{bar:>10}{cells}")
    print("  " + f"{'wall time (s)':<44}" + "".join(f"{t:>12.0f}" for t in times.values()))
    print("  * the Moon bar applies with masking on (moon=mask)")
    print("  10-NN diagnostics on the features of the solution's extractor:", extractors)


if __name__ == "__main__":
    main()
