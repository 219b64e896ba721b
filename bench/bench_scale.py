"""A season-sized grid on 2 cores: time and peak memory of each stage for 10k to 1M frames.

    python bench/bench_scale.py                      # n = 10k, 100k, 1M (each in a fresh process)
    python bench/bench_scale.py --n 10000 100000     # a shorter curve
    python bench/bench_scale.py --check-n 50000      # sampled vs full fit only

Synthetic features stand in for a season: a 30-component Gaussian mixture in 512 dimensions
(float32, known components) with a frame time each (frames spread over 120 nights, more on some
nights than others). The chain is aurora's own: ``aurora.grid.cell.run_cell`` with
``grid.fit_sample`` (default 20,000: the reducer and clusterer fit on a sample evenly spaced in
time, every frame assigned), for PCA (80% variance) -> K-means and UMAP (10-d, fitted on the
sample; the other frames placed by their nearest sampled frames) -> K-means; then
``aurora.grid.ranking.write_ranking`` and ``CoAssociationVoting`` over the two partitions. Each n
runs in a fresh process, whose peak RSS is reported.

Check: on a 50,000-frame subset, K-means on PCA fitted on the 20,000-frame sample agrees with
the fit on all 50,000 (ARI, bar 0.9).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import in_fresh_process, load_avg  # noqa: E402

D, COMPONENTS, NIGHTS, K = 512, 30, 120, 30
PCA = {"_target_": "sklearn.decomposition.PCA", "n_components": 0.8, "svd_solver": "full"}
UMAP = {"_target_": "umap.UMAP", "n_neighbors": 15, "n_components": 10, "min_dist": 0.0}
KMEANS = {"_target_": "sklearn.cluster.KMeans", "n_clusters": K, "n_init": 4}


def season(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[datetime]]:
    """(n, 512) float32 features, (n,) component ids, (n,) frame times; written in blocks so
    the peak is the features themselves."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=0.6, size=(COMPONENTS, D)).astype(np.float32)
    comp = rng.choice(COMPONENTS, size=n, p=rng.dirichlet(np.full(COMPONENTS, 2.0)))
    spread = rng.uniform(0.5, 1.5, COMPONENTS).astype(np.float32)
    x = np.empty((n, D), dtype=np.float32)
    for a in range(0, n, 65536):
        c = comp[a : a + 65536]
        noise = rng.standard_normal((len(c), D), dtype=np.float32)
        x[a : a + 65536] = centers[c] + noise * spread[c, None]
    night = rng.choice(NIGHTS, size=n, p=rng.dirichlet(np.full(NIGHTS, 1.0)))
    start = datetime(2016, 11, 1, 18, tzinfo=UTC)
    secs = rng.uniform(0, 12 * 3600, n)
    pairs = zip(night, secs, strict=True)
    times = [start + timedelta(days=int(d), seconds=float(s)) for d, s in pairs]
    return x, comp, times


def chain(n: int, fit_sample: int | None, stability_splits: int = 3) -> dict[str, Any]:
    """The grid of one n, stage by stage; returns seconds per stage and the scores."""
    from sklearn.metrics import adjusted_rand_score

    from aurora.fusion import CoAssociationVoting
    from aurora.grid.cell import run_cell
    from aurora.grid.cell_files import collect_cells, write_cell
    from aurora.grid.ranking import write_ranking
    from aurora.grid.sample import fit_sample_rows
    from aurora.infra.cache import Cache

    out: dict[str, Any] = {"n": n}
    t = time.perf_counter()
    x, comp, times = season(n)
    out["data_s"] = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        rows = fit_sample_rows(n, fit_sample, times=times, seed=0)
        out["sample_s"] = time.perf_counter() - t
        out["fit_rows"] = n if rows is None else len(rows)
        parts = []
        for name, reducer in (("pca", PCA), ("umap", UMAP)):
            t = time.perf_counter()
            res = run_cell(
                x, reducer, KMEANS, seed=0, cache=Cache(root / "cache"), features_key="season",
                stability_splits=stability_splits, fit_rows=rows,
            )  # fmt: skip
            out[f"{name}_s"] = time.perf_counter() - t
            out[f"{name}_reduce_s"] = res.timings["reduce"]
            out[f"{name}_cluster_s"] = res.timings["cluster"]
            out[f"{name}_score_s"] = res.timings["score"]
            out[f"{name}_ari_truth"] = adjusted_rand_score(comp, res.labels)
            meta = {"extractor": "season", "reducer": name, "clusterer": "kmeans",
                    "n_clusters": K, "seed": 0, "random_init": False}  # fmt: skip
            write_cell(res, root / "cells" / name, meta)
            parts.append(res.labels)
        t = time.perf_counter()
        write_ranking(collect_cells(root / "cells"), root / "ranking.csv")
        out["rank_s"] = time.perf_counter() - t
        t = time.perf_counter()
        fused = CoAssociationVoting(threshold=0.5, min_cluster_size=20, progress=False).fit_predict(
            np.stack(parts, 1)
        )
        out["fuse_s"] = time.perf_counter() - t
        out["fused_groups"] = int(fused.max() + 1)
    return out


