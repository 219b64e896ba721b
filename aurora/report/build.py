"""Draw the figures and fill the HTML template of a run's report (the numbers it shows come from
:mod:`.tables`)."""

from __future__ import annotations

import csv
import html
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from aurora.report import plots
from aurora.report.data import ReportData
from aurora.report.explain import SCORE_SCALES, outputs, scored
from aurora.report.tables import confusion_table, group_names, group_stats, moon_ami

TEMPLATE = "report.html.j2"
RANKING_ROWS = 25


@dataclass
class Rendered:
    """What a render produced: the HTML file, and figures/images for TensorBoard."""

    index: Path
    figures: dict[str, Figure] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)


def read_ranking(path: Path) -> list[dict[str, Any]]:
    """Rows of ``ranking.csv`` (empty when absent)."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or v == "":
        return "–"
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            return v
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int | np.integer):
        return str(int(v))
    f = float(v)
    if math.isnan(f):
        return "–"
    if f != 0 and (abs(f) >= 1e4 or abs(f) < 1e-3):
        return f"{f:.{digits}g}"
    if f.is_integer() and abs(f) < 1e6:
        return str(int(f))
    if abs(f) >= 100:
        return f"{f:.1f}"
    return f"{f:.{digits}f}"


def _duration(seconds: Any) -> str | None:
    if seconds is None:
        return None
    s = float(seconds)
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def status_line(status: Mapping[str, Any] | None, summary: Mapping[str, Any]) -> tuple[str, str]:
    """The run's status in words, and its CSS class (the state).

    Args:
        status: the run folder's ``status.json`` (see :mod:`aurora.infra.run_folder`), or None while
            the run writes its own report (it is then finishing: the summary says how).
        summary: the run's ``summary.json`` (``n_cells``, ``n_failed_cells``).
    """
    st = status or {}
    n_cells, n_failed = summary.get("n_cells"), int(summary.get("n_failed_cells") or 0)
    state = str(st.get("state") or ("finished_with_failures" if n_failed else "finished"))
    if state == "running":
        return f"running since {st.get('started', '?')}: not a finished result", state
    if state == "failed":
        return f"failed: {st.get('error', 'see status.json')}", state
    when = f" {st['ended']}" if st.get("ended") else ""
    if n_failed:
        return (
            f"finished{when}, but {n_failed} of {n_cells} grid cells failed (failed.csv); "
            "the others were ranked and fused",
            "finished_with_failures",
        )
    cells = f": all {n_cells} grid cells finished" if n_cells is not None else ""
    return f"finished{when}{cells}", "finished"


def _external_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key, title in (
        ("best_cell_external", f"best-ranked cell ({summary.get('best_cell', '?')})"),
        ("fused_external", "fused groups (labels.csv; assigned images)"),
    ):
        if isinstance(summary.get(key), Mapping):
            rows.append({"name": title, **{k: _fmt(v) for k, v in summary[key].items()}})
    return rows


def _truth_headline(summary: Mapping[str, Any]) -> str | None:
    """The fused groups' agreement with the truth table, with its scale (None without one)."""
    fused = summary.get("fused_external")
    if not isinstance(fused, Mapping) or fused.get("ami") is None:
        return None
    return f"fused groups: {scored('AMI', float(fused['ami']))}"


def _night_panels(summary: Mapping[str, Any], run_dir: Path, fig_dir: Path) -> list[dict]:
    """The nights of ``summary`` with their panels (``keograms/NIGHT.png``, copied beside the
    page, with the season overview)."""
    keo = run_dir / "keograms"
    if (keo / "season.png").is_file():
        shutil.copyfile(keo / "season.png", fig_dir / "season.png")
    panels = []
    for night in summary.get("nights") or []:
        src = keo / f"{night['night']}.png"
        if not src.is_file():
            continue
        shutil.copyfile(src, fig_dir / f"night_{src.name}")
        counts = {**(night.get("flags") or {}), "too dark": night.get("too_dark", 0)}
        flags = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
        panels.append({**night, "src": f"figures/night_{src.name}", "flag_text": flags})
    return panels


