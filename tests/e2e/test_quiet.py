"""A run whose output is a file or a pipe (not a terminal) prints each line once: no line twice
in a row, no runs of blank lines, no adverts, no library warnings, no progress bars; missing
ImageNet weights are a note, and the summary explains its scores and outputs."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from aurora.infra.logs import AdvertFilter, ConsoleFormatter, LibraryInfoFilter, show_progress

#: A line written by the warnings module: "path.py:LINE: Category: message" (or Lightning's own
#: format for its warnings, without the category).
WARNING_LINE = re.compile(r"(\.py:\d+: )|(\b[A-Z]\w*Warning\b:)")
#: What a progress bar leaves in a file: carriage returns, percentages and rates.
PROGRESS = re.compile(r"\r|\d+%\||it/s\]|img/s\]|file/s\]")


def check_quiet(lines: list[str]) -> None:
    """The properties every piped run's output has (see the module docstring)."""
    for a, b in zip(lines, lines[1:], strict=False):
        assert not (a.strip() and a == b), f"printed twice in a row: {a!r}"
        assert a.strip() or b.strip(), "a run of blank lines"
    for line in lines:
        assert "Tip:" not in line and "💡" not in line, f"advert: {line!r}"
        assert not WARNING_LINE.search(line), f"library warning: {line!r}"
        assert not PROGRESS.search(line), f"progress bar: {line!r}"


