"""The grid: every (extractor, reducer, clusterer, k) cell run, written and, when it fails,
recorded without stopping the others.

:func:`run_grid` takes plain values (features, config nodes as dicts, arrays), so a benchmark
runs the same loop as ``cluster.py`` (``bench/bench_grid.py``).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from omegaconf.errors import MissingMandatoryValue

from aurora.grid.cell import CellSpec, cell_name, run_cell
from aurora.grid.cell_files import clear_cell, collect_cells, write_cell, write_failed
from aurora.infra.cache import Cache
from aurora.infra.guard import error_line, one_line
from aurora.infra.logs import log, stage, to_log_files
from aurora.run.context import RunContext
from aurora.run.settings import RunSettings


class GridFeatures(Protocol):
    """What a grid cell needs of an extractor's features."""

    features: np.ndarray  # (N, D)
    key: str  # cache key of the features (the reductions are cached under it)
    random_init: bool  # recorded with the cell


def _is_user_error(err: BaseException) -> bool:
    """An error aurora reports in one line (see :func:`aurora.infra.guard.run_guarded`), not a
    bug."""
    return isinstance(err, MissingMandatoryValue) or error_line(err) is not None


def _traceback_to_log_files(err: BaseException, what: str) -> None:
    """Write the traceback of ``err`` to the log files only (the console keeps one line)."""
    to_log_files(
        logging.ERROR, "traceback of %s", what, exc_info=(type(err), err, err.__traceback__)
    )


def record_failure(out_dir: Path, meta: Mapping[str, Any], err: BaseException) -> Path:
    """Record a failed cell (``failed.json``) and log it in one line naming the cell.

    A bug (not an aurora error) keeps its traceback: in ``failed.json`` and in the log files.

    Returns:
        Path of ``failed.json``.
    """
    bug = not _is_user_error(err)
    text = "".join(traceback.format_exception(err)) if bug else None
    path = write_failed(out_dir, meta, err, text)
    name = cell_name(meta)
    if bug:
        log.error("cell %s FAILED (traceback in %s): %s", name, path, one_line(err))
        _traceback_to_log_files(err, f"the failed cell {name}")
    else:
        log.error("cell %s FAILED: %s", name, one_line(err))
    return path


def run_grid(
    cells: Sequence[CellSpec],
    features: Mapping[str, GridFeatures],
    reducers: Mapping[str, Mapping[str, Any]],
    clusterers: Mapping[str, Mapping[str, Any]],
    *,
    seed: int,
    cache_dir: str | Path,
    stability_splits: int,
    cells_dir: Path,
    must_link: np.ndarray | None = None,
    cannot_link: np.ndarray | None = None,
    truth: np.ndarray | None = None,
    nuisances: Mapping[str, Sequence[Any]] | None = None,
    keep_going: bool = True,
    fit_rows: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Run the given grid cells and write each one's ``cell.json`` + ``labels.npy``.

    A cell that raises is recorded (``failed.json`` in its folder, read back with
    :func:`aurora.grid.cell_files.collect_failed`; see :func:`record_failure`) and the grid goes on.

    Args:
        cells: the cells to run.
        features: extractor name -> its features (N rows each, the same images).
        reducers: reducer name -> its node (``_target_`` ...).
        clusterers: clusterer name -> its node (``n_clusters`` is set per cell).
        seed: run seed.
        cache_dir: cache folder (reductions are cached there).
        stability_splits: disjoint subsamples of the stability score.
        cells_dir: each cell gets the folder ``cells_dir/<cell.name>``.
        must_link: (M, 2) row pairs, for the clusterers that take constraints.
        cannot_link: (C, 2) row pairs.
        truth: (N,) true classes (None = unknown) for the external scores, or None.
        nuisances: name -> (N,) values whose dependence with each partition is scored.
        keep_going: false = a failing cell raises (a sweep job, which records itself).
        fit_rows: the rows every cell fits on (``grid.fit_sample``), or None = all.

    Returns:
        The finished cells under ``cells_dir`` (:func:`aurora.grid.cell_files.collect_cells`).
    """
    cache = Cache(cache_dir)
    for spec in cells:
        feats = features[spec.extractor]
        clusterer = {**clusterers[spec.clusterer], "n_clusters": spec.n_clusters}
        meta = _cell_meta(spec, seed, random_init=feats.random_init)
        out = cells_dir / spec.name
        clear_cell(out)
        try:
            with stage("cell") as st:
                result = run_cell(
                    feats.features,
                    dict(reducers[spec.reducer]),
                    clusterer,
                    seed=seed,
                    cache=cache,
                    features_key=feats.key,
                    stability_splits=stability_splits,
                    must_link=must_link,
                    cannot_link=cannot_link,
                    truth=truth,
                    nuisance=nuisances,
                    fit_rows=fit_rows,
                )
                write_cell(result, out, meta)
                s = result.scores
                st["msg"] = (
                    f"{spec.name}: silhouette {s.get('silhouette', float('nan')):.3f}, "
                    f"stability ARI {s.get('stability_ari', float('nan')):.3f}"
                )
        except Exception as err:
            if not keep_going:
                raise
            record_failure(out, meta, err)
    return collect_cells(cells_dir)


def _cell_meta(spec: CellSpec, seed: int, *, random_init: bool) -> dict[str, Any]:
    """What ``cell.json`` (or ``failed.json``) records of a cell besides its results."""
    meta: dict[str, Any] = {
        "extractor": spec.extractor,
        "reducer": spec.reducer,
        "clusterer": spec.clusterer,
        "n_clusters": spec.n_clusters,
        "seed": seed,
        "random_init": random_init,
    }
    if spec.requested is not None:
        meta["n_clusters_requested"] = spec.requested
    return meta


def run_cells(
    settings: RunSettings,
    ctx: RunContext,
    cells: list[CellSpec],
    cells_dir: Path,
    stability_splits: int,
    keep_going: bool = True,
) -> list[dict[str, Any]]:
    """:func:`aurora.run.grid.run_grid` on a run's context (features, constraints, truth)."""
    return run_grid(
        cells,
        ctx.features,
        settings.reducers,
        settings.clusterers,
        seed=settings.seed,
        cache_dir=settings.cache_dir,
        stability_splits=stability_splits,
        cells_dir=cells_dir,
        must_link=ctx.must_link,
        cannot_link=ctx.cannot_link,
        truth=ctx.truth.classes,
        nuisances=ctx.nuisances(),
        keep_going=keep_going,
        fit_rows=ctx.fit_rows(settings.grid.fit_sample, settings.seed),
    )