def render(
    data: ReportData,
    summary: Mapping[str, Any],
    ranking: Sequence[Mapping[str, Any]],
    run_dir: Path,
    out_dir: Path,
    *,
    solution_cell: str | None = None,
    status: Mapping[str, Any] | None = None,
) -> Rendered:
    """Write the PNGs and ``index.html`` of a report into ``out_dir``.

    Args:
        data: per-image columns and montage picks.
        summary: the run's ``summary.json``.
        ranking: ranked grid cells (``ranking.csv`` rows).
        run_dir: the run folder (fusion landscapes are copied from it).
        out_dir: the report folder (created).
        solution_cell: name of the cell whose embedding is mapped (highlighted).
        status: the run folder's ``status.json`` (None: the run is writing its own report).

    Returns:
        The index path, and the figures / montage images (for TensorBoard).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    fig_dir = out_dir / "figures"
    if fig_dir.exists():
        shutil.rmtree(fig_dir)  # stale montages of an earlier render
    fig_dir.mkdir()
    res = Rendered(out_dir / "index.html")
    montages, stats = _draw_montages(data, fig_dir, res)
    figures = _draw_figures(data, ranking, fig_dir, res, solution_cell=solution_cell)
    landscapes = _copy_landscapes(run_dir, fig_dir)
    nights = _night_panels(summary, run_dir, fig_dir)
    page = _template().render(
        **_run_context(summary, run_dir, status),
        **_group_context(data),
        **figures,
        **_ranking_context(ranking, solution_cell),
        solution_cell=solution_cell,
        montages=montages,
        stats=stats,
        nights=nights,
        season_png="figures/season.png" if (fig_dir / "season.png").exists() else None,
        landscapes=landscapes,
        scales=SCORE_SCALES,
        esc=html.escape,
    )
    res.index.write_text(page, encoding="utf-8")
    return res


def _draw_montages(
    data: ReportData, fig_dir: Path, res: Rendered
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One montage PNG per group with picks (kept in ``res.images``).

    Returns:
        The montages for the template (each group's statistics, picture, count shown and
        colour), and every group's statistics (:func:`group_stats`).
    """
    colours = plots.group_colours(data.n_groups)
    montages = []
    stats = {s["label"]: s for s in group_stats(data)}
    for g, name in group_names(data.labels):
        sel = data.montage_labels == g
        if not sel.any():
            continue
        sheet = plots.montage_sheet(data.thumbs[sel])
        fname = f"montage_{'unassigned' if g < 0 else f'{g:03d}'}.png"
        plots.save_png(sheet, fig_dir / fname)
        res.images[f"montage/{name}"] = sheet
        montages.append(
            {
                **stats[g],
                "src": f"figures/{fname}",
                "shown": int(sel.sum()),
                "colour": plots.hex_colour(plots.colour_of(g, colours)),
            }
        )
    return montages, list(stats.values())


def _draw_figures(
    data: ReportData,
    ranking: Sequence[Mapping[str, Any]],
    fig_dir: Path,
    res: Rendered,
    *,
    solution_cell: str | None,
) -> dict[str, Any]:
    """The map, the timeline and the ranking figure as PNGs (kept in ``res.figures``).

    Returns:
        Their template fields (``map_png``, ``map_method``, ``timeline``, ``ranking_png``;
        None for a figure the run has no data for).
    """
    centres = {
        int(g): int(data.montage_index[np.flatnonzero(data.montage_labels == g)[0]])
        for g in np.unique(data.montage_labels)
    }
    fig = plots.plot_map(
        data.map2d,
        data.labels,
        centres,
        data.montage_index,
        data.map_method,
        references=data.reference != "",
    )
    map_png = _save_figure(fig, "map", fig_dir, res)
    timeline = _save_figure(
        plots.plot_timeline(data.times(), data.labels), "timeline", fig_dir, res
    )
    fig = plots.plot_ranking(ranking, highlight=solution_cell)
    return {
        "map_png": map_png,
        "map_method": data.map_method,
        "timeline": timeline,
        "ranking_png": _save_figure(fig, "ranking", fig_dir, res),
    }


