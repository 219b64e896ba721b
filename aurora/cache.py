"""Content-addressed on-disk cache shared by every stage of the chain.

Each stage stores its output under ``<root>/<stage>/<key>/`` where ``key`` is a hash of the
inputs and the stage configuration. Entries are written into a temporary sibling folder and
renamed into place only when complete, so a killed run never leaves a half-written entry
that a later run would read as valid (``rename`` of a directory is atomic on POSIX).

Temporary names carry the writer's process id and host (``.{name}.tmp-{pid}@{host}~XXXXXXXX``),
so the leftovers of a killed writer are recognised and removed by the next writer: those of a
process that no longer exists on this host, and those of other hosts not touched for
:data:`STALE_TMP_AGE_S` (a live :meth:`Cache.writing` touches its folder every
:data:`HEARTBEAT_S`). A write that runs out of space raises :class:`aurora.errors.DiskFullError`
naming the final path (not the temporary one), after removing what it had written.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aurora.errors import DISK_FULL_ERRNOS, AuroraError, DiskFullError, disk_full_error, free_bytes

COMPLETE_MARKER = "_COMPLETE"

STALE_TMP_AGE_S: float = 24 * 3600
"""A temporary entry of another host untouched for this long belongs to a dead writer."""

HEARTBEAT_S: float = 600
"""How often a live :meth:`Cache.writing` touches its temporary folder."""

_HOST = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname() or "host")[:64]
# New names: .{name}.tmp-{pid}@{host}~{random}[.npz]; old ones (before the pid and host were
# recorded): mkdtemp's .{name}.tmp-{8 random} and .{name}.{uuid4 hex}.tmp[.npz].
_TMP_RE = re.compile(
    r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)@(?P<host>[A-Za-z0-9._-]+)~[A-Za-z0-9_]+(?:\.npz)?$"
)
_OLD_TMP_RE = re.compile(r"^\.(?P<name>.+)\.(?:tmp-[a-z0-9_]{8}|[0-9a-f]{32}\.tmp(?:\.npz)?)$")


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


def _tmp_prefix(name: str) -> str:
    """Prefix of a temporary sibling of ``name`` written by this process."""
    return f".{name}.tmp-{os.getpid()}@{_HOST}~"


def _tmp_sibling(path: Path, suffix: str = "") -> Path:
    return path.with_name(f"{_tmp_prefix(path.name)}{secrets.token_hex(4)}{suffix}")


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
def _disk_full_as(path: Path, needed_bytes: int | None = None) -> Iterator[None]:
    """Turn a write's ENOSPC / EDQUOT into a :class:`DiskFullError` that names ``path``."""
    try:
        yield
    except OSError as err:
        if err.errno not in DISK_FULL_ERRNOS:
            raise
        quota = err.errno == errno.EDQUOT
        raise DiskFullError(path, free_bytes(path.parent), needed_bytes, quota=quota) from err


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

    @contextlib.contextmanager
    def writing(self, stage: str, key: str) -> Iterator[Path]:
        """Yield a temporary folder to fill; it becomes the entry only if the block succeeds.

        A concurrent writer that finished first wins; the loser's work is discarded. Before
        writing, temporaries of dead writers in the stage folder are removed (see
        :func:`remove_stale_tmp`); on any exception this writer's temporary folder is removed,
        and a full disk is raised as :class:`aurora.errors.DiskFullError` naming the entry.
        """
        final = self.path(stage, key)
        with _disk_full_as(final):
            final.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_tmp(final.parent)
            tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(key), dir=final.parent))
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
    with _disk_full_as(path, size):
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
    """Text variant of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode())


def atomic_save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Save arrays to an ``.npz`` file atomically (never a half-written file at ``path``).

    Raises:
        DiskFullError: when the arrays do not fit (checked before writing, and on ENOSPC).
    """
    path = Path(path)
    size = sum(np.asarray(a).nbytes for a in arrays.values())
    with _disk_full_as(path, size):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(path.parent, path.name)
        check_free_space(path.parent, size, path)
        tmp = _tmp_sibling(path, ".npz")  # np.savez appends .npz to other names
        try:
            np.savez(tmp, **arrays)
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
    with _disk_full_as(dst, size):
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
