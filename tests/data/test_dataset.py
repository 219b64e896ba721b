"""aurora.data.dataset.ensure_dataset: the synthetic sky appears whole, once, whoever asks."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from aurora.data.dataset import ensure_dataset, read_truth
from aurora.data.decode import default_jobs
from aurora.infra.errors import RunError

SKY = {"n": 4, "seed": 0, "size": 32, "moon_prob": 0.0}


def test_jobs_starting_together_get_one_whole_sky(tmp_path: Path) -> None:
    root = tmp_path / "sky"
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(lambda _: ensure_dataset(root, SKY, 1), range(3)))
    assert got == [root] * 3
    assert sorted(p.suffix for p in root.iterdir()) == [".csv"] + [".jpg"] * 4
    assert [p.name for p in tmp_path.iterdir()] == ["sky"]  # no temporary folder left behind


def test_a_folder_with_images_is_never_written_into(tmp_path: Path) -> None:
    (tmp_path / "mine.jpg").write_bytes(b"x")
    with pytest.raises(RunError, match="not empty"):
        ensure_dataset(tmp_path, SKY, 1)
    assert [p.name for p in tmp_path.iterdir()] == ["mine.jpg"]


def test_default_jobs_is_this_process_allocation() -> None:
    import os

    assert default_jobs() == len(os.sched_getaffinity(0))


def test_read_truth_reads_the_class_and_the_nuisance_columns_the_table_has(
    tmp_path: Path,
) -> None:
    table = tmp_path / "truth.csv"
    table.write_text("path,morphology,moon,cloud\na,arc,1,0\nb,corona,0,1\n")
    truth = read_truth(table, ["b", "zz", "a"], nuisance_columns=("moon", "glare"))
    assert list(truth.classes) == ["corona", None, "arc"]  # an image not in the table: None
    assert list(truth.nuisances) == ["moon"] and list(truth.nuisances["moon"]) == ["0", None, "1"]
    assert list(read_truth(table, ["a"], column="cloud").classes) == ["0"]
    assert read_truth(None, ["a"]) == (None, {})
    with pytest.raises(RunError, match="does not exist"):
        read_truth(tmp_path / "none.csv", ["a"])
