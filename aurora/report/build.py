"""Draw the figures and fill the HTML template of a run's report."""

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

from aurora.grid.scoring import n_groups, nuisance_dependence
from aurora.report import plots
from aurora.report.data import ReportData
from aurora.report.explain import SCORE_SCALES, outputs, scored

TEMPLATE = "report.html.j2"
RANKING_ROWS = 25
UNKNOWN_CLASS = "(not in table)"


@dataclass
class Rendered:
    """What a render produced: the HTML file, and figures/images for TensorBoard."""

    index: Path
    figures: dict[str, Figure] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Table:
    """A labelled count table: ``counts[i, j]`` for row ``rows[i]`` and column ``cols[j]``."""

    rows: list[str]
    cols: list[str]
    counts: np.ndarray

    def view(self) -> list[dict[str, Any]]:
        """Rows for the template: name, ``cells`` as (count, row share) pairs, total."""
        out = []
        for name, row in zip(self.rows, self.counts, strict=True):
            total = int(row.sum())
            cells = [(int(c), float(c / total) if total else 0.0) for c in row]
            out.append({"name": name, "cells": cells, "total": total})
        return out


def group_names(labels: np.ndarray) -> list[tuple[int, str]]:
    """(label, display name) of groups 0..K-1, then unassigned when present."""
    k = n_groups(labels)
    out = [(g, str(g)) for g in range(k)]
    if (labels < 0).any():
        out.append((-1, "unassigned"))
    return out


def confusion_table(labels: np.ndarray, truth: np.ndarray) -> Table:
    """Counts of group × true class (rows: groups 0..K-1 then unassigned; columns sorted).

    Images without a true class (``""``) get the column :data:`UNKNOWN_CLASS`.
    """
    labels = np.asarray(labels)
    truth = np.asarray(truth, dtype=str)
    classes = sorted({c for c in truth if c})
    if (truth == "").any():
        classes.append(UNKNOWN_CLASS)
    col = {c: j for j, c in enumerate(classes)}
    rows = group_names(labels)
    row = {g: i for i, (g, _) in enumerate(rows)}
    counts = np.zeros((len(rows), len(classes)), np.int64)
    for g, c in zip(labels, truth, strict=True):
        counts[row[int(g) if g >= 0 else -1], col[c or UNKNOWN_CLASS]] += 1
    return Table([name for _, name in rows], classes, counts)


def _share(mask: np.ndarray) -> float:
    return float(mask.mean()) if len(mask) else math.nan


def group_stats(data: ReportData) -> list[dict[str, Any]]:
    """One row per group (and unassigned): size, share, Moon share, majority class, time span."""
    n = len(data.labels)
    times = data.timestamps
    out = []
    for g, name in group_names(data.labels):
        m = data.labels == g if g >= 0 else data.labels < 0
        row: dict[str, Any] = {
            "label": g,
            "name": name,
            "n": int(m.sum()),
            "share": float(m.sum() / n) if n else 0.0,
            "moon": _share(data.moon[m]),
        }
        if data.moon_truth is not None:
            row["moon_truth"] = _share(np.isin(data.moon_truth[m], ["1", "True", "true"]))
        if data.truth is not None:
            vals, counts = np.unique(data.truth[m], return_counts=True)
            best = int(np.argmax(counts))
            row["majority"] = str(vals[best]) or UNKNOWN_CLASS
            row["majority_share"] = float(counts[best] / counts.sum())
        ts = sorted(t for t in times[m] if t)
        if ts:
            row["first"], row["last"] = _span(ts[0], ts[-1])
        out.append(row)
    return out


def _span(first: str, last: str) -> tuple[str, str]:
    """ISO times shortened to minutes; the date of ``last`` dropped when it is ``first``'s."""
    a, b = first[:16].replace("T", " "), last[:16].replace("T", " ")
    return a, (b[11:] if a[:10] == b[:10] else b)


