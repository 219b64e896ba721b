"""A run's budget step: estimate each stage, show and record the table, refuse what will not fit
(:func:`plan_budget`, called right after the scan)."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from aurora.data.sources import Manifest
from aurora.infra.atomic import atomic_write_text
from aurora.infra.logs import log, to_log_files
from aurora.run.budget.machine import machine_budget
from aurora.run.budget.model import ESTIMATES_FILE, Budget, BudgetError, StageEstimate, gb
from aurora.run.budget.stages import estimate_stages
from aurora.run.settings import RunSettings


def _total_disk(estimates: Sequence[StageEstimate]) -> int:
    """The run's new disk: the sum over its stages."""
    return sum(e.disk_bytes for e in estimates)


def check_budget(estimates: Sequence[StageEstimate], budget: Budget) -> None:
    """Refuse what will not fit.

    Raises:
        BudgetError: the first stage whose memory is over the budget; else the run's total new
            disk over the budget (naming the stage that writes most).
    """
    for e in estimates:
        if e.memory_bytes > budget.memory_bytes:
            raise BudgetError(
                e.stage,
                "memory",
                e.memory_bytes,
                budget.memory_bytes,
                budget.memory_source,
                e.memory_key,
                e.detail,
            )
    total = _total_disk(estimates)
    if total > budget.disk_bytes:
        top = max(estimates, key=lambda e: e.disk_bytes)
        raise BudgetError(
            "all",
            "disk",
            total,
            budget.disk_bytes,
            budget.disk_source,
            top.disk_key,
            f"most in stage {top.stage}: {gb(top.disk_bytes)}",
        )


def _runs(e: StageEstimate) -> bool:
    """The stage has work in this run (a stage with nothing to do estimates 0 memory)."""
    return e.memory_bytes > 0 or e.disk_bytes > 0


def format_estimates(estimates: Sequence[StageEstimate], budget: Budget) -> str:
    """The estimates as a small aligned table: one line per stage that runs (a stage with
    nothing to do, e.g. training when every checkpoint is cached, is left out), the total
    disk, the budget."""
    rows = [("stage", "memory", "new disk", "made of")]
    rows += [
        (e.stage, gb(e.memory_bytes), gb(e.disk_bytes), e.detail) for e in estimates if _runs(e)
    ]
    rows.append(("total", "", gb(_total_disk(estimates)), ""))
    rows.append(
        (
            "budget",
            gb(budget.memory_bytes),
            gb(budget.disk_bytes),
            f"memory: {budget.memory_source}; disk: {budget.disk_source}",
        )
    )
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}  {r[3]}".rstrip() for r in rows
    )


def plan_budget(
    manifest: Manifest,
    settings: RunSettings,
    extractor_names: Sequence[str],
    n_cells: int,
    run_dir: Path,
) -> list[StageEstimate]:
    """Estimate, show and record each stage's cost; refuse what will not fit.

    Prints the table (:func:`format_estimates`), logs it to the run's log files, writes
    ``run_dir/estimates.json`` (``n``, ``stages``, ``budget``, ``fits``), then, with
    ``budget.check``, :func:`check_budget`.

    Returns:
        The estimates.

    Raises:
        BudgetError: ``budget.check`` and a stage over the budget (estimates.json is written
            first).
    """
    estimates = estimate_stages(manifest, settings, extractor_names, n_cells)
    budget = machine_budget(settings.budget, settings.cache_dir)
    error: BudgetError | None = None
    try:
        check_budget(estimates, budget)
    except BudgetError as err:
        error = err
    n = len(manifest.records)
    table = format_estimates(estimates, budget)
    idle = [e.stage for e in estimates if not _runs(e)]
    done = f"; nothing to do: {', '.join(idle)}" if idle else ""
    print(f"estimated peak memory and new disk per stage ({n:,} images, {n_cells} cells{done}):")
    print(table, flush=True)
    to_log_files(
        logging.INFO,
        "estimated peak memory and new disk per stage (%s images):\n%s",
        f"{n:,}",
        table,
    )
    doc = {
        "n": n,
        "n_cells": n_cells,
        "extractors": list(extractor_names),
        "stages": [dataclasses.asdict(e) for e in estimates],
        "total_disk_bytes": _total_disk(estimates),
        "budget": {**dataclasses.asdict(budget), "check": settings.budget.check},
        "fits": error is None,
        "over_budget": None if error is None else str(error),
    }
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / ESTIMATES_FILE, json.dumps(doc, indent=2) + "\n")
    if error is not None:
        if settings.budget.check:
            raise error
        log.warning("over budget, going on (budget.check=false): %s", error)
    return estimates
