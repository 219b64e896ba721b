"""A ``cluster.py -m`` sweep: one grid cell per job, ranked and fused once at the end.

How a job's failure travels in hydra-core 1.3 (basic launcher and sweeper): ``run_job``
catches an ``Exception`` of the task function and marks the job failed, the launcher runs the
remaining jobs, and then the sweeper re-raises the first failure, so ``on_multirun_end`` is
never called and the finished cells are lost; a ``SystemExit`` from a job stops the sweep at
once. A callback's ``Exception`` is only a warning (exit code 0). So a sweep job never raises
(:func:`run_sweep_job` records its failure in ``failed.json`` and returns its code), and
:class:`FinalizeSweep` sets the process exit code itself, with ``SystemExit``, as the last
thing of the sweep: 0 when every cell finished, 1 when some failed (the others are ranked,
fused and reported) or the finalisation hit a bug, 2 for an aurora error (e.g. every cell
failed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from aurora.grid.cell import CellSpec
from aurora.grid.cell_files import (
    CELL_FILE,
    FAILED_FILE,
    clear_cell,
    collect_cells,
    collect_failed,
    write_failed,
)
from aurora.infra.config import plain
from aurora.infra.errors import RunError
from aurora.infra.guard import run_guarded
from aurora.infra.logs import log
from aurora.infra.run_folder import fail_run, finish_run
from aurora.run.checks import DataFit, check_against_data, check_grid, check_number
from aurora.run.context import load_context
from aurora.run.finalize import check_some_cells, finalize, print_summary
from aurora.run.grid import record_failure, run_cells
from aurora.run.prepare import finalize_prepare
from aurora.run.screening import screen_if_enabled
from aurora.run.settings import RunSettings
from aurora.run.start import check_settings, start_run

_CELL_GROUPS = ("extractor", "reducer", "clusterer")


def _sweep_cell(cfg: DictConfig, choices: Mapping[str, str | None]) -> tuple[RunSettings, CellSpec]:
    """The one cell of a sweep job, from the ``extractor``/``reducer``/``clusterer`` groups;
    the job's settings know only its cell's nodes."""
    picked = {g: choices.get(g) for g in _CELL_GROUPS}
    missing = [g for g, v in picked.items() if v is None]
    if missing:
        raise RunError(f"a sweep job needs the groups {missing} to be chosen")
    spec = CellSpec(
        str(picked["extractor"]),
        str(picked["reducer"]),
        str(picked["clusterer"]),
        int(check_number("clusterer.n_clusters", cfg.clusterer.n_clusters, 2, integer=True)),
    )
    settings = RunSettings.from_cfg(cfg).with_nodes(
        extractors={spec.extractor: plain(cfg.extractor)},
        reducers={spec.reducer: plain(cfg.reducer)},
        clusterers={spec.clusterer: plain(cfg.clusterer)},
    )
    return settings, spec


def run_sweep_cell(
    cfg: DictConfig, job_dir: str | Path, choices: Mapping[str, str | None]
) -> dict[str, Any]:
    """One job of a ``-m`` sweep: compute one grid cell into ``job_dir`` (ranked at the end).

    The cell is the job's ``extractor``, ``reducer`` and ``clusterer`` group choices, with
    ``clusterer.n_clusters``; :class:`FinalizeSweep` ranks and fuses the sweep. A k at or
    above the number of accepted images is lowered to what the data allows, with a warning,
    as a single run lowers ``grid.n_clusters`` (:func:`aurora.run.checks.check_against_data`); the
    cell is then named by the k it ran with.
    """
    job_dir = Path(job_dir)
    # What an earlier run of this job folder recorded (a failure, or another cell's result).
    for earlier in {job_dir, *(p.parent for p in job_dir.glob("*/cell.json"))}:
        clear_cell(earlier)
    settings, cell = _sweep_cell(cfg, choices)
    grid = check_grid([cell.n_clusters], settings.grid.stability_splits)
    check_settings(settings)
    fits: list[DataFit] = []

    def on_accepted(n: int) -> None:
        fits.append(check_against_data(n, grid, settings.fusion, k_key="clusterer.n_clusters"))

    key = {cell.extractor: "extractor"}
    ctx = load_context(settings, job_dir, [cell.extractor], on_accepted, key)
    ctx, _ = screen_if_enabled(ctx, settings.nights, settings.cache_dir, settings.jobs, on_accepted)
    fit = fits[-1]  # load_context ran the checks before its first training or extraction
    if fit.n_clusters[0] != cell.n_clusters:
        cell = dataclasses.replace(cell, n_clusters=fit.n_clusters[0], requested=cell.n_clusters)
    rows = run_cells(settings, ctx, [cell], job_dir, grid.stability_splits, keep_going=False)
    return rows[0]


def _job_meta(cfg: DictConfig, choices: Mapping[str, str | None]) -> dict[str, Any]:
    """What is known of a sweep job's cell, for its ``failed.json`` (even if it failed early)."""
    meta: dict[str, Any] = {g: choices[g] for g in _CELL_GROUPS if choices.get(g)}
    for key, name in (("clusterer.n_clusters", "n_clusters"), ("seed", "seed")):
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=True)
        except Exception:
            continue
        if value is not None:
            meta[name] = value
    return meta