def _save_figure(fig: Figure | None, name: str, fig_dir: Path, res: Rendered) -> str | None:
    """Save ``fig`` as ``figures/NAME.png`` (kept in ``res.figures``); its page address, or None
    when there is no figure."""
    if fig is None:
        return None
    plots.save(fig, fig_dir / f"{name}.png")
    res.figures[name] = fig
    return f"figures/{name}.png"


def _copy_landscapes(run_dir: Path, fig_dir: Path) -> list[dict[str, str]]:
    """The fusion landscapes of the run, copied beside the page: picture and fusion group."""
    landscapes = []
    for src in sorted(run_dir.glob("fusion_landscape_*.png")):
        shutil.copyfile(src, fig_dir / src.name)
        landscapes.append(
            {"src": f"figures/{src.name}", "group": src.stem.removeprefix("fusion_landscape_")}
        )
    return landscapes


def _ranking_context(
    ranking: Sequence[Mapping[str, Any]], solution_cell: str | None
) -> dict[str, Any]:
    """The ranking table's columns and first :data:`RANKING_ROWS` rows (formatted), and the
    number of cells."""
    rank_cols = [
        "rank", "cell", "silhouette", "calinski_harabasz", "davies_bouldin",
        "stability_ari", "stability_ami", "borda",
    ]  # fmt: skip
    rank_rows = [
        {"cells": [_fmt(r.get(c)) for c in rank_cols], "solution": r.get("cell") == solution_cell}
        for r in ranking[:RANKING_ROWS]
    ]
    return {"rank_cols": rank_cols, "rank_rows": rank_rows, "n_cells": len(ranking)}


def _group_context(data: ReportData) -> dict[str, Any]:
    """Counts of the groups, their tables against the truth and the labelled reference images,
    and their dependence on each Moon flag."""
    labels = data.labels
    is_ref = data.reference != ""
    confusion = None
    if data.truth is not None:
        confusion = confusion_table(labels, data.truth)
    references = confusion_table(labels[is_ref], data.reference[is_ref]) if is_ref.any() else None
    moon_flags = {"Moon detected by preprocessing": data.moon.astype(str)}
    if data.moon_truth is not None:
        moon_flags["Moon flag of the truth table"] = data.moon_truth
    moon_rows = [{"name": k_, "ami": _fmt(moon_ami(labels, v))} for k_, v in moon_flags.items()]
    return {
        "n_groups": data.n_groups,
        "n_images": len(labels),
        "n_unassigned": int((labels < 0).sum()),
        "has_moon_truth": data.moon_truth is not None,
        "has_truth": data.truth is not None,
        "confusion": confusion,
        "references": references,
        "moon_rows": moon_rows,
    }


def _run_context(
    summary: Mapping[str, Any], run_dir: Path, status: Mapping[str, Any] | None
) -> dict[str, Any]:
    """What the page says of the run: title, status, duration, fusion, extractors skipped or
    untrained, agreement with the truth table, and the output files beside the page."""
    fusion = summary.get("fusion") or {}
    status_text, status_class = status_line(status, summary)
    return {
        "title": f"aurora report: {Path(str(summary.get('data_root', run_dir))).name}",
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "run_dir": str(run_dir.resolve()),
        "summary": summary,
        "status_text": status_text,
        "status_class": status_class,
        "failed_cells": summary.get("failed_cells") or [],
        "duration": _duration(summary.get("seconds")),
        "fusion": fusion,
        "per_group": fusion.get("per_group") or {},
        "skipped": summary.get("skipped_extractors") or {},
        "random_init": summary.get("random_init_extractors") or [],
        "external": _external_rows(summary),
        "fused_ami_moon": summary.get("fused_ami_moon"),
        "headline": _truth_headline(summary),
        "outputs": [  # the files beside this page (report/index.html is the page itself)
            {"name": name, "what": what, "href": f"../{name}"}
            for name, what, _ in outputs(run_dir)
            if not name.startswith("report/")
        ],
    }


def _template() -> Any:
    """The page's Jinja template, with the number filters ``fmt`` and ``pct``."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = _fmt
    env.filters["pct"] = lambda v: "–" if v is None or math.isnan(v) else f"{100 * v:.0f}%"
    return env.get_template(TEMPLATE)
