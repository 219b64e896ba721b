"""What a training leaves in its checkpoint folder: complete checkpoints, or nothing."""

from __future__ import annotations

import zipfile
from pathlib import Path

from aurora.infra.atomic import remove_stale_tmp


def is_complete_checkpoint(path: str | Path) -> bool:
    """True when ``path`` is a whole torch checkpoint (a zip archive whose directory reads).

    A checkpoint cut short by a full disk or a kill lacks the zip's central directory at its
    end, so this is cheap and does not load any tensor. A dangling link is not complete.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            return len(zf.namelist()) > 0
    except (OSError, zipfile.BadZipFile):
        return False


def remove_incomplete_checkpoints(folder: str | Path, since: float = 0.0) -> list[Path]:
    """Remove what a failed or killed training left half-written in a checkpoint folder.

    Removes temporaries of dead writers and every ``*.ckpt`` modified at or after ``since``
    that is not a complete checkpoint (including links whose target is gone). Complete
    checkpoints are kept: they are what a rerun resumes from.

    Args:
        folder: checkpoint folder (``out_dir/checkpoints``); a missing folder is fine.
        since: epoch seconds; older files are left alone.

    Returns:
        The paths removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = remove_stale_tmp(folder)
    for path in sorted(folder.glob("*.ckpt")):
        try:
            mtime = path.lstat().st_mtime
        except FileNotFoundError:
            continue
        if mtime >= since - 1 and not is_complete_checkpoint(path):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The newest complete checkpoint in ``folder`` (``last.ckpt`` first), or None."""
    folder = Path(folder)
    last = folder / "last.ckpt"
    if is_complete_checkpoint(last):
        return last
    found = [p for p in folder.glob("*.ckpt") if is_complete_checkpoint(p)]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None
