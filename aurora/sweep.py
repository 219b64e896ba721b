"""Hydra callback that ranks and fuses a ``cluster.py -m`` sweep once all its jobs are done.

How a job's failure travels in hydra-core 1.3 (basic launcher and sweeper): ``run_job``
catches an ``Exception`` of the task function and marks the job failed, the launcher runs the
remaining jobs, and then the sweeper re-raises the first failure, so ``on_multirun_end`` is
never called and the finished cells are lost; a ``SystemExit`` from a job stops the sweep at
once. A callback's ``Exception`` is only a warning (exit code 0). So a sweep job never raises
(:func:`aurora.pipeline.run_sweep_job` records its failure in ``failed.json`` and returns its
code), and this callback sets the process exit code itself, with ``SystemExit``, as the last
thing of the sweep: 0 when every cell finished, 1 when some failed (the others are ranked,
fused and reported) or the finalisation hit a bug, 2 for an aurora error (e.g. every cell
failed).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("aurora")


class FinalizeSweep(Callback):
    """On the start of a multirun: mark its folder running and move earlier results aside; on
    its end: collect every cell, rank, fuse, report (in the sweep folder), set the exit code.

    Single runs are left alone: :func:`aurora.pipeline.main` finalises them itself.
    """

    def __init__(self) -> None:
        self.started: set[str] = set()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Clear the sweep folder of an earlier sweep's results and job folders."""
        from aurora.pipeline import start_run

        sweep_dir = Path(str(config.hydra.sweep.dir))
        start_run(config, sweep_dir, job_dirs=True)
        self.started.add(str(sweep_dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Finalise the sweep whose folder is ``config.hydra.sweep.dir``; exit nonzero on failures.

        Raises:
            SystemExit: with code 1 or 2 when a cell or the finalisation failed.
        """
        from aurora.cli import run_guarded
        from aurora.pipeline import finalize_sweep

        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            log.warning("sweep folder %s not found; nothing to finalise", sweep_dir)
            return
        summary: dict[str, Any] = {}

        def finalize() -> None:
            begin = str(sweep_dir) not in self.started
            summary.update(finalize_sweep(config, sweep_dir, begin=begin))

        try:
            code = run_guarded(finalize)
        except Exception:
            log.exception("the finalisation of the sweep in %s failed", sweep_dir)
            code = 1
        if code == 0 and summary.get("n_failed_cells"):
            code = 1
        if code:
            raise SystemExit(code)
