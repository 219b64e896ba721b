"""The budget check in a real run: estimated after the scan, refused before any other work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cluster(tmp_path: Path, sky: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        str(ROOT / "cluster.py"),
        "debug=tiny",
        "data=folder",
        f"data.root={sky}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        *extra,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def test_over_budget_run_stops_after_the_scan_in_one_line(tiny_sky: Path, tmp_path: Path) -> None:
    proc = _cluster(tmp_path, tiny_sky, "budget.memory_gb=0.25")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-2000:]
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in out
    assert "stage preprocess needs an estimated" in errors[0]
    assert "budget of 0.2 GB (budget.memory_gb)" in errors[0]
    run = tmp_path / "run"
    doc = json.loads((run / "estimates.json").read_text())
    assert doc["fits"] is False and doc["n"] == len(list(tiny_sky.glob("*.jpg")))
    assert [s["stage"] for s in doc["stages"]][0] == "preprocess"
    assert json.loads((run / "status.json").read_text())["state"] == "failed"
    # Refused before any preprocessing: the cache holds the scan only.
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["scan"]


def test_disk_budget_names_the_stage_and_key(tiny_sky: Path, tmp_path: Path) -> None:
    proc = _cluster(tmp_path, tiny_sky, "budget.disk_gb=0.00001")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-2000:]
    (error,) = [line for line in out.splitlines() if line.startswith("error:")]
    assert "budget.disk_gb" in error and "disk" in error
    assert not (tmp_path / "cache" / "preprocess").exists()
