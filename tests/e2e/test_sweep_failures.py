"""A grid cell that fails is recorded and the others are still ranked, fused and reported.

Both ways of running a grid: one process (``run_cluster``) and a Hydra ``-m`` sweep (one cell
per job, finalised by ``aurora.run.sweep.FinalizeSweep``). The session's tiny synthetic sky and
tiny autoencoder (tests/conftest.py): the encoder is trained once for the whole session.
"""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT, compose_cfg
from hydra.types import RunMode

import aurora.run.grid
from aurora.grid.cell_files import FAILED_FILE
from aurora.infra.errors import RunError
from aurora.run import finalize_sweep, run_sweep_cell
from aurora.run.cli import main

# The grid of these tests on top of debug=tiny (conf/debug/tiny.yaml).
GRID = [
    "grid.clusterers=[kmeans,agglomerative]",
    "grid.n_clusters=[3,4]",
    "fusion.n_partitions=2",
    "fusion.min_cluster_size=2",
]
SWEEP_CELL = ["extractor=autoencoder", "reducer=pca", "clusterer=kmeans"]
CHOICES = {"extractor": "autoencoder", "reducer": "pca", "clusterer": "kmeans"}


@pytest.fixture(scope="module")
def base(tiny_overrides: list[str]) -> list[str]:
    """Overrides of the session's 24-image synthetic sky and cache (debug=tiny) and the grid."""
    return [*tiny_overrides, *GRID]


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _fail_cells(monkeypatch: pytest.MonkeyPatch, when: Any, err: Exception) -> None:
    """Make the grid's ``run_cell`` raise ``err`` for the cells where ``when(clusterer)``."""
    real = aurora.run.grid.run_cell

    def run_cell(features: Any, reducer_cfg: Any, clusterer_cfg: Any, **kw: Any) -> Any:
        if when(clusterer_cfg):
            raise err
        return real(features, reducer_cfg, clusterer_cfg, **kw)

    monkeypatch.setattr(aurora.run.grid, "run_cell", run_cell)


def test_one_process_grid_goes_on_past_a_failing_cell(
    base: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture,
) -> None:
    def agglomerative_k4(c: Any) -> bool:
        return "Ward" in c["_target_"] and c["n_clusters"] == 4

    _fail_cells(monkeypatch, agglomerative_k4, ValueError("planted\nbug"))
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="aurora"):
        code = main(compose_cfg("cluster", base), run, {}, RunMode.RUN)
    assert code == 1  # outputs written, but not every cell finished

    ranking = _read(run / "ranking.csv")
    assert len(ranking) == 3 and all("agglomerative/k4" not in r["cell"] for r in ranking)
    assert (run / "labels.csv").is_file() and (run / "report" / "index.html").is_file()
    failed = _read(run / "failed.csv")
    assert [r["cell"] for r in failed] == ["autoencoder/pca/agglomerative/k4/s0"]
    assert failed[0]["error"] == "ValueError: planted bug"  # one line
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_cells"] == 4 and summary["n_failed_cells"] == 1
    assert [f["cell"] for f in summary["failed_cells"]] == [failed[0]["cell"]]
    # A bug keeps its traceback (in the cell's record and the log file), the console one line.
    doc = json.loads(next((run / "cells").rglob(FAILED_FILE)).read_text())
    assert doc["type"] == "ValueError" and "Traceback" in doc["traceback"]
    lines = [r.getMessage() for r in caplog.records if "agglomerative/k4" in r.getMessage()]
    assert any("planted bug" in line and "\n" not in line for line in lines)
    out = capsys.readouterr().out
    assert "1 of 4 grid cells FAILED" in out
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished_with_failures" and status["n_failed_cells"] == 1
    assert "1 of 4 grid cells failed" in (run / "report" / "index.html").read_text()


