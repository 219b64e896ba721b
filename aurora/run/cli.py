"""What ``cluster.py`` runs: one of three modes, and the process exit code."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.types import RunMode
from omegaconf import DictConfig

from aurora.infra.errors import SettingsError
from aurora.infra.guard import run_guarded
from aurora.infra.logs import log, quiet_libraries
from aurora.run import run_apply, run_cluster, run_sweep_job
from aurora.run.prepare import run_prepare

#: What ``cluster.py mode=...`` runs: the chain, labels for new images, or one shard's data.
MODES = ("run", "apply", "prepare")


def _unknown_mode(mode: Any) -> None:
    raise SettingsError("mode", mode, f"one of {', '.join(MODES)}")


def main(
    cfg: DictConfig, run_dir: str | Path, choices: Mapping[str, str | None], hydra_mode: RunMode
) -> int:
    """Run ``cluster.py``'s mode; returns the process exit code.

    ``mode=apply`` labels new images with a saved solution (:func:`aurora.run.run_apply`);
    ``mode=prepare`` scans, preprocesses and extracts one shard of the data set
    (:mod:`aurora.run.prepare`); a
    job of a ``-m`` sweep computes one grid cell (:func:`aurora.run.run_sweep_job`); otherwise
    the whole chain runs in one process (:func:`aurora.run.run_cluster`).

    Known failures (bad data folder, missing weights, impossible settings) are reported in one
    line instead of a traceback (:func:`aurora.infra.guard.run_guarded`): exit code 2. A run whose
    outputs were written but some of whose grid cells failed returns 1 (the cells are listed in
    ``failed.csv`` and ``summary.json``). A sweep job never raises: the code it returns is its
    Hydra return value, and the sweep's exit code is set by
    :class:`aurora.run.sweep.FinalizeSweep`.

    Args:
        cfg: the composed ``cluster`` config.
        run_dir: the Hydra output folder (run directory, or the job's folder of a sweep).
        choices: the config group choices (a sweep job's cell).
        hydra_mode: Hydra's run mode (:class:`hydra.types.RunMode`: ``RUN`` or ``MULTIRUN``).
    """
    quiet_libraries()  # each library line once, no adverts, known warnings handled
    if cfg.mode not in MODES:
        return run_guarded(_unknown_mode, cfg.mode)
    if cfg.mode == "apply":
        return run_guarded(run_apply, cfg, Path(run_dir))
    if cfg.mode == "prepare":
        try:  # a sweep job never raises (see run_sweep_job); neither does a prepare job
            return run_guarded(run_prepare, cfg, Path(run_dir))
        except Exception:
            if hydra_mode is RunMode.MULTIRUN:
                log.exception("prepare job in %s failed", run_dir)
                return 1
            raise
    if hydra_mode is RunMode.MULTIRUN:
        return run_sweep_job(cfg, run_dir, choices)
    summary: dict[str, Any] = {}

    def run() -> None:
        summary.update(run_cluster(cfg, run_dir))

    code = run_guarded(run)
    return 1 if code == 0 and summary.get("n_failed_cells") else code
