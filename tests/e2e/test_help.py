"""``--help`` of both entry points: the groups and the first commands, not the whole config."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.parametrize(
    ("script", "command", "group"),
    [
        ("cluster.py", "python cluster.py experiment=demo", "extractor: "),
        ("train.py", "python train.py model=simclr", "model: "),
    ],
)
def test_help_is_short_and_lists_groups_and_commands(script: str, command: str, group: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / script), "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert len(lines) < 60, f"{script} --help prints {len(lines)} lines"
    assert command in proc.stdout
    assert any(line.startswith(group) for line in lines)
    # The config dump is what --cfg job is for; --help must not print it.
    assert "_target_" not in proc.stdout
