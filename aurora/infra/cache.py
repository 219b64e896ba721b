"""Content-addressed on-disk cache shared by every stage of the chain.

Each stage stores its output under ``<root>/<stage>/<key>/`` where ``key`` is a hash of the
inputs and the stage configuration (:func:`stable_hash`). Entries are written into a temporary
sibling folder and renamed into place only when complete, so a killed run never leaves a
half-written entry that a later run would read as valid (``rename`` of a directory is atomic on
POSIX).

The temporary folders are named and cleaned up as every atomic write of :mod:`aurora.infra.atomic`
(a killed writer's leftovers are removed by the next writer; a live :meth:`Cache.writing`
touches its folder every :data:`HEARTBEAT_S` so that other hosts see it alive), and a full disk
raises :class:`aurora.infra.errors.DiskFullError` naming the entry. The single-file writers of
:mod:`aurora.infra.atomic` are importable from here too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aurora.infra.atomic import (
    disk_full_as,
    remove_stale_tmp,
    tmp_prefix,
)
from aurora.infra.errors import AuroraError, DiskFullError, disk_full_error

__all__ = [
    "COMPLETE_MARKER",
    "HEARTBEAT_S",
    "Cache",
    "file_sha256",
    "stable_hash",
]

COMPLETE_MARKER = "_COMPLETE"

HEARTBEAT_S: float = 600
"""How often a live :meth:`Cache.writing` touches its temporary folder."""


def _canonical(obj: Any) -> Any:
    """Turn configs, dataclasses, paths and arrays into JSON-serialisable canonical values."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return _canonical(asdict(obj))
    try:  # OmegaConf containers, without importing omegaconf at module load
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, DictConfig | ListConfig):
            return _canonical(OmegaConf.to_container(obj, resolve=True))
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, list | tuple):
        return [_canonical(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return {"__array_sha256__": hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest()}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and obj.is_integer():
        # 1.0 and 1 describe the same setting; keep keys stable across YAML spellings.
        return int(obj)
    return obj


def stable_hash(*parts: Any, length: int = 16) -> str:
    """Hash any mix of configs, dataclasses, strings and arrays into a short hex key.

    Args:
        *parts: values that identify a cache entry; dict key order does not matter.
        length: number of hex characters to keep.

    Returns:
        A hex string of ``length`` characters.
    """
    blob = json.dumps([_canonical(p) for p in parts], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def _heartbeat(path: Path, every_s: float) -> Iterator[None]:
    """Touch ``path`` every ``every_s`` seconds while the block runs (shows the writer lives)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            with contextlib.suppress(OSError):
                os.utime(path)

    thread = threading.Thread(target=beat, name="aurora-cache-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class Cache:
    """A folder of content-addressed, atomically written entries.

    Args:
        root: cache root folder; created on first write.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, stage: str, key: str) -> Path:
        """Folder of the entry ``key`` of ``stage`` (may not exist yet)."""
        return self.root / stage / key

    def exists(self, stage: str, key: str) -> bool:
        """True when the entry is complete (its marker file is present)."""
        return (self.path(stage, key) / COMPLETE_MARKER).is_file()

    def remove(self, stage: str, key: str) -> None:
        """Delete an entry: first its marker (it stops existing at once), then its files."""
        final = self.path(stage, key)
        (final / COMPLETE_MARKER).unlink(missing_ok=True)
        shutil.rmtree(final, ignore_errors=True)

    @contextlib.contextmanager
    def writing(self, stage: str, key: str) -> Iterator[Path]:
        """Yield a temporary folder to fill; it becomes the entry only if the block succeeds.

        A concurrent writer that finished first wins; the loser's work is discarded. Before
        writing, temporaries of dead writers in the stage folder are removed (see
        :func:`remove_stale_tmp`); on any exception this writer's temporary folder is removed,
        and a full disk is raised as :class:`aurora.infra.errors.DiskFullError` naming the entry.
        """
        final = self.path(stage, key)
        with disk_full_as(final):
            final.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_tmp(final.parent)
            tmp = Path(tempfile.mkdtemp(prefix=tmp_prefix(key), dir=final.parent))
        try:
            with _heartbeat(tmp, HEARTBEAT_S):
                yield tmp
            (tmp / COMPLETE_MARKER).write_text("ok\n")
            if final.exists():
                if (final / COMPLETE_MARKER).is_file():
                    shutil.rmtree(tmp)
                    return
                # A stale, incomplete entry (e.g. from an older version): replace it.
                shutil.rmtree(final)
            os.rename(tmp, final)
        except BaseException as err:
            full = None
            if isinstance(err, Exception) and not isinstance(err, AuroraError):
                full = disk_full_error(err, final)  # measured before the cleanup frees space
            shutil.rmtree(tmp, ignore_errors=True)
            if full is None:
                raise
            if full.path.is_relative_to(tmp):  # name the entry, not its temporary folder
                full = DiskFullError(
                    final / full.path.relative_to(tmp),
                    full.free_bytes,
                    full.needed_bytes,
                    quota=full.quota,
                )
            raise full from err
