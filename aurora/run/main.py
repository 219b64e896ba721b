"""The entry points of ``cluster.py``: the whole chain in one process, and ``mode=apply``.

A run folder's ``status.json`` says whether its results are current (running, finished,
finished_with_failures, failed), and a run moves the earlier results aside before it starts
(:mod:`aurora.infra.run_folder`). A grid cell that fails is recorded (``failed.json`` in its folder,
``failed.csv`` and the summary counts) and the other cells are still ranked, fused and
reported.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from aurora.data.formats import DEFAULT_MAX_PIXELS, check_max_pixels
from aurora.grid.cell import CellSpec, grid_cells
from aurora.grid.cell_files import collect_failed
from aurora.infra.config import plain
from aurora.infra.errors import RunError
from aurora.infra.logs import stage
from aurora.infra.run_folder import fail_run, finish_run
from aurora.run.checks import (
    DataFit,
    check_against_data,
    check_grid,
    check_jobs,
)
from aurora.run.context import load_context
from aurora.run.finalize import finalize, print_summary
from aurora.run.grid import run_cells
from aurora.run.nights import write_nights
from aurora.run.screening import screen_applied, screen_if_enabled
from aurora.run.settings import BudgetSettings, ExtractSettings, RunSettings, night_settings
from aurora.run.start import check_settings, start_run


def run_cluster(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """The whole chain in one process: data -> features -> grid -> ranking -> fusion -> outputs.

    The folder's earlier results are moved aside first and ``status.json`` follows the run
    (running, finished, finished_with_failures, failed): see :mod:`aurora.infra.run_folder`.
    A grid cell that fails is recorded in ``failed.csv`` and the others go on.

    Args:
        cfg: the composed ``cluster`` config.
        run_dir: output folder (the Hydra run directory).

    Returns:
        The run summary (also in ``run_dir/summary.json``); ``n_failed_cells`` > 0 when some
        grid cells failed.
    """
    run_dir = Path(run_dir)
    start_run(cfg, run_dir)
    try:
        summary = _run_cluster(RunSettings.from_cfg(cfg), run_dir)
    except BaseException as err:
        fail_run(run_dir, err)
        raise
    finish_run(run_dir, summary["n_cells"], [f["cell"] for f in summary["failed_cells"]])
    return summary


def _grid_cells(settings: RunSettings, n_clusters: tuple[int, ...]) -> list[CellSpec]:
    """The cells of a single-process run: ``grid.*`` names (or all) x ``n_clusters``."""
    configured = {
        "extractors": settings.extractors,
        "reducers": settings.reducers,
        "clusterers": settings.clusterers,
    }
    axes = {a: settings.grid.axis(a, known) for a, known in configured.items()}
    for axis, names in axes.items():
        unknown = sorted(set(names) - set(configured[axis]))
        if unknown:
            raise RunError(f"grid.{axis} names {unknown}; configured: {sorted(configured[axis])}")
    return grid_cells(axes["extractors"], axes["reducers"], axes["clusterers"], list(n_clusters))


def _run_cluster(settings: RunSettings, run_dir: Path) -> dict[str, Any]:
    """:func:`run_cluster` in a folder already marked running."""
    t0 = time.perf_counter()
    grid = check_grid(settings.grid.n_clusters, settings.grid.stability_splits)
    check_settings(settings)
    cells = _grid_cells(settings, grid.n_clusters)
    run_dir.mkdir(parents=True, exist_ok=True)
    fits: list[DataFit] = []

    def on_accepted(n: int) -> None:
        fits.append(check_against_data(n, grid, settings.fusion))

    names = sorted({c.extractor for c in cells})
    ctx = load_context(settings, run_dir, names, on_accepted, n_cells=len(cells))
    ctx, screened = screen_if_enabled(
        ctx, settings.nights, settings.cache_dir, settings.jobs, on_accepted
    )
    fit = fits[-1]  # load_context ran the checks before its first training or extraction
    settings = settings.fitted(fit)
    cells = [c for c in _grid_cells(settings, fit.n_clusters) if c.extractor in ctx.features]
    with stage("grid") as st:
        rows = run_cells(settings, ctx, cells, run_dir / "cells", grid.stability_splits)
        failed = collect_failed(run_dir / "cells")
        st["msg"] = f"{len(rows)} cells" + (f", {len(failed)} FAILED" if failed else "")
    extra = {
        "started": t0,
        "skipped_extractors": ctx.skipped,
        "random_init_extractors": [k for k, f in ctx.features.items() if f.random_init],
    }
    record = finalize(settings, ctx, rows, run_dir, extra, failed, screened)
    print_summary(record.summary, run_dir)
    return record.summary


def run_apply(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """What ``python cluster.py mode=apply solution=DIR data.root=NEW`` runs.

    Args:
        cfg: the composed ``cluster`` config (uses ``solution``, ``data.root``,
            ``paths.cache_dir``, ``jobs``, ``extract.*``, ``budget.memory_gb``: the most
            a solution's arrays may take, ``data.max_pixels``).
        run_dir: output folder (the Hydra run directory).

    Returns:
        The summary (see :func:`aurora.solution.apply_solution`).
    """
    sol_dir = cfg.get("solution")
    if not sol_dir:
        raise RunError("mode=apply needs solution=DIR (the solution/ folder of a run)")
    if OmegaConf.is_missing(cfg.data, "root") or not cfg.data.get("root"):
        raise RunError("mode=apply needs data=folder data.root=NEW_IMAGES")
    jobs = check_jobs(cfg.get("jobs"))
    extract = ExtractSettings.from_node(plain(cfg.extract), here=True)
    budget = BudgetSettings.from_node(plain(cfg.get("budget")))
    max_pixels = check_max_pixels(cfg.data.get("max_pixels", DEFAULT_MAX_PIXELS))
    from aurora.solution import SolutionLimits, apply_solution  # torch: only when there is work

    memory = None if budget.memory_gb is None else int(budget.memory_gb * 2**30)
    nights = night_settings(cfg)
    cache_dir = str(cfg.paths.cache_dir)

    def after_labels(result: Any, out_dir: Path) -> Any:
        result, screened = screen_applied(result, nights, cache_dir, jobs)
        if screened is not None and result.features is not None:
            write_nights(out_dir, screened, nights, result.ids, result.labels, result.features)
        return result

    return apply_solution(
        str(sol_dir),
        str(cfg.data.root),
        run_dir,
        cache_dir=str(cfg.paths.cache_dir),
        jobs=jobs,
        batch_size=extract.batch_size,
        num_workers=extract.num_workers,
        device=extract.device,
        limits=SolutionLimits(memory_bytes=memory, memory_key="budget.memory_gb"),
        max_pixels=max_pixels,
        after_labels=after_labels,
    )
