"""The state of a run folder, so that it never shows an earlier run's results as current.

At its start a run (``cluster.py``, or the finalisation of a ``-m`` sweep) calls
:func:`begin_run`: the results an earlier run left in the folder (``labels.csv``,
``summary.json``, ``report/`` ...) move into the hidden ``.previous/`` and ``status.json`` says
``running``. At its end :func:`finish_run` writes ``finished`` (or ``finished_with_failures``
with the failed grid cells) and deletes ``.previous/``; :func:`fail_run` writes ``failed`` with
the error in one line and keeps ``.previous/``, so the last finished results can still be
recovered by hand but never pass for the outcome of the failed run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aurora.infra.atomic import atomic_write_text
from aurora.infra.guard import one_line

log = logging.getLogger("aurora")

STATUS_FILE = "status.json"
PREVIOUS_DIR = ".previous"
#: What a run writes at the top of its folder (the contract files and their companions).
OUTPUT_NAMES = (
    "labels.csv",
    "rejected.csv",
    "summary.json",
    "apply_summary.json",
    "prepared.json",
    "ranking.csv",
    "results.csv",
    "failed.csv",
    "report",
    "solution",
    "cells",
    "tb",
)
OUTPUT_PATTERNS = ("fusion_search_*.csv", "fusion_landscape_*.png")
#: A sweep job folder is recognised by one of these (written by :mod:`aurora.grid.cell_files`),
#: in it or in its cell's sub-folder.
JOB_MARKERS = ("cell.json", "failed.json", "*/cell.json", "*/failed.json", "prepared.json")
FINISHED = ("finished", "finished_with_failures")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_status(run_dir: str | Path) -> dict[str, Any] | None:
    """``status.json`` of a run folder, or None when there is none (or it is unreadable)."""
    try:
        doc = json.loads((Path(run_dir) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _write(run_dir: Path, status: dict[str, Any]) -> dict[str, Any]:
    atomic_write_text(run_dir / STATUS_FILE, json.dumps(status, indent=2, default=str) + "\n")
    return status


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _outputs(run_dir: Path, job_dirs: bool) -> list[Path]:
    """The earlier results at the top of ``run_dir`` (and earlier sweep job folders)."""
    found = [
        run_dir / n for n in OUTPUT_NAMES if (run_dir / n).exists() or (run_dir / n).is_symlink()
    ]
    for pattern in OUTPUT_PATTERNS:
        found += sorted(run_dir.glob(pattern))
    if job_dirs:
        found += sorted(
            d
            for d in run_dir.iterdir()
            if d.is_dir()
            and not d.is_symlink()
            and not d.name.startswith(".")
            and d.name not in OUTPUT_NAMES
            and any(p.is_file() for m in JOB_MARKERS for p in d.glob(m))
        )
    return found


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _resolved(paths: Iterable[str | Path]) -> list[Path]:
    """Absolute forms of ``paths`` (relative ones from the working directory); odd ones skipped."""
    out = []
    for p in paths:
        if str(p) in ("", "."):
            continue
        try:
            out.append(Path(p).expanduser().resolve())
        except (OSError, ValueError, RuntimeError):
            continue
    return out


def _kept(path: Path, keep: Sequence[Path]) -> Path | None:
    """The first path of ``keep`` that moving or deleting ``path`` would take with it."""
    target = path.resolve()
    return next((k for k in keep if _is_within(k, target)), None)


def begin_run(
    run_dir: str | Path,
    *,
    keep: Iterable[str | Path] = (),
    job_dirs: bool = False,
    command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Clear a run folder of earlier results and mark it ``running``.

    The earlier results move into ``.previous/``, replacing what was there, unless the folder's
    last run did not finish: then ``.previous/`` still holds the last finished results and the
    failed run's partial outputs are deleted instead.

    Args:
        run_dir: the run (or sweep) folder; created when missing.
        keep: paths the run reads (cache, data, checkpoints, any path in its config): an output
            that is or holds one of them is left in place, with a warning.
        job_dirs: also move earlier sweep job folders (sub-folders holding ``cell.json`` or
            ``failed.json``): a sweep's finalisation would otherwise collect them.
        command: the command line to record (default ``sys.argv``).

    Returns:
        The ``running`` status written to ``status.json``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    keep_paths = _resolved(keep)
    earlier = read_status(run_dir)
    previous = run_dir / PREVIOUS_DIR
    keep_previous = (
        previous.is_dir() and earlier is not None and earlier.get("state") not in FINISHED
    )
    if previous.exists() and not keep_previous:
        if held := _kept(previous, keep_paths):
            log.warning("left %s in place: this run reads %s", previous, held)
            keep_previous = True
        else:
            _remove(previous)
    moved = 0
    for path in _outputs(run_dir, job_dirs):
        if held := _kept(path, keep_paths):
            log.warning("left the earlier %s in place: this run reads %s", path, held)
            continue
        if keep_previous:
            _remove(path)
        else:
            previous.mkdir(exist_ok=True)
            os.replace(path, previous / path.name)
            moved += 1
    if moved:
        log.info("moved the earlier results of %s into %s", run_dir, previous)
    status = {
        "state": "running",
        "started": _now(),
        "command": list(sys.argv if command is None else command),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    return _write(run_dir, status)


def _base(run_dir: Path) -> dict[str, Any]:
    earlier = read_status(run_dir) or {}
    keys = ("started", "command", "host", "pid")
    return {k: earlier[k] for k in keys if k in earlier}


def finish_run(run_dir: str | Path, n_cells: int, failed: Sequence[str]) -> dict[str, Any]:
    """Mark the run finished and delete ``.previous/``.

    Args:
        run_dir: the run folder.
        n_cells: grid cells the run tried.
        failed: names of the cells among them that failed (their results are in ``failed.csv``).

    Returns:
        The status written.
    """
    run_dir = Path(run_dir)
    status = {
        "state": "finished_with_failures" if failed else "finished",
        **_base(run_dir),
        "ended": _now(),
        "n_cells": int(n_cells),
        "n_failed_cells": len(failed),
    }
    if failed:
        status["failed_cells"] = list(failed)
    _write(run_dir, status)
    previous = run_dir / PREVIOUS_DIR
    try:
        if previous.exists():
            _remove(previous)
    except OSError as err:  # the run itself finished: say so, and leave the rest to the user
        log.warning("could not delete the earlier results in %s: %s", previous, err)
    return status


def fail_run(run_dir: str | Path, err: BaseException) -> dict[str, Any]:
    """Mark the run failed with its error in one line; ``.previous/`` is kept.

    Returns:
        The status written.
    """
    run_dir = Path(run_dir)
    status = {
        "state": "failed",
        **_base(run_dir),
        "ended": _now(),
        "error": one_line(err) if not isinstance(err, KeyboardInterrupt) else "interrupted",
        "type": type(err).__name__,
    }
    if (run_dir / PREVIOUS_DIR).is_dir():
        status["previous"] = PREVIOUS_DIR
    run_dir.mkdir(parents=True, exist_ok=True)
    return _write(run_dir, status)