def test_sweep_job_records_its_failure_and_returns_a_code(
    base: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An aurora error (impossible setting): one line, exit code 2, failed.json.
    job = tmp_path / "0"
    cfg = compose_cfg("cluster", [*base, *SWEEP_CELL, "clusterer.n_clusters=1"])
    assert main(cfg, job, CHOICES, RunMode.MULTIRUN) == 2
    doc = json.loads((job / FAILED_FILE).read_text())
    assert doc["cell"] == "autoencoder/pca/kmeans/k1/s0"
    assert doc["type"] == "SettingsError" and "clusterer.n_clusters" in doc["error"]
    assert not (job / "cell.json").exists()

    # A bug: recorded with its traceback, the job returns 1 instead of raising.
    _fail_cells(monkeypatch, lambda c: True, KeyError("planted"))
    job = tmp_path / "1"
    cfg = compose_cfg("cluster", [*base, *SWEEP_CELL, "clusterer.n_clusters=3"])
    assert main(cfg, job, CHOICES, RunMode.MULTIRUN) == 1
    doc = json.loads((job / FAILED_FILE).read_text())
    assert doc["type"] == "KeyError" and "Traceback" in doc["traceback"]


def test_sweep_where_every_job_failed_is_a_clear_error(base: list[str], tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for job, k in enumerate((0, 1)):
        cfg = compose_cfg("cluster", [*base, *SWEEP_CELL, f"clusterer.n_clusters={k}"])
        assert main(cfg, sweep / str(job), CHOICES, RunMode.MULTIRUN) == 2
    with pytest.raises(RunError, match="all 2 grid cells failed"):
        finalize_sweep(compose_cfg("cluster", base), sweep)
    assert len(_read(sweep / "failed.csv")) == 2
    assert not (sweep / "ranking.csv").exists() and not (sweep / "labels.csv").exists()
    assert json.loads((sweep / "status.json").read_text())["state"] == "failed"


def test_cli_sweep_with_a_failing_job_finishes_the_others(base: list[str], tmp_path: Path) -> None:
    sweep = tmp_path / "multirun"
    # A stale job folder of an earlier, larger sweep into the same folder must not be counted.
    (sweep / "7" / "old_cell").mkdir(parents=True)
    (sweep / "7" / "old_cell" / "cell.json").write_text("{}")
    (sweep / "labels.csv").write_text("path,label\nold.jpg,0\n")
    cmd = [
        sys.executable,
        str(ROOT / "cluster.py"),
        "-m",
        *base,
        *SWEEP_CELL,
        # k=1 fails its settings check; k=30 > 24 images is lowered to 23, as in a single run
        "clusterer.n_clusters=3,1,30",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert "clusterer.n_clusters=30: [30] above 23, the most 24 accepted images allow" in out
    ranking = _read(sweep / "ranking.csv")
    assert sorted(r["cell"] for r in ranking) == [
        "autoencoder/pca/kmeans/k23/s0",
        "autoencoder/pca/kmeans/k3/s0",
    ]
    assert (sweep / "report" / "index.html").is_file()
    labels, rejected = _read(sweep / "labels.csv"), _read(sweep / "rejected.csv")
    assert len(labels) + len(rejected) == 24 and "old.jpg" not in {r["path"] for r in labels}
    failed = _read(sweep / "failed.csv")
    assert [r["cell"] for r in failed] == ["autoencoder/pca/kmeans/k1/s0"]
    assert "clusterer.n_clusters" in failed[0]["error"]
    summary = json.loads((sweep / "summary.json").read_text())
    assert (summary["n_cells"], summary["n_failed_cells"]) == (3, 1)
    assert "1 of 3 grid cells FAILED" in proc.stdout
    assert json.loads((sweep / "status.json").read_text())["state"] == "finished_with_failures"
    assert not (sweep / "7").exists() and not (sweep / ".previous").exists()
    # The nights are written once, by the finalisation, in the sweep folder (none in the jobs).
    assert (sweep / "screen.csv").is_file() and (sweep / "events.csv").is_file()
    assert len(_read(sweep / "screen.csv")) == 24
    assert not list(sweep.glob("*/events.csv"))

    # README: a job killed without a word (no cell.json, no failed.json) is found and counted
    # by ``python -m aurora.run finalize SWEEP``, which ranks and fuses what finished.
    k23 = next(p.parent for p in sweep.glob("*/*/cell.json") if "k23" in p.parent.name)
    for f in k23.iterdir():
        f.unlink()
    proc = subprocess.run(
        [sys.executable, "-m", "aurora.run", "finalize", str(sweep)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert [r["cell"] for r in _read(sweep / "ranking.csv")] == ["autoencoder/pca/kmeans/k3/s0"]
    failed = {r["cell"]: r["error"] for r in _read(sweep / "failed.csv")}
    # The killed job is named by the k it was given (its saved config), not the k it ran with.
    assert set(failed) == {"autoencoder/pca/kmeans/k1/s0", "autoencoder/pca/kmeans/k30/s0"}
    assert "killed" in failed["autoencoder/pca/kmeans/k30/s0"]
    assert json.loads((sweep / "status.json").read_text())["state"] == "finished_with_failures"


def test_sweep_job_lowers_a_k_above_the_images_as_a_single_run_does(
    base: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # 24 images: k=30 and k=40 both become k=23 (with a warning naming the setting, as
    # grid.n_clusters is lowered in a single run), k=3 is kept.
    sweep = tmp_path / "sweep"
    rows = []
    for job, k in enumerate((30, 3, 40)):
        cfg = compose_cfg("cluster", [*base, *SWEEP_CELL, f"clusterer.n_clusters={k}"])
        with caplog.at_level(logging.WARNING, logger="aurora"):
            rows.append(run_sweep_cell(cfg, sweep / str(job), CHOICES))
    assert [r["n_clusters"] for r in rows] == [23, 3, 23]
    assert [r.get("n_clusters_requested") for r in rows] == [30, None, 40]
    assert [r["n_clusters_found"] for r in rows] == [23, 3, 23]
    assert np.unique(np.load(rows[0]["labels_path"])).size == 23
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for k in (30, 40):
        line = f"clusterer.n_clusters={k}: [{k}] above 23, the most 24 accepted images allow"
        assert any(w.startswith(line) and w.endswith("using 23") for w in warned), warned
    assert not list(sweep.rglob(FAILED_FILE))

    # The finalisation ranks and fuses each cell once (k=30 and k=40 computed the same cell).
    summary = finalize_sweep(compose_cfg("cluster", base), sweep)
    ranking = _read(sweep / "ranking.csv")
    assert sorted(r["cell"] for r in ranking) == [
        "autoencoder/pca/kmeans/k23/s0",
        "autoencoder/pca/kmeans/k3/s0",
    ]
    assert summary["n_cells"] == 2 and summary["n_failed_cells"] == 0
