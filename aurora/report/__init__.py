"""The run report: a static HTML folder a physicist opens from disk.
Also the run's record (:mod:`.record`) and its scores in words (:mod:`.explain`). Must not import
run/ or solution/.

``write_report(record, RUN/report)`` is called at the end of every ``cluster.py`` run;
``python -m aurora.report RUN`` rebuilds the page from the run folder alone (it reads
``report/report_data.npz``, ``summary.json``, ``ranking.csv`` and the fusion landscapes).
When the run logs to TensorBoard, the figures, the montages and a projector embedding with the
group labels are written there too.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot; the report never opens a window

import numpy as np  # noqa: E402

from aurora.infra.run_folder import read_status  # noqa: E402
from aurora.report.build import Rendered, read_ranking, render  # noqa: E402
from aurora.report.data import (  # noqa: E402
    DATA_FILE,
    ReportData,
    ReportDataError,
    from_record,
    shrink,
)
from aurora.report.tables import confusion_table  # noqa: E402

if TYPE_CHECKING:
    from aurora.report.record import RunRecord

log = logging.getLogger("aurora")

#: At most this many points go to the TensorBoard projector (a random subset beyond it).
PROJECTOR_MAX_POINTS = 10_000
PROJECTOR_TAG = "fused_groups"

__all__ = [
    "ReportData",
    "ReportDataError",
    "confusion_table",
    "rebuild_report",
    "write_report",
]


def _cell_name(record: RunRecord) -> str | None:
    cell = record.solution_cell.get("cell") if record.solution_cell else None
    return None if cell is None else str(cell)


def write_report(record: RunRecord, out_dir: Path) -> Path:
    """Write ``out_dir/index.html`` with its figures and ``report_data.npz``.

    Args:
        record: the finished run (:class:`aurora.report.record.RunRecord`).
        out_dir: the report folder, usually ``RUN/report``.

    Returns:
        Path of ``index.html``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = from_record(record)
    data.save(out_dir / DATA_FILE)
    meta = {"solution_cell": _cell_name(record)}
    (out_dir / "report_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    run_dir = Path(record.run_dir)
    ranking = read_ranking(run_dir / "ranking.csv") or [dict(r) for r in record.ranking]
    rendered = render(data, record.summary, ranking, run_dir, out_dir, **meta)
    if record.tensorboard_dir is not None:
        try:
            log_tensorboard(rendered, data, record, Path(record.tensorboard_dir))
        except Exception as err:  # the HTML report is the product; TensorBoard is a bonus
            log.warning("could not write the report to TensorBoard: %s", err)
    _close(rendered)
    return rendered.index


def rebuild_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Redraw a run's report from its folder alone.

    Args:
        run_dir: the run folder (holds ``summary.json``, ``ranking.csv`` and ``report/``).
        out_dir: where to write (default ``run_dir/report``).

    Returns:
        Path of ``index.html``.

    Raises:
        ReportDataError: ``report/report_data.npz`` is missing or unreadable.
    """
    run_dir = Path(run_dir)
    src = run_dir / "report"
    out = Path(out_dir) if out_dir is not None else src
    data = ReportData.load(src / DATA_FILE)
    summary_path = run_dir / "summary.json"
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    meta_path = src / "report_meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if out != src:
        out.mkdir(parents=True, exist_ok=True)
        data.save(out / DATA_FILE)
        (out / "report_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    rendered = render(
        data,
        summary,
        read_ranking(run_dir / "ranking.csv"),
        run_dir,
        out,
        solution_cell=meta.get("solution_cell"),
        status=read_status(run_dir),
    )
    _close(rendered)
    return rendered.index


def _close(rendered: Rendered) -> None:
    for fig in rendered.figures.values():
        fig.clear()
    rendered.figures.clear()


def log_tensorboard(rendered: Rendered, data: ReportData, record: RunRecord, tb_dir: Path) -> None:
    """Figures, montages and a projector embedding (with group labels) into ``tb_dir``.

    The projector gets the solution cell's embedding (what the groups were found in) with
    ``group``, ``path``, ``timestamp``, ``moon`` (and ``truth``) columns and a sprite of
    32 px thumbnails; beyond :data:`PROJECTOR_MAX_POINTS` images a fixed random subset.
    """
    from torch.utils.tensorboard import SummaryWriter

    from aurora.extractors import export_projector  # torch: loaded only when TensorBoard is on

    tb_dir.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(log_dir=str(tb_dir))
    try:
        for name, fig in rendered.figures.items():
            writer.add_figure(f"report/{name}", fig, close=False)
        for name, img in rendered.images.items():
            writer.add_image(f"report/{name}", img, dataformats="HWC")
    finally:
        writer.close()
    n = len(data.labels)
    rows = np.arange(n)
    if n > PROJECTOR_MAX_POINTS:
        rng = np.random.default_rng(record.seed)
        rows = np.sort(rng.choice(n, PROJECTOR_MAX_POINTS, replace=False))
    meta: dict[str, Any] = {
        "group": [int(v) for v in data.labels[rows]],
        "path": [str(v) for v in data.ids[rows]],
        "timestamp": [str(v) for v in data.timestamps[rows]],
        "moon": [int(v) for v in data.moon[rows]],
    }
    if data.truth is not None:
        meta["truth"] = [str(v) for v in data.truth[rows]]
    thumbs = np.concatenate(
        [
            shrink(np.asarray(record.thumbnails[rows[a : a + 1024]]), 32)
            for a in range(0, len(rows), 1024)
        ]
    )
    export_projector(
        tb_dir, np.asarray(record.embedding)[rows], meta, thumbnails=thumbs, tag=PROJECTOR_TAG
    )
