"""A run folder never shows an earlier run's results as current (status.json, .previous/)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hydra.types import RunMode
from omegaconf import DictConfig

from aurora.infra.guard import one_line
from aurora.infra.run_folder import (
    PREVIOUS_DIR,
    STATUS_FILE,
    begin_run,
    fail_run,
    finish_run,
    read_status,
)
from aurora.run.cli import main

OUTPUTS = [
    "labels.csv",
    "rejected.csv",
    "summary.json",
    "ranking.csv",
    "results.csv",
    "failed.csv",
    "fusion_search_all.csv",
    "fusion_landscape_all.png",
    "report/index.html",
    "solution/manifest.json",
    "cells/a__pca__kmeans__k3/cell.json",
]


def _plant(run: Path, names: list[str], text: str = "old") -> None:
    for name in names:
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(text)


def _present(run: Path) -> list[str]:
    return sorted(n for n in OUTPUTS if (run / n).exists())


def test_begin_moves_the_outputs_aside_and_finish_drops_them(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _plant(run, [*OUTPUTS, "train/autoencoder/version_0/events", ".cache/aurora/x", "notes.txt"])
    status = begin_run(run, command=["cluster.py", "seed=1"])
    assert _present(run) == []
    assert _present(run / PREVIOUS_DIR) == sorted(OUTPUTS)
    # Not results of this folder's last run: left alone.
    for keep in ("train/autoencoder/version_0/events", ".cache/aurora/x", "notes.txt"):
        assert (run / keep).read_text() == "old"
    assert status["state"] == "running" and status["command"] == ["cluster.py", "seed=1"]
    assert read_status(run) == status
    assert not list(run.glob(f".{STATUS_FILE}*"))  # written atomically, no temporary left

    _plant(run, ["labels.csv"], "new")
    done = finish_run(run, n_cells=4, failed=["a/pca/kmeans/k4/s0"])
    assert done["state"] == "finished_with_failures"
    assert (done["n_cells"], done["n_failed_cells"]) == (4, 1)
    assert done["started"] == status["started"] and "ended" in done
    assert not (run / PREVIOUS_DIR).exists()
    assert finish_run(run, n_cells=4, failed=[])["state"] == "finished"


def test_failed_reruns_keep_the_last_finished_results_aside(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _plant(run, OUTPUTS, "finished")
    begin_run(run)
    _plant(run, ["cells/a__pca__kmeans__k3/cell.json"], "partial")
    failed = fail_run(run, ValueError("disk\nfull"))
    assert failed["state"] == "failed" and failed["error"] == "ValueError: disk full"
    assert failed["type"] == "ValueError"
    # A second failing run: the partial outputs of the first go, the finished ones stay aside.
    begin_run(run)
    assert _present(run) == []
    assert (run / PREVIOUS_DIR / "labels.csv").read_text() == "finished"
    assert (run / PREVIOUS_DIR / "cells/a__pca__kmeans__k3/cell.json").read_text() == "finished"


def test_paths_the_config_reads_are_never_moved(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _plant(run, [*OUTPUTS, "cells/cache/features/x.npz"])
    begin_run(run, keep=[run / "cells" / "cache", run / "labels.csv", "kmeans", ""])
    assert (run / "cells" / "cache" / "features" / "x.npz").is_file()
    assert (run / "labels.csv").is_file()
    assert not (run / "summary.json").exists()


def test_sweep_start_moves_earlier_job_folders_only(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    _plant(sweep, ["0/a__pca__kmeans__k3/cell.json", "3/failed.json", "mine/notes.txt"])
    begin_run(sweep, job_dirs=True)
    assert not (sweep / "0").exists() and not (sweep / "3").exists()
    assert (sweep / PREVIOUS_DIR / "0" / "a__pca__kmeans__k3" / "cell.json").is_file()
    assert (sweep / "mine" / "notes.txt").is_file()


def test_one_line_names_bugs_by_type() -> None:
    from aurora.infra.errors import AuroraError

    assert one_line(AuroraError("no  images\n in x")) == "no images in x"
    assert one_line(KeyError("k")) == "KeyError: 'k'"


def test_failed_rerun_leaves_no_result_that_looks_current(
    cfg_cluster: DictConfig, tmp_path: Path
) -> None:
    good = cfg_cluster  # debug=tiny on the session's sky and cache
    good.grid.n_clusters = [3]
    good.fusion.n_partitions = 1
    good.fusion.min_cluster_size = 2
    bad = copy.deepcopy(good)
    bad.data.root = f"{good.data.root}_gone"
    run = tmp_path / "run"
    assert main(good, run, {}, RunMode.RUN) == 0
    assert read_status(run)["state"] == "finished"
    assert 'class="status finished"' in (run / "report" / "index.html").read_text()

    assert main(bad, run, {}, RunMode.RUN) == 2
    for name in ("labels.csv", "summary.json", "report", "ranking.csv", "solution", "cells"):
        assert not (run / name).exists(), name
    status = json.loads((run / STATUS_FILE).read_text())
    assert status["state"] == "failed" and "_gone" in status["error"]
    assert status["previous"] == PREVIOUS_DIR
    assert (run / PREVIOUS_DIR / "labels.csv").is_file()


@pytest.mark.parametrize("state", ["running", "finished"])
def test_report_rebuilt_from_the_folder_shows_the_status(tmp_path: Path, state: str) -> None:
    from aurora.report.build import status_line

    text, css = status_line({"state": state, "started": "2024-01-01T00:00:00+00:00"}, {})
    assert css == state and state in text
    text, css = status_line(None, {"n_cells": 5, "n_failed_cells": 2})
    assert css == "finished_with_failures" and "2 of 5 grid cells failed" in text
