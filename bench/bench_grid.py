"""Benchmark of the clustering grid: clusterers at 20k points, and the whole grid on 5,000 images.

Part 1 (clusterers at scale): K-means, sparse spectral and Ward agglomerative clustering, built
from ``conf/clusterer/*.yaml`` with ``n_clusters`` set, on a 10-D Gaussian mixture (n points,
30 components of different sizes and spreads, k = 30). Every fit runs in a fresh process so that
its peak memory is its own: the figure printed is the peak resident set size of that process
minus its size just before the fit (data loaded, modules imported). Times are wall-clock seconds
of ``fit``. ARI against the mixture components is printed as a sanity check only.

Part 2 (the grid): synthetic sky images (``aurora.data.synth``, 96 px), preprocessed once at
64 px, features from timm networks with RANDOM weights (``pretrained=False``: no weights can be
downloaded here; reduce/cluster/score timings depend on the feature shapes, not on which weights
made them; quality is not measured), then every extractor x reducer x clusterer x k cell through
the orchestrator's own grid loop :func:`aurora.run.run_grid` (what ``cluster.py`` runs: the cell
function :func:`aurora.grid.cell.run_cell` with reductions fitted once per feature set and reducer,
cached in a fresh cache, :func:`~aurora.grid.cell_files.write_cell`, failures recorded, then
:func:`~aurora.grid.cell_files.collect_cells`), :func:`~aurora.grid.ranking.write_results` and
:func:`~aurora.grid.ranking.write_ranking`. ``cop_kmeans`` gets must-link / cannot-link constraints
from a few "reference" images per synthetic morphology (:func:`constraints_from_reference`); its
violations are counted on the pairs given and on every pair of references they imply.

All on this machine's CPU cores with default thread counts; the load average is printed because
the machine is shared.

    .venv/bin/python bench/bench_grid.py            # 20k clusterers + full grid (~20-40 min)
    .venv/bin/python bench/bench_grid.py --quick    # smoke run (~2 min)
    .venv/bin/python bench/bench_grid.py --skip-big --threads 1   # grid, 1 BLAS/OpenMP thread

On a 2-core machine shared with other jobs, 2 BLAS/OpenMP threads can be many times slower than
1 (threads wait for each other's time slices); ``--threads`` measures that side of it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import multiprocessing as mp
import os
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from aurora.infra.config import plain

CONF = Path(__file__).resolve().parents[1] / "conf"
REDUCERS = ("pca", "kernel_pca", "isomap", "umap")
CLUSTERERS = ("kmeans", "spectral", "agglomerative", "cop_kmeans")
# inception_v3 rejects 64 px inputs (its stem needs >= 75 px) and runs at ~10 img/s at 80 px
# on this CPU, so densenet121 takes its place.
MODELS = (
    "resnet18:64",
    "resnet50:64",
    "mobilenetv2_100:64",
    "efficientnet_b0:64",
    "densenet121:64",
)
# Reference images per morphology (6 synthetic morphologies): 56 references give
# 56 - 6 = 50 must-link pairs (chains) and C(6, 2) = 15 cannot-link pairs (class heads).
REFS_PER_CLASS = (10, 10, 9, 9, 9, 9)


def load_node(group: str, name: str) -> dict[str, Any]:
    """A ``conf/<group>/<name>.yaml`` node as a plain dict."""
    node = plain(OmegaConf.load(CONF / group / f"{name}.yaml"))
    assert isinstance(node, dict)
    return node  # type: ignore[return-value]


def load_avg() -> str:
    """The 1/5/15-minute load averages, formatted."""
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


# ---------------------------------------------------------------------------------------------
# Part 1: clusterers at 20k points, each fit in a fresh process.


def gaussian_mixture(n: int, d: int = 10, comps: int = 30, seed: int = 0) -> tuple[Any, Any]:
    """(n, d) float64 points of a Gaussian mixture and their (n,) component ids."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=6.0, size=(comps, d))
    comp = rng.choice(comps, size=n, p=rng.dirichlet(np.full(comps, 2.0)))
    spread = rng.uniform(0.5, 2.0, comps)
    x = centers[comp] + rng.normal(size=(n, d)) * spread[comp, None]
    return x, comp


