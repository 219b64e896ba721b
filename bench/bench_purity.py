"""How pure can the fused groups of a finished run get, with the truth as judge?

Usage:
    python bench/bench_purity.py RUN_DIR [--truth DATA/labels.csv] [--max-unassigned 0.15]
        [--ks 6 12 20 30 50] [--targets 6 12 37] [--penalties 0 0.1]

A diagnostic for the homogeneity bar of issue 9, never part of the chain. For a run folder
written by ``python cluster.py`` (or ``bench/bench_quality.py``), with a ground-truth table
(path, morphology), it prints:

- the fusion frontier: over the whole grid of ``conf/fusion/search.yaml`` (number of fused
  partitions x threshold x minimum group size), applied to the same ranked cells of the
  solution's extractor, the highest homogeneity of the assigned images among the settings that
  leave at most ``--max-unassigned`` of the images out (and what the search chose instead);
- the loss's own knobs: for each target number of groups G of ``--targets`` and each penalty per
  unassigned image of ``--penalties``, the setting the search would choose and its purity
  (whether a different prior, not a different feature, would have met a bar);
- over-splitting: homogeneity and AMI of K-means and Ward on the solution's reduced embedding
  for each k of ``--ks`` (homogeneity does not penalise splitting a class, so this is how far
  more, smaller groups can take it).

If both stay under a bar, no choice of fusion setting or number of groups reaches it on these
features; the features themselves have to improve.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.metrics import adjusted_mutual_info_score, homogeneity_score

from aurora.fusion import (
    fusion_grid_labels,
    load_partitions,
    search_fusion,
    select_partitions,
)
from aurora.grid.scoring import n_groups

ROOT = Path(__file__).resolve().parent.parent


def fusion_frontier(
    parts: np.ndarray,
    truth: np.ndarray,
    n_partitions: list[int],
    thresholds: list[float],
    min_sizes: list[int],
) -> list[dict[str, float]]:
    """Homogeneity and unassigned fraction of every fusion setting of a grid.

    Args:
        parts: (P, N) ranked partitions, -1 = unassigned.
        truth: (N,) true classes.
        n_partitions, thresholds, min_sizes: the grid.

    Returns:
        One row per setting (settings that assign fewer than 2 images are left out).
    """
    counts = sorted({min(int(k), parts.shape[0]) for k in n_partitions})
    grid = fusion_grid_labels(
        parts, counts, thresholds, [int(m) for m in min_sizes], np.ones(parts.shape[0])
    )
    rows = []
    for n, t, m, labels in grid:
        kept = labels >= 0
        if kept.sum() < 2:
            continue
        rows.append(
            {
                "n_partitions": n,
                "threshold": t,
                "min_cluster_size": m,
                "n_groups": n_groups(labels),
                "unassigned": float(1 - kept.mean()),
                "homogeneity": float(homogeneity_score(truth[kept], labels[kept])),
                "ami": float(adjusted_mutual_info_score(truth[kept], labels[kept])),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument(
        "--truth", type=Path, help="ground-truth CSV; default: the run's data/labels.csv"
    )
    ap.add_argument("--max-unassigned", type=float, default=0.15)
    ap.add_argument("--ks", type=int, nargs="+", default=[6, 12, 20, 30, 50])
    ap.add_argument("--targets", type=int, nargs="+", default=[6, 12, 37])
    ap.add_argument("--penalties", type=float, nargs="+", default=[0.0, 0.1])
    args = ap.parse_args()
    run = args.run_dir
    summary = json.loads((run / "summary.json").read_text())
    truth_csv = args.truth or Path(summary["data_root"]) / "labels.csv"
    if not truth_csv.is_absolute() and not truth_csv.is_file():
        truth_csv = ROOT / truth_csv
    with open(truth_csv, newline="") as fh:
        truth_rows = list(csv.DictReader(fh))
    table = {r["path"]: r["morphology"] for r in truth_rows}
    # The synthetic sky's Moon flag, when the truth has one (the Moon bar of issue 9).
    moon_flag = {r["path"]: r["moon"] for r in truth_rows if r.get("moon") not in (None, "")}
    with open(run / "labels.csv", newline="") as fh:
        fused_rows = list(csv.DictReader(fh))
    truth = np.array([table[r["path"]] for r in fused_rows])
    moon = np.array([moon_flag.get(r["path"], "") for r in fused_rows])
    fused = np.array([int(r["label"]) for r in fused_rows])
    kept = fused >= 0

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        grid = compose("cluster", overrides=["fusion=search"]).fusion.search
    extractor = summary["fusion"]["group"]
    groups = select_partitions(run / "ranking.csv", max(grid.n_partitions), True)
    parts = load_partitions(groups[extractor])
    rows = fusion_frontier(
        parts, truth, list(grid.n_partitions), list(grid.thresholds), list(grid.min_sizes)
    )
    ok = [r for r in rows if r["unassigned"] <= args.max_unassigned]
    best = max(ok, key=lambda r: r["homogeneity"])
    chosen = summary["fusion"]
    print(f"run {run} (fused extractor: {extractor}, {parts.shape[0]} ranked cells)")
    print(
        f"  fusion chosen by the search: {chosen['n_partitions']} partitions, threshold "
        f"{chosen['threshold']}, min size {chosen['min_cluster_size']}: "
        f"homogeneity {homogeneity_score(truth[kept], fused[kept]):.3f} (assigned images), "
        f"unassigned {1 - kept.mean():.1%}"
    )
    print(
        f"  fusion frontier (best of {len(rows)} settings with <= {args.max_unassigned:.0%} "
        f"unassigned): homogeneity {best['homogeneity']:.3f}, AMI {best['ami']:.3f}, "
        f"{best['n_groups']} groups, unassigned {best['unassigned']:.1%} "
        f"({best['n_partitions']} partitions, threshold {best['threshold']}, "
        f"min size {best['min_cluster_size']})"
    )
    top = max(rows, key=lambda r: r["homogeneity"])
    print(
        f"  purest setting at any unassigned fraction: homogeneity {top['homogeneity']:.3f} "
        f"with {top['unassigned']:.1%} unassigned, {top['n_groups']} groups"
    )
    print("  what the search chooses with another target G or unassigned penalty:")
    for g in args.targets:
        for pen in args.penalties:
            res = search_fusion(
                parts,
                n_partitions=grid.n_partitions,
                thresholds=grid.thresholds,
                min_sizes=grid.min_sizes,
                target_groups=g,
                unassigned_penalty=pen,
            )
            y, k = res.labels, res.labels >= 0
            moon_ami = (
                f", Moon AMI {adjusted_mutual_info_score(moon[k], y[k]):.3f}"
                if len(moon_flag) == len(table)
                else ""
            )
            print(
                f"    G={g:<3} penalty {pen:<5} {int(y.max(initial=-1)) + 1:3d} groups, "
                f"unassigned {1 - k.mean():5.1%}, homogeneity "
                f"{homogeneity_score(truth[k], y[k]):.3f}, AMI "
                f"{adjusted_mutual_info_score(truth[k], y[k]):.3f}{moon_ami} "
                f"({res.best['n_partitions']} partitions, threshold {res.best['threshold']}, "
                f"min size {res.best['min_cluster_size']})"
            )
    ref = np.load(run / "solution" / "reference.npz")
    embedding = ref["embedding"]
    ref_truth = np.array([table[str(i)] for i in ref["ids"]])
    print(f"  over-splitting the solution's reduced embedding {embedding.shape}:")
    for k in args.ks:
        for name, model in (
            ("K-means", KMeans(k, n_init=10, random_state=0)),
            ("Ward", AgglomerativeClustering(k, linkage="ward")),
        ):
            labels = model.fit_predict(embedding)
            print(
                f"    k={k:<3} {name:<8} homogeneity "
                f"{homogeneity_score(ref_truth, labels):.3f}, "
                f"AMI {adjusted_mutual_info_score(ref_truth, labels):.3f}"
            )


if __name__ == "__main__":
    main()
