"""``mode=prepare`` in shards against one process, side by side on one synthetic sky.

For N synthetic frames it times, in this order and on cold caches:

1. one process: ``run_prepare`` with ``prepare.shards=1`` (scan, preprocess, extract);
2. the same work in S shards, one after another (as S jobs would run it, on one machine), and
   the join that the last shard does: the sum of the shards' times, and the join's own time;
3. a scan of the folder with the cache warm (stat only) against a fresh scan.

It checks that the joined scan and stores are the one-process bytes and the features equal
them up to float rounding. On a cluster the shards run at once, so their wall time is the
slowest shard's; here (2 shared cores) what matters is the ratio: the sharded work plus the
join against one process (the cost of sharding), and the join's share.

    .venv/bin/python bench/bench_prepare.py --n 2000 --shards 4
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import load_avg
from hydra import compose, initialize_config_dir

from aurora.data.scan_cache import scan_cached
from aurora.data.sources import scan
from aurora.data.synth import generate
from aurora.run import prepare as prepare_mod
from aurora.run.prepare import run_prepare

CONF = Path(__file__).resolve().parents[1] / "conf"
EXTRACTORS = [
    "debug=tiny",
    "grid.extractors=[mobilenet_v2]",
    "extractors.mobilenet_v2.pretrained=false",  # random weights: the timing, not the features
    "extractors.mobilenet_v2.input_size=64",
    "preprocess.minimal.size=64",
]


def _cfg(sky: Path, cache: Path, *extra: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(
            "cluster",
            [*EXTRACTORS, "data=folder", f"data.root={sky}", f"paths.cache_dir={cache}", *extra],
        )


def _digests(cache: Path) -> dict[str, str]:
    out = {}
    for stage in ("scan", "preprocess"):
        for p in sorted((cache / stage).rglob("*")):
            if p.is_file():
                out[str(p.relative_to(cache))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="synthetic frames")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=2, help="preprocessing workers per process")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        sky = tmp_path / "sky"
        generate(sky, n=args.n, seed=0, size=128, jobs=args.jobs)
        print(f"{args.n} synthetic frames (128 px), {load_avg()}")
        one, sharded = tmp_path / "one", tmp_path / "sharded"
        jobs = f"jobs={args.jobs}"
        # Warm-up (imports, the first network build) on a folder of its own, untimed.
        generate(tmp_path / "warm", n=16, seed=1, size=128, jobs=1)
        run_prepare(_cfg(tmp_path / "warm", tmp_path / "warm_cache", jobs), tmp_path / "j_warm")
        t0 = time.perf_counter()
        run_prepare(_cfg(sky, one, jobs), tmp_path / "j_one")
        t_one = time.perf_counter() - t0

        joins: list[float] = []
        real_assemble = prepare_mod.assemble_prepared

        def timed_assemble(*a, **k):  # the join (and the check that finds blocks missing)
            t = time.perf_counter()
            try:
                return real_assemble(*a, **k)
            finally:
                joins.append(time.perf_counter() - t)

        prepare_mod.assemble_prepared = timed_assemble
        shard_times = []
        for s in range(args.shards):
            t0 = time.perf_counter()
            cfg = _cfg(sky, sharded, jobs, f"prepare.shards={args.shards}", f"prepare.shard={s}")
            run_prepare(cfg, tmp_path / f"j{s}")
            shard_times.append(time.perf_counter() - t0)
        prepare_mod.assemble_prepared = real_assemble
        same = _digests(one) == _digests(sharded)
        fa, fb = (np.load(next((c / "features").glob("*/features.npy"))) for c in (one, sharded))
        err = float(np.abs(fa - fb).max() / np.abs(fa).max())
        t0 = time.perf_counter()
        scan(sky)
        t_fresh = time.perf_counter() - t0
        t0 = time.perf_counter()
        scan_cached(sky, one)
        t_cached = time.perf_counter() - t0
        total = sum(shard_times)
        print(f"one process:               {t_one:7.1f} s")
        print(
            f"{args.shards} shards, one after another: {total:7.1f} s "
            f"(slowest {max(shard_times):.1f} s; x{total / t_one:.2f} of one process)"
        )
        print(
            f"  of which the final join:  {joins[-1]:7.2f} s "
            f"({joins[-1] / t_one:.1%} of one process)"
        )
        print(f"joined scan and stores == one process (bytes): {same}")
        print(f"features: max |difference| / max |feature| = {err:.1e}")
        print(
            f"scan of {args.n} files: fresh {t_fresh:.2f} s, cached {t_cached:.3f} s "
            f"(x{t_fresh / max(t_cached, 1e-9):.0f} faster)"
        )
        print(load_avg())


if __name__ == "__main__":
    main()
