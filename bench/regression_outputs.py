"""Fixed tiny runs whose outputs must not change under a refactor (byte for byte).

    python bench/regression_outputs.py save DIR      # run both, keep their outputs in DIR
    python bench/regression_outputs.py compare DIR   # run both again, compare with DIR

Two runs, each with a fixed seed and a fixed run folder (absolute paths inside ``ranking.csv``
are then the same): the built-in synthetic sky (48 frames, 64 px) and, when ``../shared`` is
there, the 16 NIPR frames of the README's real-folder test. Compared files: ``labels.csv``,
``rejected.csv`` and ``ranking.csv`` with its timing column removed (wall times differ run to
run; nothing else may).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NIPR = ROOT.parent / "shared" / "data" / "nipr_lyr_allsky_2014"
WORK = Path("/tmp/aurora-regression")
FILES = ("labels.csv", "rejected.csv", "ranking.csv")
VOLATILE_COLUMNS = {"seconds"}

# debug=tiny (conf/debug/tiny.yaml: 32 px, one epoch of a tiny autoencoder, CPU) and a grid.
TINY = [
    "debug=tiny",
    "grid.reducers=[pca,none]",
    "grid.clusterers=[kmeans,agglomerative]",
    "grid.n_clusters=[3,4]",
    "fusion.min_cluster_size=2",
    "seed=7",
]
RUNS: dict[str, list[str]] = {
    "synthetic": [
        "data=synth",
        f"data.root={WORK / 'sky'}",
        "synthetic_sky.n=48",
        "synthetic_sky.size=64",
    ],
    "nipr": ["data=folder", f"data.root={NIPR}"],
}


def run_all() -> dict[str, Path]:
    """Run each case from an empty cache into its fixed folder; returns name -> run folder."""
    shutil.rmtree(WORK, ignore_errors=True)
    out = {}
    for name, data in RUNS.items():
        if name == "nipr" and not NIPR.is_dir():
            print(f"skip {name}: {NIPR} absent")
            continue
        run_dir = WORK / name
        env = {**os.environ, "AURORA_CACHE_DIR": str(WORK / "cache")}
        cmd = [sys.executable, str(ROOT / "cluster.py"), *data, *TINY, f"hydra.run.dir={run_dir}"]
        proc = subprocess.run(cmd, cwd=WORK.parent, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
        out[name] = run_dir
    return out


def normalised(path: Path) -> str:
    """The file's text, without the volatile columns of a CSV."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    keep = [i for i, c in enumerate(rows[0]) if c not in VOLATILE_COLUMNS] if rows else []
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for row in rows:
        w.writerow([row[i] for i in keep])
    return buf.getvalue()


def main() -> int:
    """Save or compare; returns 1 when a compared file differs."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["save", "compare"])
    ap.add_argument("folder", type=Path)
    args = ap.parse_args()
    runs = run_all()
    differ = 0
    for name, run_dir in runs.items():
        for f in FILES:
            text = normalised(run_dir / f)
            ref = args.folder / name / f
            if args.action == "save":
                ref.parent.mkdir(parents=True, exist_ok=True)
                ref.write_text(text)
                print(f"saved {ref} ({text.count(chr(10))} lines)")
            elif ref.read_text() == text:
                print(f"same    {name}/{f}")
            else:
                differ += 1
                print(f"DIFFERS {name}/{f}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
