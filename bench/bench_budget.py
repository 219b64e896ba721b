"""The up-front grid + fusion memory estimate beside the measured peak RSS of the same work.

    python bench/bench_budget.py                 # n = 10k, 100k
    python bench/bench_budget.py --n 10000 100000 1000000
    python bench/bench_budget.py --table         # also: what cluster.py would print per n

The work is bench_scale's season (512-d float32 features, 30-component mixture, frames over 120
nights) through aurora's own cells with ``grid.fit_sample`` = 20,000: PCA (80 % variance) ->
K-means and UMAP (10-d) -> K-means, ranking, and the fusion of the two partitions, in a fresh
process whose peak RSS (``VmHWM``) is measured. The estimate is
``max(aurora.run.budget.grid_memory(...), fusion_memory(...))`` for the same cells, with the
base of a process without torch (:data:`aurora.run.budget.model.BENCH_BASE_BYTES`; a
``cluster.py`` run adds torch's ~0.7 GB to its base).

``--table`` prints the estimate table of the default ``cluster`` config (all five extractors,
PCA and UMAP x K-means, spectral and Ward x k 30 and 100) for a data set of each n (a stand-in
manifest: the estimate reads only the records' count and ids, and the cache).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import in_fresh_process, load_avg  # noqa: E402
from bench_scale import KMEANS, PCA, UMAP, D, chain  # noqa: E402

GB = 2**30


def estimate(n: int, fit_sample: int) -> tuple[int, str]:
    """The grid + fusion estimate of bench_scale's chain at n (bytes, the grid's detail)."""
    from aurora.run.budget import fusion_memory, grid_memory
    from aurora.run.budget.model import BENCH_BASE_BYTES

    grid, detail, _, _ = grid_memory(
        n, {"season": D}, {"pca": PCA, "umap": UMAP}, {"kmeans": KMEANS}, fit_sample,
        BENCH_BASE_BYTES,
    )  # fmt: skip
    return max(grid, fusion_memory(n, 2, BENCH_BASE_BYTES)), detail


def default_table(n: int) -> str:
    """The table ``cluster.py`` (default config) would print for n images."""
    import tempfile
    from datetime import datetime

    from hydra import compose, initialize_config_dir

    from aurora.data.manifest import ImageRecord, Manifest
    from aurora.run.budget import estimate_stages, format_estimates, machine_budget
    from aurora.run.main import _grid_cells
    from aurora.run.settings import RunSettings

    conf = Path(__file__).resolve().parents[1] / "conf"
    with tempfile.TemporaryDirectory() as cache:
        with initialize_config_dir(str(conf), version_base="1.3"):
            cfg = compose("cluster", [f"paths.cache_dir={cache}", "data=folder", "data.root=."])
        settings = RunSettings.from_cfg(cfg)
        rec = ImageRecord(
            "2016/11/01/LYR-Sony-011116_181500.jpg", "x", None, datetime(2016, 11, 1), "0"
        )
        manifest = Manifest(Path("."), [rec] * n)
        cells = _grid_cells(settings, (30, 100))
        names = sorted({c.extractor for c in cells})
        est = estimate_stages(manifest, settings, names, len(cells))
        return format_estimates(est, machine_budget(settings.budget, cache))


def main() -> None:
    """Print estimate, measured peak and their ratio per n."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--fit-sample", type=int, default=20_000)
    ap.add_argument("--table", action="store_true", help="print the default config's table too")
    args = ap.parse_args()
    print(load_avg())
    if args.table:
        for n in args.n:
            print(f"\ndefault cluster config, {n:,} images:\n{default_table(n)}\n")
    print("n, estimated GB, measured peak GB, estimate/measured, wall s, estimate made of")
    for n in args.n:
        est, detail = estimate(n, args.fit_sample)
        t = time.perf_counter()
        _, peak_mb = in_fresh_process(chain, n, args.fit_sample)
        peak = peak_mb * 2**20
        print(
            f"{n}, {est / GB:.2f}, {peak / GB:.2f}, {est / peak:.2f}, "
            f"{time.perf_counter() - t:.0f}, {detail}",
            flush=True,
        )
    print(load_avg())


if __name__ == "__main__":
    main()