def _status_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process in MB, from /proc/self/status.

    ``VmHWM`` belongs to this process's own address space; ``ru_maxrss`` is not used because
    Linux carries it over from the parent across fork + exec (a spawned child would report
    the parent's peak when that is larger).
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _fit_worker(node: dict[str, Any], path: str, q: Any) -> None:
    """Fit one estimator on the saved points; report (seconds, peak MB, ARI, error)."""
    try:
        from sklearn.metrics import adjusted_rand_score

        from aurora.clustering import check_estimator_memory
        from aurora.infra.config import make_estimator

        x = np.load(path + ".x.npy")
        truth = np.load(path + ".y.npy")
        est = make_estimator(node, seed=0)
        base = _status_mb("VmRSS")
        t0 = time.perf_counter()
        check_estimator_memory(est, x.shape[0])
        est.fit(x)
        dt = time.perf_counter() - t0
        peak = _status_mb("VmHWM") - base
        q.put((dt, peak, float(adjusted_rand_score(truth, est.labels_)), ""))
    except BaseException as err:  # reported by the parent, never a hang
        q.put((float("nan"), float("nan"), float("nan"), f"{type(err).__name__}: {err}"))


def measure_fit(node: dict[str, Any], path: str) -> tuple[float, float, float, str]:
    """Run :func:`_fit_worker` in a fresh spawned process and return its report."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_fit_worker, args=(node, path, q))
    proc.start()
    res = q.get()
    proc.join()
    return res


def bench_clusterers(tmp: Path, n: int, k: int) -> None:
    """Part 1: print time, peak memory growth and ARI of each clusterer at ``n`` points."""
    from aurora.clustering import MemoryLimitError, WardClustering

    print(f"== Part 1: clusterers at n={n:,} (10-D Gaussian mixture, 30 components), k={k}")
    print(f"   {load_avg()}")
    x, comp = gaussian_mixture(n)
    path = str(tmp / f"mixture_{n}")
    np.save(path + ".x.npy", x)
    np.save(path + ".y.npy", comp)
    cases = [
        ("kmeans", "kmeans.yaml (n_init=10)", {}),
        ("spectral", "spectral.yaml (10-NN affinity)", {}),
        ("agglomerative", "agglomerative.yaml (dense Ward)", {}),
        ("agglomerative", "Ward, connectivity_neighbors=10", {"connectivity_neighbors": 10}),
    ]
    print(f"   {'case':<34}{'fit s':>9}{'peak +MB':>10}{'ARI':>7}")
    for name, label, extra in cases:
        node = {**load_node("clusterer", name), "n_clusters": k, **extra}
        dt, peak, ari, err = measure_fit(node, path)
        if err:
            print(f"   {label:<34} FAILED {err}", flush=True)
        else:
            print(f"   {label:<34}{dt:9.2f}{peak:10.0f}{ari:7.3f}", flush=True)
    for big in (25_000, 50_000):
        try:
            WardClustering(n_clusters=k).fit(np.zeros((big, 2)))
            print(f"   dense Ward at n={big:,}: accepted (budget not exceeded)")
        except MemoryLimitError as err:
            print(f"   dense Ward at n={big:,} refused before allocating: {err}")
    print(f"   {load_avg()}")


# ---------------------------------------------------------------------------------------------
# Part 2: the grid.


def build_inputs(work: Path, n: int, models: list[str]) -> dict[str, Any]:
    """Synthetic images -> preprocessed store -> cached random-weight features per model."""
    from aurora.data.sources import scan
    from aurora.data.synth import generate, read_labels
    from aurora.extractors import TimmExtractor, extract_features
    from aurora.preprocess import PreprocessConfig, build_preprocessed

    sky, cache_root = work / "sky", work / "cache"
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    labels_csv = sky / "labels.csv"
    if not labels_csv.is_file():
        generate(sky, n=n, seed=0, size=96)
    times["synth images (96 px)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    store = build_preprocessed(scan(sky), PreprocessConfig(size=64), cache_root, progress=False)
    times["preprocess (64 px)"] = time.perf_counter() - t0
    rows = {r["path"]: r for r in read_labels(labels_csv)}
    print(f"   {n} images generated, {len(store)} kept, {len(store.rejected)} rejected")
    features: dict[str, Any] = {}
    for spec in models:
        name, _, size = spec.partition(":")
        ex = TimmExtractor(name, pretrained=False, input_size=int(size or 64))
        t0 = time.perf_counter()
        fs = extract_features(store, ex, cache_root, batch_size=64, device="cpu", progress=False)
        assert fs is not None and fs.provenance["random_init"], "weights must be random here"
        dt = time.perf_counter() - t0
        times[f"features {name} @{ex.input_size}px"] = dt
        print(
            f"   features {name:<16} {tuple(fs.features.shape)} random weights "
            f"{dt:7.1f} s ({len(store) / dt:6.0f} img/s)",
            flush=True,
        )
        features[name] = fs
    truth = np.array([rows[i]["morphology"] for i in store.ids], dtype=object)
    moon = np.array([rows[i]["moon"] for i in store.ids], dtype=object)
    return {"features": features, "truth": truth, "moon": moon, "times": times}


def reference_constraints(
    truth: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Constraints from a few reference images per class, and every pair they imply.

    Returns:
        ``(must_link, cannot_link)`` as given to the clusterer, then all same-class pairs and
        all cross-class pairs among the references (for checking violations).
    """
    from aurora.clustering import constraints_from_reference

    rng = np.random.default_rng(seed)
    classes: list[str | None] = [None] * len(truth)
    for cls, m in zip(sorted(set(truth)), REFS_PER_CLASS, strict=False):
        for i in rng.choice(np.flatnonzero(truth == cls), m, replace=False):
            classes[i] = str(cls)
    ml, cl = constraints_from_reference(classes)
    refs = [i for i, c in enumerate(classes) if c is not None]
    same = [(a, b) for a, b in itertools.combinations(refs, 2) if classes[a] == classes[b]]
    cross = [(a, b) for a, b in itertools.combinations(refs, 2) if classes[a] != classes[b]]
    return ml, cl, np.asarray(same, np.int64), np.asarray(cross, np.int64)


@dataclass(frozen=True)
class GridInput:
    """One extractor's features as the grid takes them (:class:`aurora.run.grid.GridFeatures`)."""

    features: np.ndarray  # (N, D)
    key: str
    random_init: bool


def bench_grid(
    work: Path,
    n: int,
    models: list[str],
    ks: list[int],
    splits: int,
    keep: bool,
    threads: int | None = None,
) -> None:
    """Part 2: features once, then every cell through run_grid; print stage times."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from aurora.clustering import count_violations
    from aurora.grid.cell import grid_cells
    from aurora.grid.cell_files import collect_failed
    from aurora.grid.ranking import write_ranking, write_results
    from aurora.run import run_grid

    print(f"== Part 2: grid on {n:,} synthetic images, {os.cpu_count()} CPU cores")
    pools = ", ".join(f"{p['internal_api']}={p['num_threads']}" for p in threadpool_info())
    print(f"   thread pools: {pools}; cells limited to: {threads or 'no limit'}")
    print(f"   {load_avg()}")
    inputs = build_inputs(work, n, models)
    print(f"   {load_avg()}")
    ml, cl, all_same, all_cross = reference_constraints(inputs["truth"])
    print(
        f"   cop_kmeans constraints: {len(ml)} must-link + {len(cl)} cannot-link pairs from "
        f"{sum(REFS_PER_CLASS)} reference images (imply {len(all_same)} "
        f"same-class and {len(all_cross)} cross-class pairs)"
    )
    features = {
        ext: GridInput(fs.features, fs.key, bool(fs.provenance["random_init"]))
        for ext, fs in inputs["features"].items()
    }
    cells = grid_cells(list(features), REDUCERS, CLUSTERERS, ks)
    run_dir = Path(tempfile.mkdtemp(prefix="grid_", dir=work))
    cells_dir = run_dir / "cells"
    t_grid = time.perf_counter()
    # BLAS and OpenMP pools (threadpoolctl). UMAP's numba code runs single-threaded anyway:
    # random_state is set from the run seed.
    limit = threadpool_limits(limits=threads) if threads else contextlib.nullcontext()
    with limit:
        # The orchestrator's own grid loop: run_cell, write_cell, failures recorded, collected.
        rows = run_grid(
            cells,
            features,
            {r: load_node("reducer", r) for r in REDUCERS},
            {c: load_node("clusterer", c) for c in CLUSTERERS},
            seed=0,
            cache_dir=run_dir / "cache",  # fresh: every reduction is fitted in this run
            stability_splits=splits,
            cells_dir=cells_dir,
            must_link=ml,
            cannot_link=cl,
            truth=inputs["truth"],
            nuisances={"moon": inputs["moon"]},
        )
    t_cells = time.perf_counter() - t_grid
    failed = {Path(f["cell_dir"]).name: f for f in collect_failed(cells_dir)}
    failures = [f"{f['cell']}: {f['error']}" for f in failed.values()]
    by_dir = {Path(r["cell_dir"]).name: r for r in rows}
    fits: dict[tuple[str, str], tuple[float, int]] = {}
    reduce_reads: dict[str, float] = defaultdict(float)
    clu_time: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    viol: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    names: list[str] = []
    for spec in cells:  # in run order: the first cell of an (extractor, reducer) fitted it
        row = by_dir.get(spec.name)
        if row is None:
            f = failed.get(spec.name, {"cell": spec.name, "type": "no result"})
            print(f"   {f['cell']:<44} FAILED ({f['type']})", flush=True)
            continue
        names.append(str(row["cell"]))
        tm, ext, red, clu = row["timings"], spec.extractor, spec.reducer, spec.clusterer
        if (ext, red) not in fits:
            fits[ext, red] = (tm["reduce"], int(row["embedding_dim"]))
        else:
            reduce_reads[red] += tm["reduce"]
        clu_time[clu]["cluster"] += tm["cluster"]
        clu_time[clu]["score"] += tm["score"]
        clu_time[clu]["cells"] += 1
        v = viol[clu]
        v[0] += int(row.get("must_link_violations", 0))
        v[1] += int(row.get("cannot_link_violations", 0))
        all_ml, all_cl = count_violations(np.load(row["labels_path"]), all_same, all_cross)
        v[2] += all_ml
        v[3] += all_cl
        print(
            f"   {row['cell']:<44} reduce {tm['reduce']:6.2f}  cluster {tm['cluster']:6.2f}  "
            f"score {tm['score']:6.2f}  ml/cl viol {all_ml}/{all_cl}",
            flush=True,
        )
    t0 = time.perf_counter()
    write_results(rows, run_dir / "results.csv")
    write_ranking(rows, run_dir / "ranking.csv")
    t_rank = time.perf_counter() - t0
    t_grid = time.perf_counter() - t_grid
    with open(run_dir / "ranking.csv", newline="") as f:
        ranked = {r["cell"] for r in csv.DictReader(f)}

    n_feat = len(inputs["features"])
    print("\n== Summary (features from RANDOM-weight networks; timings only, no quality claim)")
    print(f"   BLAS/OpenMP threads in the cells: {threads or 'default'}")
    print(f"   {load_avg()}")
    print("   -- setup (cached for the grid)")
    for what, dt in inputs["times"].items():
        print(f"   {what:<40}{dt:9.1f} s")
    feat_total = sum(dt for w, dt in inputs["times"].items() if w.startswith("features"))
    print(f"   {'features total':<40}{feat_total:9.1f} s")
    print("   -- reducer fits (once per feature set; s, output dim)")
    print(f"   {'extractor':<18}" + "".join(f"{r:>16}" for r in REDUCERS))
    for ext in inputs["features"]:
        cells = [fits.get((ext, r)) for r in REDUCERS]
        print(
            f"   {ext:<18}"
            + "".join(f"{c[0]:10.1f} ({c[1]:>3})" if c else f"{'failed':>16}" for c in cells)
        )
    totals = [sum(fits[e, r][0] for e in inputs["features"] if (e, r) in fits) for r in REDUCERS]
    print(f"   {'sum of fits':<18}" + "".join(f"{t:16.1f}" for t in totals))
    print(f"   {'sum cache reads':<18}" + "".join(f"{reduce_reads[r]:16.2f}" for r in REDUCERS))
    print("      (the first umap fit of the process includes numba's JIT compilation)")
    print("   -- clusterers, summed over their cells (score = internal + stability refits +")
    print(f"      external; stability_splits={splits})")
    print(
        f"   {'clusterer':<16}{'cells':>6}{'fit s':>10}{'score s':>10}{'total s':>10}"
        f"{'ML viol':>9}{'CL viol':>9}{'all-ML':>8}{'all-CL':>8}"
    )
    for c in CLUSTERERS:
        t, v = clu_time[c], viol[c]
        print(
            f"   {c:<16}{int(t['cells']):>6}{t['cluster']:10.1f}{t['score']:10.1f}"
            f"{t['cluster'] + t['score']:10.1f}{v[0]:>9}{v[1]:>9}{v[2]:>8}{v[3]:>8}"
        )
    print("      (ML/CL viol: of the pairs given; all-ML/all-CL: of every implied reference pair;")
    print("       only cop_kmeans uses the constraints, the others are shown for comparison)")
    expected = n_feat * len(REDUCERS) * len(CLUSTERERS) * len(ks)
    print("   -- grid")
    print(f"   {'cells run / expected':<40}{len(names):>6} / {expected}")
    print(f"   {'failed cells':<40}{len(failures):>6}")
    print(f"   {'cells (reduce+cluster+score) + collect':<40}{t_cells:9.1f} s")
    print(f"   {'results.csv + ranking.csv':<40}{t_rank:9.1f} s")
    print(f"   {'total grid time (from cached features)':<40}{t_grid:9.1f} s")
    t_all = t_grid + sum(inputs["times"].values())
    print(f"   {'total incl. images+preprocess+features':<40}{t_all:9.1f} s")
    ok = ranked == set(names) and len(rows) == len(names)
    print(f"   ranking.csv has {len(ranked)} rows, every run cell present: {ok}")
    print(f"   outputs in {run_dir}" + ("" if keep else " (temporary, deleted at exit)"))
    for f in failures:
        print(f"   FAILED {f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--n", type=int, default=None, help="synthetic images (default 5000)")
    ap.add_argument("--big-n", type=int, default=None, help="points of part 1 (default 20000)")
    ap.add_argument("--models", nargs="+", default=None, help="timm names, name:input_px")
    ap.add_argument("--ks", nargs="+", type=int, default=[6, 12])
    ap.add_argument("--stability-splits", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None, help="keep images/features here")
    ap.add_argument(
        "--threads", type=int, default=None, help="BLAS/OpenMP threads in the grid cells"
    )
    ap.add_argument("--skip-big", action="store_true", help="skip part 1")
    ap.add_argument("--skip-grid", action="store_true", help="skip part 2")
    args = ap.parse_args()
    n = args.n or (300 if args.quick else 5000)
    big_n = args.big_n or (3000 if args.quick else 20_000)
    models = args.models or (list(MODELS[:2]) if args.quick else list(MODELS))
    import torch

    print(
        f"cpu cores {os.cpu_count()}, torch threads {torch.get_num_threads()}, "
        f"{load_avg()}; n={n} big_n={big_n} models={models} ks={args.ks}"
    )
    with tempfile.TemporaryDirectory() as d:
        if not args.skip_big:
            bench_clusterers(Path(d), big_n, 30)
        if not args.skip_grid:
            work = args.workdir or Path(d)
            work.mkdir(parents=True, exist_ok=True)
            bench_grid(
                work,
                n,
                models,
                args.ks,
                args.stability_splits,
                args.workdir is not None,
                args.threads,
            )


if __name__ == "__main__":
    main()