def run_sweep_job(cfg: DictConfig, job_dir: str | Path, choices: Mapping[str, str | None]) -> int:
    """One job of a ``-m`` sweep, which never raises: a failure is recorded, not propagated.

    A job that fails writes ``failed.json`` (cell, error in one line, exception type; a bug's
    traceback) into its folder, so that the other jobs run and :class:`FinalizeSweep` ranks,
    fuses and reports the rest and counts it.

    Returns:
        The job's exit code: 0, 2 for an aurora error (printed in one line), 1 for a bug.
    """
    job_dir = Path(job_dir)

    def job() -> None:
        try:
            run_sweep_cell(cfg, job_dir, choices)
        except Exception as err:
            record_failure(job_dir, _job_meta(cfg, choices), err)
            raise

    try:
        return run_guarded(job)
    except Exception:  # a bug: recorded above with its traceback
        return 1


def finalize_sweep(cfg: DictConfig, sweep_dir: Path, begin: bool = True) -> dict[str, Any]:
    """Rank and fuse every finished cell of a sweep; outputs go into ``sweep_dir``.

    Failed jobs (their ``failed.json``) are listed in ``failed.csv`` and counted in the
    summary; ``status.json`` follows the finalisation (see :mod:`aurora.infra.run_folder`).

    Args:
        cfg: the sweep's config (its ``hydra`` node is ignored).
        sweep_dir: the multirun folder.
        begin: move the folder's earlier results aside and mark it running first (false when
            :class:`FinalizeSweep` did so at the start of the sweep).

    Returns:
        The summary (``n_failed_cells`` > 0 when some jobs failed).
    """
    sweep_dir = Path(sweep_dir)
    if begin:
        start_run(cfg, sweep_dir)
    try:
        summary = _finalize_sweep(cfg, sweep_dir)
    except BaseException as err:
        fail_run(sweep_dir, err)
        raise
    finish_run(sweep_dir, summary["n_cells"], [f["cell"] for f in summary["failed_cells"]])
    return summary


def _finalize_sweep(cfg: DictConfig, sweep_dir: Path) -> dict[str, Any]:
    """:func:`finalize_sweep` in a folder already marked running."""
    cells = distinct_cells(collect_cells(sweep_dir))
    failed = collect_failed(sweep_dir)
    check_some_cells(cells, failed, sweep_dir)
    names = sorted({str(c["extractor"]) for c in cells})
    settings = RunSettings.from_cfg(cfg)
    known = {n: settings.extractors[n] for n in names if n in settings.extractors}
    settings = settings.with_nodes(extractors=known)
    ctx = load_context(settings, sweep_dir, list(known), n_cells=len(cells))
    ctx, screened = screen_if_enabled(ctx, settings.nights, settings.cache_dir, settings.jobs)
    ks = sorted({int(c["n_clusters"]) for c in cells})
    grid = check_grid(ks, settings.grid.stability_splits)
    settings = settings.fitted(check_against_data(len(ctx.ids), grid, settings.fusion))
    record = finalize(settings, ctx, cells, sweep_dir, failed=failed, screened=screened)
    print_summary(record.summary, sweep_dir)
    return record.summary