def _moon_ami(labels: np.ndarray, flag: np.ndarray) -> float:
    """:func:`~aurora.grid.scoring.nuisance_dependence` of the assigned images' groups on a
    Moon flag.

    Args:
        labels: (N,) fused labels, -1 = unassigned (left out).
        flag: (N,) str Moon flag, ``""`` = unknown (left out).

    Returns:
        The AMI, or NaN when the known flag takes fewer than two values among the assigned
        images (a Moon that is never, or always, in the sky cannot have split the groups).
    """
    m = labels >= 0
    f = np.asarray(flag)[m]
    if np.unique(f[f != ""]).size < 2:
        return math.nan
    return nuisance_dependence(labels[m], f)


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
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    out_dir.mkdir(parents=True, exist_ok=True)
    fig_dir = out_dir / "figures"
    if fig_dir.exists():
        shutil.rmtree(fig_dir)  # stale montages of an earlier render
    fig_dir.mkdir()
    res = Rendered(out_dir / "index.html")
    labels = data.labels
    k = data.n_groups
    colours = plots.group_colours(k)

    montages = []
    stats = {s["label"]: s for s in group_stats(data)}
    for g, name in group_names(labels):
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

    centres = {
        int(g): int(data.montage_index[np.flatnonzero(data.montage_labels == g)[0]])
        for g in np.unique(data.montage_labels)
    }
    is_ref = data.reference != ""
    fig = plots.plot_map(
        data.map2d, labels, centres, data.montage_index, data.map_method, references=is_ref
    )
    plots.save(fig, fig_dir / "map.png")
    res.figures["map"] = fig

    timeline = None
    fig = plots.plot_timeline(data.times(), labels)
    if fig is not None:
        plots.save(fig, fig_dir / "timeline.png")
        res.figures["timeline"] = fig
        timeline = "figures/timeline.png"

    ranking_png = None
    fig = plots.plot_ranking(ranking, highlight=solution_cell)
    if fig is not None:
        plots.save(fig, fig_dir / "ranking.png")
        res.figures["ranking"] = fig
        ranking_png = "figures/ranking.png"
    rank_cols = [
        "rank", "cell", "silhouette", "calinski_harabasz", "davies_bouldin",
        "stability_ari", "stability_ami", "borda",
    ]  # fmt: skip
    rank_rows = [
        {"cells": [_fmt(r.get(c)) for c in rank_cols], "solution": r.get("cell") == solution_cell}
        for r in ranking[:RANKING_ROWS]
    ]

    landscapes = []
    for src in sorted(run_dir.glob("fusion_landscape_*.png")):
        shutil.copyfile(src, fig_dir / src.name)
        landscapes.append(
            {"src": f"figures/{src.name}", "group": src.stem.removeprefix("fusion_landscape_")}
        )

    nights = _night_panels(summary, run_dir, fig_dir)

    confusion = None
    if data.truth is not None:
        confusion = confusion_table(labels, data.truth)
    references = confusion_table(labels[is_ref], data.reference[is_ref]) if is_ref.any() else None
    moon_flags = {"Moon detected by preprocessing": data.moon.astype(str)}
    if data.moon_truth is not None:
        moon_flags["Moon flag of the truth table"] = data.moon_truth
    moon_rows = [{"name": k_, "ami": _fmt(_moon_ami(labels, v))} for k_, v in moon_flags.items()]

    fusion = summary.get("fusion") or {}
    status_text, status_class = status_line(status, summary)
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = _fmt
    env.filters["pct"] = lambda v: "–" if v is None or math.isnan(v) else f"{100 * v:.0f}%"
    page = env.get_template(TEMPLATE).render(
        title=f"aurora report: {Path(str(summary.get('data_root', run_dir))).name}",
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        run_dir=str(run_dir.resolve()),
        summary=summary,
        status_text=status_text,
        status_class=status_class,
        failed_cells=summary.get("failed_cells") or [],
        duration=_duration(summary.get("seconds")),
        fusion=fusion,
        per_group=fusion.get("per_group") or {},
        n_groups=k,
        n_images=len(labels),
        n_unassigned=int((labels < 0).sum()),
        skipped=summary.get("skipped_extractors") or {},
        random_init=summary.get("random_init_extractors") or [],
        solution_cell=solution_cell,
        montages=montages,
        stats=list(stats.values()),
        has_moon_truth=data.moon_truth is not None,
        has_truth=data.truth is not None,
        map_png="figures/map.png",
        map_method=data.map_method,
        timeline=timeline,
        nights=nights,
        season_png="figures/season.png" if (fig_dir / "season.png").exists() else None,
        ranking_png=ranking_png,
        rank_cols=rank_cols,
        rank_rows=rank_rows,
        n_cells=len(ranking),
        landscapes=landscapes,
        external=_external_rows(summary),
        confusion=confusion,
        references=references,
        moon_rows=moon_rows,
        fused_ami_moon=summary.get("fused_ami_moon"),
        scales=SCORE_SCALES,
        headline=_truth_headline(summary),
        outputs=[  # the files beside this page (report/index.html is the page itself)
            {"name": name, "what": what, "href": f"../{name}"}
            for name, what, _ in outputs(run_dir)
            if not name.startswith("report/")
        ],
        esc=html.escape,
    )
    res.index.write_text(page, encoding="utf-8")
    return res
