"""The run's closing scores (aurora.run.finalize): fused groups scored without the unassigned,
and the detected Moon as the nuisance when the truth has no Moon column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aurora.data.dataset import read_truth
from aurora.run import (
    external_summary,
)


def test_fused_scores_leave_the_unassigned_out_of_the_groups(tmp_path: Path) -> None:
    from sklearn.metrics import homogeneity_score

    ids = [f"im{i}.png" for i in range(8)]
    morph = ["a", "a", "a", "b", "b", "b", "a", "b"]
    moon = ["0", "1", "0", "1", "0", "1", "1", "0"]
    table = tmp_path / "truth.csv"
    table.write_text(
        "path,morphology,moon\n"
        + "".join(f"{i},{m},{n}\n" for i, m, n in zip(ids, morph, moon, strict=True))
    )
    cells = tmp_path / "cell.npy"
    np.save(cells, np.array([0, 0, 0, 1, 1, 1, 0, 1]))
    truth = read_truth(table, ids)
    # Two pure groups and two unassigned images of different morphologies: scoring -1 as a
    # group would make the groups look impure.
    fused = np.array([0, 0, 0, 1, 1, 1, -1, -1])
    out = external_summary(truth, [{"cell": "c", "labels_path": str(cells)}], fused)
    assert out["fused_external"]["homogeneity"] == pytest.approx(1.0)
    assert out["fused_unassigned_fraction"] == pytest.approx(0.25)
    assert homogeneity_score(morph, fused) < 0.9  # what counting -1 as a group would give
    assert out["best_cell_external"]["ami"] == pytest.approx(1.0)


def test_detected_moon_is_the_nuisance_when_the_truth_has_no_moon_column(tmp_path: Path) -> None:
    ids = [f"im{i}.png" for i in range(6)]
    table = tmp_path / "truth.csv"
    table.write_text("path,morphology\n" + "".join(f"{i},arc\n" for i in ids))
    cells = tmp_path / "cell.npy"
    np.save(cells, np.array([0, 0, 0, 1, 1, 1]))
    truth = read_truth(table, ids)
    fused = np.array([0, 0, 0, 1, 1, 1])
    detected = np.array([False, False, False, True, True, True])
    out = external_summary(truth, [{"cell": "c", "labels_path": str(cells)}], fused, detected)
    assert out["fused_ami_moon"] == pytest.approx(1.0)  # the groups are the detected Moon
    without = external_summary(truth, [{"cell": "c", "labels_path": str(cells)}], fused)
    assert "fused_ami_moon" not in without  # no all-None column from the truth table
