"""Throughput of the synthetic all-sky generator, JPEG encoding and file writing included.

Usage: ``python bench/bench_synth.py [--n 400] [--size 480] [--jobs 1 2]``. Each job count
writes the same data set into its own temporary folder, one after the other in this run; the
script prints images/s per job count, the speed-up over the first, and checks the folders are
byte-identical. The machine may be shared, so it also prints the CPU time per image (all
processes, from ``getrusage``) and the rate that CPU cost allows on two idle cores.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import tempfile
import time
from pathlib import Path

from aurora.data.synth import generate


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _cpu_s() -> float:
    """User + system CPU seconds of this process and its reaped children."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    """Run the benchmark and print one line per job count."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--size", type=int, default=480)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    a = p.parse_args()
    print(f"synthetic sky: n={a.n} size={a.size} cpus={os.cpu_count()}")
    generate(tempfile.mkdtemp(), 12, a.seed, a.size, jobs=1)  # warm caches and imports
    base, digests = None, set()
    with tempfile.TemporaryDirectory() as tmp:
        for jobs in a.jobs:
            out = Path(tmp, f"jobs{jobs}")
            t0, c0 = time.perf_counter(), _cpu_s()
            generate(out, a.n, a.seed, a.size, jobs=jobs)
            dt, cpu = time.perf_counter() - t0, _cpu_s() - c0
            rate = a.n / dt
            base = base or rate
            mb = sum(f.stat().st_size for f in out.iterdir()) / 1e6
            digests.add(_digest(out))
            cpu_ms = cpu / a.n * 1000
            print(
                f"jobs={jobs}: {rate:7.1f} images/s  ({dt:.2f} s, {mb:.1f} MB, "
                f"x{rate / base:.2f} vs jobs={a.jobs[0]}; CPU {cpu_ms:.1f} ms/image "
                f"-> {2000 / cpu_ms:.0f} images/s on 2 idle cores)"
            )
    print(f"identical output across job counts: {len(digests) == 1}")
    print(f"load average during the run: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
