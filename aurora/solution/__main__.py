"""``python -m aurora.solution export RUN_DIR``: write a run's solution again, in this format.

A solution of an older format is refused by :func:`aurora.solution.load_solution`. This command
reruns the run's own command line (``RUN_DIR/.hydra/overrides.yaml``) into ``RUN_DIR`` with
``cluster.py``; every stage is cached, so it costs little more than the grid, and the new
``solution/`` is written in the current format.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "cluster.py"


def export_command(run_dir: Path) -> list[str]:
    """The ``cluster.py`` command line that remakes the run in ``run_dir``.

    Raises:
        SystemExit: ``run_dir`` has no ``.hydra/overrides.yaml`` (not a single run's folder).
    """
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    if not overrides_file.is_file():
        raise SystemExit(
            f"error: {overrides_file} not found: RUN_DIR must be the folder of a single "
            "`python cluster.py` run (for a -m sweep, rerun the sweep's command)"
        )
    overrides = yaml.safe_load(overrides_file.read_text()) or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise SystemExit(f"error: {overrides_file} is not a list of overrides")
    kept = [o for o in overrides if not o.startswith(("hydra.run.dir=", "mode="))]
    return [sys.executable, str(CLUSTER), *kept, f"hydra.run.dir={run_dir.resolve()}"]


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code of the rerun."""
    parser = argparse.ArgumentParser(prog="python -m aurora.solution", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="rewrite RUN_DIR/solution in the current format")
    exp.add_argument("run_dir", type=Path, help="folder of the run (holds .hydra/ and solution/)")
    args = parser.parse_args(argv)
    cmd = export_command(args.run_dir)
    print("rerunning:", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=CLUSTER.parent)


if __name__ == "__main__":
    sys.exit(main())