def distinct_cells(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cells with each lowered one counted once.

    Two jobs whose k were both lowered to the number the data allows (``k=30`` and ``k=50`` on
    24 images) computed the same cell; ranked twice, it would also vote twice in the fusion.
    Of the cells sharing a name, those whose k was lowered (``n_clusters_requested``) are
    dropped in favour of one that was not, else all but the first. Cells that share a name
    without having been lowered (a sweep over a reducer's parameter) are all kept.
    """
    by_name: dict[str, list[dict[str, Any]]] = {}
    for row in cells:
        by_name.setdefault(str(row["cell"]), []).append(row)
    keep: list[dict[str, Any]] = []
    for name, rows in by_name.items():
        exact = [r for r in rows if r.get("n_clusters_requested") is None]
        lowered = [r for r in rows if r.get("n_clusters_requested") is not None]
        kept = exact or lowered[:1]
        if len(kept) < len(rows):
            asked = sorted(int(r["n_clusters_requested"]) for r in lowered)
            log.info("cell %s: k=%s lowered to the same k by the data; counted once", name, asked)
        keep += kept
    kept_ids = {id(r) for r in keep}
    return [r for r in cells if id(r) in kept_ids]


def finalize_sweep_code(
    config: DictConfig,
    sweep_dir: Path,
    *,
    begin: bool = True,
    before: Callable[[], None] | None = None,
) -> int:
    """:func:`finalize_sweep` as a command: its exit code, an aurora error in one line.

    A ``mode=prepare`` sweep is joined instead (:func:`aurora.run.prepare.finalize_prepare`).

    Args:
        config: the sweep's config.
        sweep_dir: the multirun folder.
        begin: as for :func:`finalize_sweep`.
        before: work to run first, guarded the same way.

    Returns:
        0, 1 when some cells failed, 2 for an error aurora names (a bug still raises).
    """
    summary: dict[str, Any] = {}

    def run() -> None:
        if before is not None:
            before()
        work = finalize_prepare if config.get("mode") == "prepare" else finalize_sweep
        summary.update(work(config, sweep_dir, begin=begin))

    code = run_guarded(run)
    return 1 if code == 0 and summary.get("n_failed_cells") else code


def _job_record(job: Path) -> dict[str, Any]:
    """What a job folder's saved Hydra config says of its cell (for its ``failed.json``)."""
    try:
        choices = OmegaConf.load(job / ".hydra" / "hydra.yaml").hydra.runtime.choices
        cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
    except (OSError, ValueError, AttributeError):
        return {}
    return _job_meta(cfg, choices)


def record_unfinished_jobs(sweep_dir: Path) -> list[Path]:
    """Record every job folder of a sweep that holds no result as failed.

    A job folder (it holds ``.hydra/``) with neither a ``cell.json`` nor a ``failed.json``
    belongs to a job that was killed (time or memory limit, node failure) or never ran; it
    gets a ``failed.json`` naming its cell from the job's saved config.

    Returns:
        The job folders recorded.
    """
    recorded = []
    for overrides in sorted(Path(sweep_dir).glob("*/.hydra/overrides.yaml")):
        job = overrides.parent.parent
        if (
            any(job.glob(CELL_FILE))
            or any(job.glob(f"*/{CELL_FILE}"))
            or any(job.glob(FAILED_FILE))
        ):
            continue
        meta = _job_record(job)
        err = RunError("no result: the job was killed (time or memory limit) or never ran")
        write_failed(job, meta, err)
        recorded.append(job)
    return recorded


class FinalizeSweep(Callback):
    """On the start of a multirun: mark its folder running and move earlier results aside; on
    its end: collect every cell, rank, fuse, report (in the sweep folder), set the exit code.

    Single runs are left alone: :func:`aurora.run.run_cluster` finalises them itself.
    """

    def __init__(self) -> None:
        self.started: set[str] = set()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Clear the sweep folder of an earlier sweep's results and job folders."""
        sweep_dir = Path(str(config.hydra.sweep.dir))
        start_run(config, sweep_dir, job_dirs=True)
        self.started.add(str(sweep_dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Finalise the sweep whose folder is ``config.hydra.sweep.dir``; exit nonzero on failures.

        Raises:
            SystemExit: with code 1 or 2 when a cell or the finalisation failed.
        """
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            log.warning("sweep folder %s not found; nothing to finalise", sweep_dir)
            return
        begin = str(sweep_dir) not in self.started
        try:
            code = finalize_sweep_code(config, sweep_dir, begin=begin)
        except Exception:
            log.exception("the finalisation of the sweep in %s failed", sweep_dir)
            code = 1
        if code:
            raise SystemExit(code)
