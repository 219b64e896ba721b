"""Atomic file writes, and the removal of what killed writers left behind.

A file is written to a temporary sibling and renamed into place (``rename`` is atomic on
POSIX), so a path holds a complete file or nothing. Temporary names carry the writer's process
id and host (``.{name}.tmp-{pid}@{host}~XXXXXXXX``), so the leftovers of a killed writer are
recognised and removed by the next writer (:func:`remove_stale_tmp`): those of a process that
no longer exists on this host, and those of other hosts not touched for
:data:`STALE_TMP_AGE_S`. A write that runs out of space raises
:class:`aurora.infra.errors.DiskFullError` naming the final path (not the temporary one), after
removing what it had written. :class:`aurora.infra.cache.Cache` builds its atomic entry folders on
the same names and cleanup.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from aurora.infra.errors import DISK_FULL_ERRNOS, DiskFullError, free_bytes

STALE_TMP_AGE_S: float = 24 * 3600
"""A temporary entry of another host untouched for this long belongs to a dead writer."""

_HOST = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname() or "host")[:64]
# New names: .{name}.tmp-{pid}@{host}~{random}[.npz]; old ones (before the pid and host were
# recorded): mkdtemp's .{name}.tmp-{8 random} and .{name}.{uuid4 hex}.tmp[.npz].
_TMP_RE = re.compile(
    r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)@(?P<host>[A-Za-z0-9._-]+)~[A-Za-z0-9_]+(?:\.npz)?$"
)
_OLD_TMP_RE = re.compile(r"^\.(?P<name>.+)\.(?:tmp-[a-z0-9_]{8}|[0-9a-f]{32}\.tmp(?:\.npz)?)$")


def tmp_prefix(name: str) -> str:
    """Prefix of a temporary sibling of ``name`` written by this process."""
    return f".{name}.tmp-{os.getpid()}@{_HOST}~"


def _tmp_sibling(path: Path, suffix: str = "") -> Path:
    return path.with_name(f"{tmp_prefix(path.name)}{secrets.token_hex(4)}{suffix}")


def _process_start_time(pid: int) -> float | None:
    """Start time (epoch seconds) of a process on this host, or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat[stat.rindex(")") + 2 :].split()[19])  # field 22, starttime
        btime = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _writer_gone(
    pid: int | None, host: str | None, mtime: float, now: float, max_age_s: float
) -> bool:
    """True when the writer of a temporary entry last touched at ``mtime`` cannot be alive."""
    if pid is None or host != _HOST:
        return now - mtime > max_age_s
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    # The pid is in use (maybe by this very process, as in containers that start every run as
    # the same pid); if that process started after the entry was last touched, it is not the
    # writer. btime has a resolution of 1 s.
    start = _process_start_time(pid)
    return start is not None and start > mtime + 2


def remove_stale_tmp(
    folder: str | Path, name: str | None = None, max_age_s: float = STALE_TMP_AGE_S
) -> list[Path]:
    """Remove the temporary entries in ``folder`` whose writer is gone.

    A temporary entry is a hidden file or folder named ``.{name}.tmp-{pid}@{host}~...`` (older
    unmarked names count as another host's). It is removed when its pid no longer runs on this
    host, or, for another host, when it was not touched for ``max_age_s``.

    Args:
        folder: folder to scan (not recursive); a missing folder is fine.
        name: only the temporaries of this final name; None = all.
        max_age_s: age after which another host's temporary counts as abandoned.

    Returns:
        The paths removed.
    """
    folder = Path(folder)
    prefix = f".{name}." if name is not None else "."
    removed: list[Path] = []
    now = time.time()
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(prefix)]
    except FileNotFoundError:
        return removed
    for entry in entries:
        m = _TMP_RE.match(entry.name)
        match = m or _OLD_TMP_RE.match(entry.name)
        if match is None or (name is not None and match["name"] != name):
            continue
        try:
            mtime = entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue
        pid, host = (int(m["pid"]), m["host"]) if m else (None, None)
        if not _writer_gone(pid, host, mtime, now, max_age_s):
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        if not os.path.lexists(path):
            removed.append(path)
    return removed


