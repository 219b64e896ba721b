"""Peak memory of a run with a 30,000 x 30,000 PNG in its folder beside the same run without it.

    python bench/bench_too_large.py            # 24 frames of 64 px, debug=tiny
    python bench/bench_too_large.py --n 48

The PNG is issue 26's: ``cv2.imwrite('bomb.png', numpy.zeros((30000, 30000), numpy.uint8))``
(about 0.9 MB on disk, 900 Mpx). Its header alone must get it rejected ``too large``
(``data.max_pixels``, default 100 Mpx); decoding it took 9.8 GB and 32 s before. Each run is
``cluster.py debug=tiny data=folder`` in its own process with its own fresh cache, so both do
the same work; its peak RSS comes from ``wait4`` (the child's ``ru_maxrss``, which counts its
own subprocesses it waited for). The bomb is written by another child, so this process stays
small (a child's ``ru_maxrss`` starts from its parent's size at fork).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_avg  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIDE = 30_000
_WRITE_BOMB = (
    "import sys, cv2, numpy; "
    f"assert cv2.imwrite(sys.argv[1], numpy.zeros(({SIDE}, {SIDE}), numpy.uint8))"
)


def run_cluster(data: Path, cache: Path, out: Path) -> tuple[float, float, int]:
    """``cluster.py debug=tiny data=folder`` on ``data`` in a new process.

    Returns:
        (peak RSS in MB, wall seconds, exit code).
    """
    cmd = [
        sys.executable,
        str(ROOT / "cluster.py"),
        "debug=tiny",
        "data=folder",
        f"data.root={data}",
        f"paths.cache_dir={cache}",
        f"hydra.run.dir={out}",
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()  # drained while it runs (a full pipe would block it)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        print(err.decode(errors="replace")[-2000:], file=sys.stderr)
    return usage.ru_maxrss / 1024, time.perf_counter() - t0, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=24, help="synthetic frames (64 px)")
    args = parser.parse_args()
    from aurora.data.synth import generate

    with tempfile.TemporaryDirectory(prefix="bench_too_large-") as tmp_dir:
        tmp = Path(tmp_dir)
        plain, bombed = tmp / "plain", tmp / "bombed"
        generate(plain, n=args.n, seed=3, size=64, jobs=1)
        shutil.copytree(plain, bombed)
        subprocess.run([sys.executable, "-c", _WRITE_BOMB, str(bombed / "bomb.png")], check=True)
        size_kb = (bombed / "bomb.png").stat().st_size / 1000
        print(f"{args.n} frames of 64 px; bomb.png {SIDE}x{SIDE}, {size_kb:.0f} KB; {load_avg()}")
        rows = []
        for name, data in (("without bomb", plain), ("with bomb", bombed)):
            peak, wall, code = run_cluster(data, tmp / f"cache_{data.name}", tmp / f"run_{name}")
            rows.append((name, peak, wall, code))
            print(f"{name:13s} peak RSS {peak:7.0f} MB  wall {wall:5.1f} s  exit {code}")
        with open(tmp / "run_with bomb" / "rejected.csv", newline="") as f:
            bomb = next((r for r in csv.DictReader(f) if r["path"] == "bomb.png"), None)
        print(
            "bomb.png:",
            "not rejected" if bomb is None else f"{bomb['reason']}: {bomb['detail']}",
        )
        diff = rows[1][1] - rows[0][1]
        print(f"difference    peak RSS {diff:+7.0f} MB  wall {rows[1][2] - rows[0][2]:+5.1f} s")


if __name__ == "__main__":
    main()
