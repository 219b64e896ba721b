"""Benchmark of aurora.fusion.CoAssociationVoting against dense co-association voting.

Every measurement runs in a fresh process so that its peak memory is its own: the figure printed
is the peak resident set size of that process minus its size just before the fit (the input
partitions are already loaded). Times are wall-clock seconds of ``fit``.

Inputs:
- random: P partitions with independent uniform labels, k_p drawn from 20..100 (the worst case
  for the signature compression: every image has its own label vector).
- realistic: a 10-D Gaussian mixture (40 components of different sizes and spreads); each
  partition is K-means with k_p from 20..100 and its own seed, fitted on a 20k subsample and
  applied to every point, so the partitions mostly agree, as real candidates do.

    .venv/bin/python bench/bench_fusion.py            # everything (~10 min on 2 cores)
    .venv/bin/python bench/bench_fusion.py --quick    # skip the 1M-image runs
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.sparse.csgraph import connected_components

from aurora.fusion import CoAssociationVoting


def random_partitions(n: int, n_part: int, seed: int = 0) -> np.ndarray:
    """(P, n) independent uniform labels with 20..100 clusters each."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, rng.integers(20, 101), n) for _ in range(n_part)])


def realistic_partitions(n: int, n_part: int, seed: int = 0) -> np.ndarray:
    """(P, n) K-means labels (k 20..100, different seeds) on a Gaussian mixture."""
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(seed)
    d, blobs = 10, 40
    centers = rng.normal(scale=6.0, size=(blobs, d))
    comp = rng.choice(blobs, size=n, p=rng.dirichlet(np.full(blobs, 2.0)))
    x = centers[comp] + rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, blobs)[comp, None]
    x = x.astype(np.float32)
    sub = x[rng.choice(n, min(n, 20_000), replace=False)]
    out = np.empty((n_part, n), dtype=np.int64)
    for p in range(n_part):
        k = int(rng.integers(20, 101))
        km = KMeans(k, n_init=1, max_iter=50, random_state=seed * 1000 + p).fit(sub)
        for s in range(0, n, 200_000):
            out[p, s : s + 200_000] = km.predict(x[s : s + 200_000])
    return out


def dense_vectorised(parts: np.ndarray, threshold: float, min_size: int) -> np.ndarray:
    """Straightforward dense version: an n x n float64 co-association matrix."""
    n_part, n = parts.shape
    c = np.zeros((n, n), dtype=np.float64)
    for lab in parts:
        eq = lab[:, None] == lab[None, :]
        eq &= (lab >= 0)[:, None]
        c += eq
        del eq
    c /= n_part
    adj = c > threshold
    del c
    np.fill_diagonal(adj, False)
    _, comp = connected_components(adj, directed=False)
    return _number(comp, min_size)


def dense_python_loops(parts: np.ndarray, threshold: float, min_size: int) -> np.ndarray:
    """The thesis's shape: a Python double loop filling a dense matrix pair by pair."""
    n_part, n = parts.shape
    c = np.zeros((n, n))
    cols = parts.T
    for i in range(n):
        a = cols[i]
        for j in range(i + 1, n):
            b = cols[j]
            c[i, j] = c[j, i] = np.sum((a == b) & (a >= 0)) / n_part
    adj = c > threshold
    _, comp = connected_components(adj, directed=False)
    return _number(comp, min_size)


def _number(comp: np.ndarray, min_size: int) -> np.ndarray:
    _, first, inv, counts = np.unique(
        comp, return_index=True, return_inverse=True, return_counts=True
    )
    keep = counts >= min_size
    new = np.full(first.size, -1)
    new[np.flatnonzero(keep)[np.argsort(first[keep])]] = np.arange(keep.sum())
    return new[inv.reshape(-1)]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _worker(method: str, path: str, threshold: float, min_size: int, q: mp.Queue) -> None:
    parts = np.load(path)
    base = _rss_mb()
    t0 = time.perf_counter()
    if method == "ours":
        model = CoAssociationVoting(
            threshold=threshold, min_cluster_size=min_size, progress=False
        ).fit(parts.T)
        labels, extra = model.labels_, f"sigs={model.n_signatures_}"
    elif method == "dense":
        labels, extra = dense_vectorised(parts, threshold, min_size), ""
    else:
        labels, extra = dense_python_loops(parts, threshold, min_size), ""
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    np.save(path + f".{method}.npy", labels)
    q.put((dt, peak, extra))


def measure(method: str, path: str, threshold: float, min_size: int) -> tuple[float, float, str]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(method, path, threshold, min_size, q))
    proc.start()
    res = q.get()
    proc.join()
    return res


def run_case(tmp: Path, name: str, parts: np.ndarray, t: float, methods: list[str]) -> None:
    path = str(tmp / ("".join(ch if ch.isalnum() else "_" for ch in name) + ".npy"))
    np.save(path, parts)
    out = {}
    for m in methods:
        dt, peak, extra = measure(m, path, t, 10)
        out[m] = dt
        labels = np.load(path + f".{m}.npy")
        print(
            f"{name:<28} {m:<6} n={parts.shape[1]:>9,} P={parts.shape[0]:>2} t={t:<4} "
            f"time {dt:8.2f} s  peak +{peak:8.0f} MB  groups {labels.max() + 1:>5} "
            f"unassigned {int((labels < 0).sum()):>7} {extra}",
            flush=True,
        )
    if len(methods) > 1:
        ref = np.load(path + f".{methods[0]}.npy")
        same = all(np.array_equal(ref, np.load(path + f".{m}.npy")) for m in methods[1:])
        ratio = out[methods[1]] / out["ours"]
        print(f"{'':<28} {methods[1]}/ours time ratio {ratio:.1f}x, identical labels: {same}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="skip the 1M-image runs")
    ap.add_argument("--dense-max", type=int, default=20_000, help="largest dense run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print("== dense Python loops (thesis shape) vs ours")
        run_case(tmp, "random loops", random_partitions(2_000, 12), 0.5, ["ours", "loops"])
        run_case(tmp, "realistic loops", realistic_partitions(2_000, 10), 0.5, ["ours", "loops"])
        print("== dense vectorised n x n vs ours")
        for n in (10_000, 20_000):
            if n > args.dense_max:
                continue
            run_case(tmp, f"random {n}", random_partitions(n, 12), 0.5, ["ours", "dense"])
            run_case(tmp, f"realistic {n}", realistic_partitions(n, 10), 0.5, ["ours", "dense"])
        print("== ours at scale")
        run_case(tmp, "random 20k (target 2s/300MB)", random_partitions(20_000, 12), 0.5, ["ours"])
        for n, n_part in [(100_000, 10), (200_000, 30)] + (
            [] if args.quick else [(1_000_000, 10), (1_000_000, 30)]
        ):
            t0 = time.perf_counter()
            parts = realistic_partitions(n, n_part)
            print(f"(generated {n:,} x {n_part} in {time.perf_counter() - t0:.0f} s)")
            for t in (0.5, 0.3):
                run_case(tmp, f"realistic {n // 1000}k P={n_part}", parts, t, ["ours"])


if __name__ == "__main__":
    main()