def check_free_space(folder: str | Path, needed_bytes: int, path: str | Path | None = None) -> int:
    """Refuse a write of ``needed_bytes`` into ``folder`` that will not fit.

    Args:
        folder: where the data will go (need not exist yet; its nearest existing parent is
            measured).
        needed_bytes: size of what will be written.
        path: what to name in the error (default ``folder``).

    Returns:
        The free bytes measured (-1 when the file system does not say).

    Raises:
        DiskFullError: when fewer than ``needed_bytes`` are free.
    """
    free = free_bytes(folder)
    if free is None:
        return -1
    if free < needed_bytes:
        raise DiskFullError(path if path is not None else folder, free, int(needed_bytes))
    return free


@contextlib.contextmanager
def disk_full_as(path: Path, needed_bytes: int | None = None) -> Iterator[None]:
    """Turn a write's ENOSPC / EDQUOT into a :class:`DiskFullError` that names ``path``."""
    try:
        yield
    except OSError as err:
        if err.errno not in DISK_FULL_ERRNOS:
            raise
        quota = err.errno == errno.EDQUOT
        raise DiskFullError(path, free_bytes(path.parent), needed_bytes, quota=quota) from err


def _write_fully(f: Any, data: bytes | memoryview, chunk: int = 64 << 20) -> None:
    """Write ``data`` to the binary file ``f`` in chunks of ``chunk`` bytes."""
    view = memoryview(data).cast("B")
    for start in range(0, len(view), chunk):
        f.write(view[start : start + chunk])


def atomic_write_bytes(path: str | Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename.

    Raises:
        DiskFullError: when the data does not fit (checked before writing, and on ENOSPC);
            nothing is left at ``path`` or in a temporary file.
    """
    path = Path(path)
    size = memoryview(data).nbytes
    with disk_full_as(path, size):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(path.parent, path.name)
        check_free_space(path.parent, size, path)
        tmp = _tmp_sibling(path)
        try:
            with open(tmp, "wb") as f:
                _write_fully(f, data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Text variant of :func:`atomic_write_bytes` (UTF-8).

    A file name that is not valid UTF-8 reaches Python as lone surrogates (``os.fsdecode``);
    ``surrogateescape`` writes its original bytes back, so such names survive losslessly.
    """
    atomic_write_bytes(path, text.encode("utf-8", "surrogateescape"))


def atomic_save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Save arrays to an ``.npz`` file atomically (never a half-written file at ``path``).

    Raises:
        DiskFullError: when the arrays do not fit (checked before writing, and on ENOSPC).
    """
    path = Path(path)
    size = sum(np.asarray(a).nbytes for a in arrays.values())
    with disk_full_as(path, size):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(path.parent, path.name)
        check_free_space(path.parent, size, path)
        tmp = _tmp_sibling(path, ".npz")  # np.savez appends .npz to other names
        try:
            np.savez(tmp, **arrays)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    """Save one array to an ``.npy`` file atomically (never a half-written file at ``path``).

    Raises:
        DiskFullError: when the array does not fit (checked before writing, and on ENOSPC).
    """
    path = Path(path)
    array = np.asarray(array)
    with disk_full_as(path, array.nbytes):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(path.parent, path.name)
        check_free_space(path.parent, array.nbytes, path)
        tmp = _tmp_sibling(path)
        try:
            with open(tmp, "wb") as f:
                np.save(f, array)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


_NO_LINK_ERRNOS = frozenset(
    {errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}
)


def link_or_copy(src: str | Path, dst: str | Path) -> Path:
    """Put the file ``src`` at ``dst`` as a hard link (same file system) or else a copy.

    Either way ``dst`` appears atomically (a temporary sibling renamed into place), so it is
    never a partial file. A symbolic link ``src`` is resolved first (the file is linked, not
    the link). The two names share their bytes on disk when linked; that is safe because
    checkpoints and cache files are replaced by rename, never rewritten in place.

    Args:
        src: existing file.
        dst: target path; its folder is created; an existing file is replaced.

    Returns:
        ``dst`` as a Path.

    Raises:
        DiskFullError: when a copy is needed and does not fit.
    """
    src, dst = Path(src).resolve(strict=True), Path(dst)
    size = src.stat().st_size
    with disk_full_as(dst, size):
        dst.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(dst.parent, dst.name)
        tmp = _tmp_sibling(dst)
        try:
            try:
                os.link(src, tmp)
            except OSError as err:
                if err.errno not in _NO_LINK_ERRNOS:
                    raise
                check_free_space(dst.parent, size, dst)
                shutil.copyfile(src, tmp)
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)
    return dst