def sampled_vs_full(n: int, fit_sample: int) -> dict[str, float]:
    """K-means on PCA fitted on a sample and on all n frames: their ARI, beside the ARI of two
    full fits that differ only in the seed (how far K-means itself moves) and each vs truth."""
    from sklearn.metrics import adjusted_rand_score as ari

    from aurora.grid.cell import run_cell
    from aurora.grid.sample import fit_sample_rows
    from aurora.infra.cache import Cache

    x, comp, times = season(n, seed=1)
    rows = fit_sample_rows(n, fit_sample, times=times, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        kw = {"cache": Cache(tmp), "features_key": "s", "stability_splits": 0}
        full = run_cell(x, PCA, KMEANS, seed=0, **kw).labels
        other = run_cell(x, PCA, KMEANS, seed=1, **kw).labels
        part = run_cell(x, PCA, KMEANS, seed=0, fit_rows=rows, **kw).labels
    return {
        "sampled_vs_full": ari(full, part),
        "full_vs_full_other_seed": ari(full, other),
        "full_vs_truth": ari(comp, full),
        "sampled_vs_truth": ari(comp, part),
    }


def main() -> None:
    """Print the stage table per n and the sampled-vs-full check."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--fit-sample", type=int, default=20_000)
    ap.add_argument("--check-n", type=int, default=50_000)
    args = ap.parse_args()
    print(load_avg())
    if args.check_n:
        r, peak = in_fresh_process(sampled_vs_full, args.check_n, args.fit_sample)
        print(
            f"K-means on PCA, n={args.check_n}, fit_sample={args.fit_sample}: ARI sampled vs full "
            f"{r['sampled_vs_full']:.3f} (bar 0.9); two full fits, seeds 0 and 1: "
            f"{r['full_vs_full_other_seed']:.3f}; vs truth: full {r['full_vs_truth']:.3f}, "
            f"sampled {r['sampled_vs_truth']:.3f}; peak {peak / 1024:.1f} GB"
        )
    cols = ["data_s", "pca_reduce_s", "pca_cluster_s", "pca_score_s", "umap_reduce_s",
            "umap_cluster_s", "umap_score_s", "rank_s", "fuse_s"]  # fmt: skip
    print("n, fit_rows, " + ", ".join(cols) + ", total_s, peak_GB, ARI pca/umap vs truth, groups")
    for n in args.n:
        t = time.perf_counter()
        r, peak = in_fresh_process(chain, n, args.fit_sample)
        total = time.perf_counter() - t
        print(
            f"{n}, {r['fit_rows']}, "
            + ", ".join(f"{r[c]:.1f}" for c in cols)
            + f", {total:.0f}, {peak / 1024:.2f}, "
            f"{r['pca_ari_truth']:.3f}/{r['umap_ari_truth']:.3f}, {r['fused_groups']}",
            flush=True,
        )
    print(load_avg())


if __name__ == "__main__":
    main()
