"""After the grid: rank the cells, fuse the best partitions, write the run's outputs, the
run record (solution and report) and the summary."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aurora.data.dataset import Truth
from aurora.data.sources import Rejection, write_labels_csv, write_rejected_csv
from aurora.fusion import (
    FusionSettings,
    load_partitions,
    plot_search_landscape,
    select_partitions,
)
from aurora.fusion.structure import assess_structure
from aurora.grid.cell_files import write_failed_csv
from aurora.grid.ranking import write_ranking, write_results
from aurora.grid.scoring import external_scores, nuisance_dependence
from aurora.grid.scoring import n_groups as count_groups
from aurora.infra.cache import Cache
from aurora.infra.errors import RunError
from aurora.infra.logs import log, stage
from aurora.reduction import cached_entry, fit_transform_cached
from aurora.report import write_report
from aurora.report.explain import outputs, truth_lines
from aurora.report.record import FusionOutcome, RunRecord
from aurora.run.context import RunContext
from aurora.run.nights import write_nights
from aurora.run.screening import Screened
from aurora.run.settings import RunSettings
from aurora.training.loggers import logs_to_tensorboard


def fuse(fusion: FusionSettings, ranking_csv: Path, out_dir: Path) -> FusionOutcome:
    """Fuse the best-ranked partitions (per extractor or overall) by co-association voting.

    With a search, each group's setting is chosen by the thesis's loss and the
    group with the lowest loss gives ``labels.csv``; otherwise the configured voting is used and
    the group holding the best-ranked cell gives it.

    Args:
        fusion: the fusion settings (fitted to the data).
        ranking_csv: the grid's ``ranking.csv``.
        out_dir: where per-group search tables and landscapes go.
    """
    search = fusion.search
    groups = select_partitions(ranking_csv, fusion.candidates, fusion.per_extractor)
    outcomes: list[FusionOutcome] = []
    for name, paths in groups.items():
        parts = load_partitions(paths)
        if search is not None:
            res = search.search(parts)
            res.write_table(out_dir / f"fusion_search_{name}.csv")
            plot_search_landscape(res, out_dir / f"fusion_landscape_{name}.png")
            b = res.best
            outcomes.append(
                FusionOutcome(
                    res.labels,
                    name,
                    int(b["n_partitions"]),
                    float(b["threshold"]),
                    int(b["min_cluster_size"]),
                    float(b["loss"]),
                )
            )
        else:
            n = min(fusion.n_partitions, parts.shape[0])
            labels = fusion.voting_estimator().fit_predict(parts[:n].T)  # (n_images, n_partitions)
            outcomes.append(
                FusionOutcome(
                    np.asarray(labels, dtype=np.int64),
                    name,
                    n,
                    fusion.threshold,
                    fusion.min_cluster_size,
                    None,
                )
            )
    per_group = {
        o.group: {
            "n_groups": count_groups(o.labels),
            "unassigned": int((o.labels < 0).sum()),
            "n_partitions": o.n_partitions,
            "threshold": o.threshold,
            "min_cluster_size": o.min_cluster_size,
            "loss": o.loss,
        }
        for o in outcomes
    }
    best = min(outcomes, key=lambda o: o.loss) if search is not None else outcomes[0]
    best.per_group = per_group
    return best


def external_summary(
    truth: Truth,
    ranked: Sequence[Mapping[str, Any]],
    fused: np.ndarray,
    moon: np.ndarray | None = None,
) -> dict[str, Any]:
    """External scores of the best-ranked cell and of the fused grouping (truth needed).

    The fused grouping is scored on its assigned images (``fused >= 0``): the unassigned ones
    are reported as a fraction, not scored as one more group, so that homogeneity answers
    "how pure are the groups" and the fraction "how many images they leave out".

    Args:
        truth: the truth table's classes and nuisances of the N images.
        ranked: the ranked cells (the first one's ``labels_path`` is scored).
        fused: (N,) fused labels.
        moon: (N,) the Moon detected by preprocessing: the ``moon`` nuisance when the table
            has none.
    """
    if truth.classes is None:
        return {}
    best_labels = np.load(ranked[0]["labels_path"])
    assigned = fused >= 0
    out: dict[str, Any] = {
        "best_cell": ranked[0]["cell"],
        "best_cell_external": external_scores(best_labels, truth.classes),
        "fused_external": external_scores(fused[assigned], truth.classes[assigned]),
        "fused_unassigned_fraction": float((~assigned).mean()),
    }
    nuisances = dict(truth.nuisances)
    if "moon" not in nuisances and moon is not None:
        nuisances["moon"] = np.asarray(moon)  # the Moon detected by preprocessing
    for name, values in nuisances.items():
        out[f"fused_ami_{name}"] = nuisance_dependence(fused[assigned], values[assigned])
    return out


def finalize(
    settings: RunSettings,
    ctx: RunContext,
    cells: Sequence[Mapping[str, Any]],
    out_dir: Path,
    extra: Mapping[str, Any] | None = None,
    failed: Sequence[Mapping[str, Any]] = (),
    screened: Screened | None = None,
) -> RunRecord:
    """Rank the cells, fuse, and write the run's outputs into ``out_dir``.

    Writes ``failed.csv`` (``cell,error,folder``; only a header when no cell failed),
    ``ranking.csv``, ``results.csv``, fusion tables, ``labels.csv`` (``path,label``),
    ``rejected.csv`` (``path,reason``), ``summary.json``, ``solution/`` and ``report/``.

    Args:
        settings: the run's settings (fitted to the data).
        ctx: data and features of the run.
        cells: the finished cells (:func:`aurora.grid.cell_files.collect_cells`).
        out_dir: the run (or sweep) folder.
        extra: more summary entries.
        failed: the cells that failed (:func:`aurora.grid.cell_files.collect_failed`).
        screened: the screening of the data frames: ``screen.csv``, keograms and events
            are written from it (:mod:`aurora.run.nights`), or None.

    Returns:
        The run record (its ``summary`` has counts, failed cells, the chosen fusion and, when
        truth exists, the external scores).

    Raises:
        RunError: no cell finished (after writing ``failed.csv``).
    """
    from aurora.solution import save_solution  # torch, for the extractor's weights

    ids, rejected = ctx.ids, ctx.rejected
    check_some_cells(cells, failed, out_dir)
    n = {int(c["n_samples"]) for c in cells}
    if n != {len(ids)}:
        raise RunError(f"cells have {sorted(n)} labels but the data set has {len(ids)} images")
    with stage("rank") as st:
        ranked = write_ranking(cells, out_dir / "ranking.csv")
        write_results(cells, out_dir / "results.csv")
        st["msg"] = f"{len(cells)} cells ranked; best {ranked[0]['cell']}"
    with stage("fuse") as st:
        fusion = fuse(settings.fusion, out_dir / "ranking.csv", out_dir)
        labels = [int(v) for v in fusion.labels]
        write_labels_csv(out_dir / "labels.csv", ids, {"label": labels}, ctx.duplicates)
        write_rejected_csv(rejected, out_dir / "rejected.csv")
        n_groups = count_groups(fusion.labels)
        st["msg"] = (
            f"{fusion.group}: {n_groups} groups, {int((fusion.labels < 0).sum())} unassigned "
            f"(P={fusion.n_partitions}, t={fusion.threshold}, min size {fusion.min_cluster_size})"
        )
    summary = _summary(
        settings, ctx, fusion, best=ranked[0]["cell"], n_cells=len(cells), failed=failed
    )
    summary.update(extra or {})
    if n_groups == 0:
        summary["notice"] = _no_groups_reason(fusion, len(ids))
        log.warning("no groups: %s", summary["notice"])
    if "started" in summary:  # perf_counter() at the start of the run
        summary["seconds"] = round(time.perf_counter() - float(summary.pop("started")), 1)
    summary.update(external_summary(ctx.truth, ranked, fusion.labels, ctx.moon))
    record = _run_record(settings, ctx, ranked, fusion, summary, out_dir)
    summary.update(structure_summary(record))
    if screened is not None:
        summary.update(
            write_nights(
                out_dir, screened, settings.nights, record.ids, record.labels, record.features
            )
        )
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    with stage("solution") as st:
        sol = save_solution(record, out_dir / "solution")
        st["msg"] = str(sol)
    with stage("report") as st:
        rep = write_report(record, out_dir / "report")
        st["msg"] = str(rep)
    return record


def _summary(
    settings: RunSettings,
    ctx: RunContext,
    fusion: FusionOutcome,
    *,
    best: str,
    n_cells: int,
    failed: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The first entries of ``summary.json``: the images counted, the fused groups, the cells.

    Args:
        settings: the run's settings.
        ctx: data and features of the run.
        fusion: the chosen fusion.
        best: the best-ranked cell's name.
        n_cells: cells that finished.
        failed: the cells that failed.
    """
    ids, rejected = ctx.ids, ctx.rejected
    return {
        "data_root": settings.data.root,
        "n_inputs": len(ids) + len(ctx.duplicates) + len(rejected),
        "n_duplicates": len(ctx.duplicates),
        "n_accepted": len(ids),
        "n_rejected": len(rejected),
        "rejected_by_reason": _count_reasons(rejected),
        "n_groups": count_groups(fusion.labels),
        "n_unassigned": int((fusion.labels < 0).sum()),
        "fusion": {
            "group": fusion.group,
            "n_partitions": fusion.n_partitions,
            "threshold": fusion.threshold,
            "min_cluster_size": fusion.min_cluster_size,
            "loss": fusion.loss,
            "per_group": fusion.per_group,
        },
        "best_cell": best,
        "n_cells": n_cells + len(failed),
        "n_failed_cells": len(failed),
        "failed_cells": [{"cell": f["cell"], "error": f["error"]} for f in failed],
    }


def structure_summary(record: RunRecord) -> dict[str, Any]:
    """``structure`` and ``structure_test`` of the fused groups on the solution's features
    (:func:`aurora.fusion.structure.assess_structure`)."""
    with stage("structure") as st:
        test = assess_structure(record.features, record.labels, record.timestamps, record.seed)
        st["msg"] = f"{test.n_groups} groups: " + (
            "structure" if test.structure else f"no structure ({test.reason})"
        )
    return test.to_summary()


def check_some_cells(
    cells: Sequence[Mapping[str, Any]], failed: Sequence[Mapping[str, Any]], out_dir: Path
) -> None:
    """Write ``failed.csv``; raise when no cell finished (there is nothing to rank)."""
    write_failed_csv(failed, out_dir / "failed.csv")
    if cells:
        return
    if failed:
        first = failed[0]
        raise RunError(
            f"all {len(failed)} grid cells failed (see {out_dir / 'failed.csv'}); "
            f"the first, {first['cell']}: {first['error']}"
        )
    raise RunError(f"no finished grid cells under {out_dir}")


def _run_record(
    settings: RunSettings,
    ctx: RunContext,
    ranked: Sequence[Mapping[str, Any]],
    fusion: FusionOutcome,
    summary: dict[str, Any],
    out_dir: Path,
) -> RunRecord:
    """Collect what the report and the solution need (the reduction is a cache hit)."""
    group = fusion.group
    cell = next(r for r in ranked if group in ("all", str(r["extractor"])))
    name = str(cell["extractor"])
    feats = ctx.features[name]
    reducer_cfg = dict(settings.reducers[str(cell["reducer"])])
    cache = Cache(settings.cache_dir)
    seed = settings.seed
    fit_rows = ctx.fit_rows(settings.grid.fit_sample, seed)
    embedding = fit_transform_cached(
        feats.features, reducer_cfg, seed, cache, feats.key, fit_rows=fit_rows
    )
    tb = out_dir / "tb" if logs_to_tensorboard(settings.train.logger) else None
    return RunRecord(
        run_dir=out_dir,
        ids=list(ctx.ids),
        paths=list(ctx.paths),
        timestamps=list(ctx.timestamps),
        labels=np.asarray(fusion.labels, dtype=np.int64),
        features=feats.features,
        embedding=np.asarray(embedding),
        thumbnails=feats.images,
        moon=np.asarray(ctx.moon),
        reference_classes=list(ctx.reference_classes),
        truth=ctx.truth.classes,
        nuisances=dict(ctx.truth.nuisances),
        rejected=list(ctx.rejected),
        ranking=[dict(r) for r in ranked],
        summary=summary,
        solution_cell=dict(cell),
        extractor_name=name,
        extractor_cfg=feats.extractor_cfg,
        extractor_identity=feats.identity,
        preprocess_cfg=feats.store.config,
        reducer_cfg=reducer_cfg,
        reducer_entry=cached_entry(cache, feats.key, reducer_cfg, seed, fit_rows),
        features_key=feats.key,
        seed=seed,
        config=settings.config,
        tensorboard_dir=tb,
    )


def _no_groups_reason(fusion: FusionOutcome, n: int) -> str:
    """Why a fusion left every image unassigned, and what to change."""
    return (
        f"every one of the {n} images is unassigned: no set of images agreeing in more than "
        f"{fusion.threshold:g} of the {fusion.n_partitions} fused partitions reached the minimum "
        f"group size {fusion.min_cluster_size} (fusion.min_cluster_size; with fusion=search, "
        "fusion.search.min_sizes). Lower it, lower fusion.threshold, or give more images"
    )


def _count_reasons(rejected: Sequence[Rejection]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rejected:
        counts[r.reason] = counts.get(r.reason, 0) + 1
    return counts


def print_summary(summary: Mapping[str, Any], out_dir: Path) -> None:
    """The end-of-run summary on stdout: counts, notes, each score with its scale, and where
    every output is (:mod:`aurora.report.explain`)."""
    run_dir = out_dir.resolve()
    unassigned = summary["n_unassigned"]
    lines = [
        "",
        "aurora summary",
        f"  inputs {summary['n_inputs']}: accepted {summary['n_accepted']}, "
        f"duplicates {summary.get('n_duplicates', 0)} (labelled like their originals), "
        f"rejected {summary['n_rejected']} {summary['rejected_by_reason'] or ''}".rstrip(),
        f"  groups {summary['n_groups']}, unassigned {unassigned} (in no group: label -1)",
        f"  best grid cell (internal ranking): {summary['best_cell']}",
    ]
    n_failed = int(summary.get("n_failed_cells") or 0)
    if n_failed:
        lines.append(
            f"  {n_failed} of {summary['n_cells']} grid cells FAILED "
            f"(the others were ranked and fused; see {out_dir / 'failed.csv'}):"
        )
        shown = summary.get("failed_cells") or []
        lines += [f"    {f['cell']}: {f['error']}" for f in shown[:5]]
        if len(shown) > 5:
            lines.append(f"    ... and {len(shown) - 5} more")
    if summary.get("notice"):
        lines.append(f"  NOTE: {summary['notice']}")
    if summary.get("structure") is False and summary["n_groups"]:  # none: the notice says
        lines.append(f"  NOTE: {summary['structure_test']['sentence']}")
    for name, why in (summary.get("skipped_extractors") or {}).items():
        lines.append(f"  note: {name} not used: {why}")
    if summary.get("random_init_extractors"):
        lines.append(f"  RANDOM weights: {summary['random_init_extractors']}")
    lines += [f"  {line}" for line in truth_lines(summary)]
    lines.append(f"  outputs in {run_dir}:")
    found = outputs(run_dir)
    width = max((len(name) for name, _, _ in found), default=0)
    lines += [f"    {name:<{width}}  {what}" for name, what, _ in found]
    print("\n".join(lines), flush=True)