def test_a_piped_tiny_run_is_quiet(tiny_sky: Path, tmp_path: Path) -> None:
    """A cold cache (the tiny encoder is trained: Lightning's lines), a bar asked for, UMAP and
    spectral clustering in the grid, and an ImageNet extractor whose weights are not here."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable,
        str(ROOT / "cluster.py"),
        "debug=tiny",
        "data=folder",
        f"data.root={tiny_sky}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        "trainer.enable_progress_bar=true",  # asked for: still none off a terminal
        "grid.extractors=[autoencoder,resnet50]",
        "grid.reducers=[pca,umap]",
        "grid.clusterers=[kmeans,spectral]",
        "grid.n_clusters=[3]",
        "clusterers.spectral.n_neighbors=2",  # a graph in pieces: scikit-learn's warning
        "skip_unavailable_extractors=true",
    ]
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:]
    lines = out.splitlines()
    check_quiet(lines)
    # Missing weights are a neutral note, once in the log and once in the summary.
    notes = [x for x in lines if "resnet50 not used: its ImageNet weights are not on" in x]
    assert len(notes) == 2, out
    assert "extractors.resnet50.weights=PATH" in notes[0]
    assert not any(x.startswith("warning:") and "resnet50" in x for x in lines)
    # The budget table counts what runs: the autoencoder's 4 cells, no resnet50 store or cell.
    table = next(x for x in lines if x.startswith("estimated peak memory"))
    assert "4 cells" in table, table
    assert [x for x in lines if "resnet50" in x] == notes
    # Lightning's info lines are in the log file, not on the console; its advert nowhere.
    log_file = (tmp_path / "run" / "cluster.log").read_text()
    assert "GPU available" in log_file and "GPU available" not in out
    assert "Tip" not in log_file
    # The summary says where each output is.
    run_dir = (tmp_path / "run").resolve()
    assert f"outputs in {run_dir}:" in out
    for name in ("labels.csv", "rejected.csv", "report/index.html", "solution/", "summary.json"):
        assert any(x.strip().startswith(name) for x in lines), name
    # The report's note is neutral too (no red banner).
    page = (run_dir / "report" / "index.html").read_text()
    assert 'class="info skipped"' in page and "was skipped" not in page


def test_progress_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Stream:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    monkeypatch.setattr(sys, "stdout", Stream(True))
    assert show_progress() and not show_progress(False)
    monkeypatch.setattr(sys, "stdout", Stream(False))
    assert not show_progress()
    monkeypatch.setattr(sys, "stdout", None)
    assert not show_progress()


def _record(name: str, level: int, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, None, None)


def test_console_filters_and_format() -> None:
    info = LibraryInfoFilter()
    assert not info.filter(_record("lightning.pytorch.utilities.rank_zero", logging.INFO, "GPU"))
    assert info.filter(_record("lightning.pytorch.trainer", logging.WARNING, "x"))
    assert info.filter(_record("aurora", logging.INFO, "[data] 24 inputs"))
    ads = AdvertFilter()
    assert not ads.filter(_record("lightning", logging.INFO, "💡 Tip: For seamless cloud ..."))
    assert ads.filter(_record("lightning", logging.INFO, "Seed set to 0"))
    fmt = ConsoleFormatter("%(message)s")
    assert fmt.format(_record("aurora", logging.INFO, "done")) == "done"
    assert fmt.format(_record("aurora", logging.WARNING, "k lowered")) == "warning: k lowered"


def test_check_quiet_catches_each_fault() -> None:
    """The checks of the piped run fail on the output they are meant to catch."""
    faults = [
        ["INFO: Seed set to 0", "INFO: Seed set to 0"],
        ["a", "", "", "b"],
        ["INFO: 💡 Tip: For seamless cloud logging ..."],
        ["/x/umap_.py:1952: UserWarning: n_jobs value 1 overridden to 1"],
        ["/x/lightning/_pytree.py:21: `isinstance(treespec, LeafSpec)` is deprecated"],
        ["preprocess:  50%|█████     | 12/24 [00:01<00:01, 9.1img/s]"],
    ]
    for lines in faults:
        with pytest.raises(AssertionError):
            check_quiet(lines)
    check_quiet(["[data] 24 inputs", "", "aurora summary", "  groups 3"])


def test_summary_gives_each_score_its_scale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aurora.run.finalize import print_summary

    for name in ("labels.csv", "rejected.csv", "summary.json"):
        (tmp_path / name).write_text("")
    (tmp_path / "solution").mkdir()
    summary = {
        "n_inputs": 10,
        "n_accepted": 9,
        "n_rejected": 1,
        "rejected_by_reason": {"too dark": 1},
        "n_groups": 2,
        "n_unassigned": 1,
        "best_cell": "simclr/pca/kmeans/k2/s0",
        "skipped_extractors": {"resnet50": "its ImageNet weights are not on this machine (...)"},
        "best_cell_external": {"ami": 0.41, "ari": 0.3},
        "fused_external": {"ami": 0.5212, "ari": 0.45, "homogeneity": 0.8},
        "fused_unassigned_fraction": 0.1,
        "fused_ami_moon": 0.02,
    }
    print_summary(summary, tmp_path)
    out = capsys.readouterr().out
    check_quiet(out.splitlines())
    assert "AMI 0.52 (0 = chance, 1 = the labels exactly)" in out
    assert "homogeneity 0.80 (1 = each group holds a single class)" in out
    assert "AMI 0.02 (0 = independent of the Moon, 1 = the groups are the Moon flag)" in out
    assert "note: resnet50 not used: its ImageNet weights" in out
    assert f"outputs in {tmp_path.resolve()}:" in out
    listed = [x.split()[0] for x in out.split("outputs in")[1].splitlines()[1:]]
    assert listed == ["labels.csv", "rejected.csv", "solution/", "summary.json"]  # those present


def test_spectral_clustering_of_separate_groups_warns_nothing() -> None:
    """Groups farther apart than the neighbours reach: the affinity graph is in pieces, each
    piece keeps its own label, and scikit-learn's warning about it is handled in the estimator."""
    import warnings

    import numpy as np

    from aurora.clustering import SparseSpectralClustering

    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [50.0, 0.0], [0.0, 50.0]])
    X = np.concatenate([c + rng.normal(size=(30, 2)) for c in centres])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = SparseSpectralClustering(n_clusters=3, n_neighbors=5, random_state=0).fit(X)
    assert est.n_graph_components_ == 3
    assert not [w for w in caught if "connected" in str(w.message)], caught
    for k in range(3):  # one label per group, three different labels
        assert len(set(est.labels_[30 * k : 30 * (k + 1)])) == 1
    assert len(set(est.labels_)) == 3


def test_budget_table_lists_only_the_stages_that_run() -> None:
    from aurora.run.budget import Budget, StageEstimate, format_estimates

    gb = 1 << 30
    estimates = [
        StageEstimate("preprocess", 2 * gb, 0, "all 1 stores cached"),
        StageEstimate("train", 0, 0, "nothing to train"),
        StageEstimate("extract", 0, 0, "all features cached"),
        StageEstimate("grid", 3 * gb, gb, "worst cell ..."),
    ]
    table = format_estimates(estimates, Budget(8 * gb, 9 * gb, "m", "d")).splitlines()
    assert [row.split()[0] for row in table] == ["stage", "preprocess", "grid", "total", "budget"]
