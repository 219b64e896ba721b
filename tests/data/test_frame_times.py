"""The time of every frame: metadata table, then names/headers, then the truth's time column."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from aurora.data.dataset import frame_times


def test_metadata_wins_and_truth_only_fills_gaps(tmp_path: Path) -> None:
    t = [datetime(2003, 12, 21, h, tzinfo=UTC) for h in range(5)]
    meta = tmp_path / "meta.csv"
    meta.write_text("path,time\na.bmp,2003-12-21T01:00:00\nc.bmp,2003-12-21T12:00:00+08:00\n")
    truth = tmp_path / "truth.csv"
    truth.write_text("path,morphology,time\nb.bmp,arc,2003-12-21T02:00:00\nd.bmp,arc,\n")
    found = [None, None, t[3], None]
    out = frame_times(found, ["a.bmp", "b.bmp", "c.bmp", "d.bmp"], meta, truth)
    # a: from the metadata; b: only the truth has it; c: metadata (12:00+08:00 = 04:00 UTC)
    # wins over the name's 03:00; d: nobody knows.
    assert out == [t[1], t[2], t[4], None]
    assert frame_times(found, ["a.bmp", "b.bmp", "c.bmp", "d.bmp"], None, None) == found


def test_truth_without_time_column_is_fine(tmp_path: Path) -> None:
    truth = tmp_path / "truth.csv"
    truth.write_text("path,morphology\na.bmp,arc\n")
    assert frame_times([None], ["a.bmp"], None, truth) == [None]
