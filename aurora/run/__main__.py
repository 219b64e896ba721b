"""``python -m aurora.run finalize SWEEP_DIR``: rank, fuse and report a sweep after the fact.

A ``-m`` sweep finalises itself when its last job returns. When a job never returns (SLURM
killed it for its time or memory limit, a node failed, the submitting process was stopped),
Hydra does not finalise: this command does it from what the jobs wrote. It reads the sweep's
own config (``SWEEP_DIR/multirun.yaml``), records every job folder with no result as failed
(``failed.json``: killed or never ran), then ranks, fuses and reports the finished cells
exactly as the sweep would have. A ``mode=prepare`` sweep is joined instead (its shards'
stores and features; the shards not done are named). Exit code as ``cluster.py``'s: 0, 1 (some
cells failed), 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omegaconf import OmegaConf

from aurora.run.sweep import finalize_sweep_code, record_unfinished_jobs


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m aurora.run", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    fin = sub.add_parser("finalize", help="rank, fuse and report the finished cells of a sweep")
    fin.add_argument("sweep_dir", type=Path, help="the -m sweep's folder (holds multirun.yaml)")
    args = parser.parse_args(argv)
    sweep_dir = args.sweep_dir.resolve()
    config = sweep_dir / "multirun.yaml"
    if not config.is_file():
        print(f"error: {config} not found: SWEEP_DIR must be the folder of a -m sweep", flush=True)
        return 2

    config_doc = OmegaConf.load(config)

    def record() -> None:
        if config_doc.get("mode") == "prepare":
            return  # the shards not done are found in the cache and named by the finalisation
        for job in record_unfinished_jobs(sweep_dir):
            print(f"no result in {job}: recorded as failed", flush=True)

    return finalize_sweep_code(config_doc, sweep_dir, before=record)


if __name__ == "__main__":
    sys.exit(main())
