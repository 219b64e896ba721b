"""Content-addressed on-disk cache shared by every stage of the chain.

Each stage stores its output under ``<root>/<stage>/<key>/`` where ``key`` is a hash of the
inputs and the stage configuration. Entries are written into a temporary sibling folder and
renamed into place only when complete, so a killed run never leaves a half-written entry
that a later run would read as valid (``rename`` of a directory is atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

COMPLETE_MARKER = "_COMPLETE"


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

    @contextlib.contextmanager
    def writing(self, stage: str, key: str) -> Iterator[Path]:
        """Yield a temporary folder to fill; it becomes the entry only if the block succeeds.

        A concurrent writer that finished first wins; the loser's work is discarded.
        """
        final = self.path(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=final.parent))
        try:
            yield tmp
            (tmp / COMPLETE_MARKER).write_text("ok\n")
            if final.exists():
                if (final / COMPLETE_MARKER).is_file():
                    shutil.rmtree(tmp)
                    return
                # A stale, incomplete entry (e.g. from an older version): replace it.
                shutil.rmtree(final)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Text variant of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode())


def atomic_save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Save arrays to an ``.npz`` file atomically (never a half-written file at ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
