"""THEMIS stream0 files: raw all-sky imager data as users download it from UCalgary.

One file per minute (``20140310_0600_gill_themis19_full.pgm.gz``), a concatenation of 20 PGM
(P5) frames of 256 x 256 16-bit big-endian pixels, each frame preceded by ``#"key" value``
comment lines (site, exposure, ``#"Image request start" 2014-03-10 06:00:00.063119 UTC``).
Plain, gzip or bzip2; see :func:`stream0_frames`. A file cut short (a download that stopped)
keeps its complete frames; the one it stops in is its cut (:func:`stream0_cut`). A single plain
PGM frame is an ordinary image that OpenCV reads as 16-bit; only its header time comes from
:mod:`aurora.data.themis.stream0_parse` (:func:`stream0_header_time`), which parses the bytes
(headers, frames) that this module reads, decompresses and keeps for the decoding threads.

Parsed here: the University of Calgary reader (``themis-imager-readfile`` 1.4) pins
numpy < 2, which the rest of the stack does not run on (the synthetic sky renders differently
under NumPy 1), so it cannot be a dependency.
"""

from __future__ import annotations

import bz2
import os
import threading
import zlib
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from aurora.data.themis.stream0_parse import (
    FRAME_BYTES,
    THEMIS_HEADER,
    Stream0Error,
    header_lines,
    parse_frames,
)

_CACHE_FILES = 8  # decoded files kept (about 2.6 MB each)
#: Most bytes a stream0 file may decompress to (2048 frames; a minute holds 20): a compressed
#: file that says more is refused before it fills memory.
MAX_STREAM_BYTES = 2048 * FRAME_BYTES


def compression_of(head: bytes) -> str | None:
    """Compression of a file from its first bytes: ``gzip``, ``bz2`` or None."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh") and head[3:4].isdigit() and head[3:4] != b"0":
        return "bz2"
    return None


@dataclass(frozen=True)
class _Stream:
    frames: np.ndarray  # (n, 256, 256) uint16, read-only
    times: list[datetime | None]  # (n,)
    cut: tuple[int, str] | None = None  # (index, message) of a last frame cut short


def _decompressor(compression: str) -> Any:
    return zlib.decompressobj(wbits=31) if compression == "gzip" else bz2.BZ2Decompressor()


def _read_all(path: str, compression: str | None) -> tuple[bytes, bool]:
    """The decompressed content of a file, at most :data:`MAX_STREAM_BYTES`.

    Returns:
        ``(data, complete)``: ``complete`` is False when compressed data stops before its
        end-of-stream marker (``data`` then holds what could be decompressed).

    Raises:
        OSError, zlib.error: the file cannot be read, or its compressed data is corrupt.
        Stream0Error: it decompresses to more than :data:`MAX_STREAM_BYTES` (``too large``).
    """
    limit = MAX_STREAM_BYTES
    with open(path, "rb") as f:
        if compression is None:
            data = f.read(limit + 1)
            if len(data) > limit:
                raise _too_big(path, limit)
            return data, True
        out = bytearray()
        dec = _decompressor(compression)
        pending = b""
        while True:
            if not pending:
                pending = f.read(1 << 20)
                if not pending:
                    return bytes(out), bool(dec.eof)
            if dec.eof:  # another member (gzip) or stream (bz2) follows
                if not pending.startswith(b"\x1f\x8b" if compression == "gzip" else b"BZh"):
                    return bytes(out), True  # trailing bytes that are no compressed data
                dec = _decompressor(compression)
            room = limit + 1 - len(out)
            if compression == "gzip":
                out += dec.decompress(pending, room)
                pending = dec.unconsumed_tail or dec.unused_data
            else:
                out += dec.decompress(pending, room)
                pending = dec.unused_data if dec.eof else b""
                while not dec.eof and not dec.needs_input and len(out) <= limit:
                    out += dec.decompress(b"", limit + 1 - len(out))
            if len(out) > limit:
                raise _too_big(path, limit)


def _too_big(path: str, limit: int) -> Stream0Error:
    return Stream0Error(
        f"{path}: holds more than {limit >> 20} MiB of frames ({limit // FRAME_BYTES} frames; "
        "a stream0 file holds a minute, 20 frames)",
        "too large",
    )


def _decode_stream(path: str) -> _Stream:
    """Read every frame of a stream0 file and its header times; raises Stream0Error.

    A file cut short keeps its complete frames; the frame it stops in is its ``cut``.
    """
    compression: str | None = None
    try:
        with open(path, "rb") as f:
            compression = compression_of(f.read(4))
        data, complete = _read_all(path, compression)
    except EOFError as e:
        raise Stream0Error(f"{path}: truncated {compression} data ({e})", "truncated") from e
    except (OSError, zlib.error, ValueError) as e:  # BadGzipFile is an OSError
        what = f"corrupt {compression} data" if compression else "cannot read file"
        raise Stream0Error(f"{path}: {what}: {e}", "unreadable") from e
    parsed = header_lines(data[:4096])
    in_magic = parsed is None and len(data) < 3 and b"P5".startswith(data)
    if not complete and (in_magic or (parsed is not None and len(parsed[1]) < 3)):
        raise Stream0Error(
            f"{path}: truncated {compression} data: it stops inside the first frame's header "
            f"({len(data)} bytes could be decompressed)",
            "truncated",
        )
    if parsed is None:
        what = f"{compression}-compressed file" if compression else "file"
        raise Stream0Error(
            f"{path}: {what} does not hold a binary PGM (only THEMIS stream0 PGM files are read)",
            "unsupported format",
        )
    if tuple(parsed[1]) != THEMIS_HEADER:
        raise Stream0Error(
            f"{path}: multi-frame or compressed PGM with frames of width, height, maxval "
            f"{tuple(parsed[1])}; the THEMIS stream0 reader reads {THEMIS_HEADER}",
            "unsupported format",
        )
    frames, times, cut = parse_frames(data, path)
    if cut is None and not complete:  # the compressed data stops between two frames
        k = len(frames)
        cut = (
            k,
            f"{path}: truncated {compression} data: it stops after frame {k - 1} (no end-of-"
            f"stream marker); frame {k} ({FRAME_BYTES} pixel bytes) and any later are missing",
        )
    if not frames:
        message = cut[1] if cut is not None else f"{path}: holds no frame"
        raise Stream0Error(message, "truncated" if cut is not None else "unreadable")
    if not any(t is not None for t in times):
        raise Stream0Error(
            f"{path}: no frame with a THEMIS stream0 metadata header"
            + (" (decompress a single plain PGM frame to read it)" if compression else ""),
            "unsupported format",
        )
    stack = np.stack(frames)
    stack.setflags(write=False)
    return _Stream(stack, times, cut)


_cache_lock = threading.Lock()
_cache: OrderedDict[tuple[str, int, int], Future[_Stream]] = OrderedDict()


def _reset_cache_after_fork() -> None:
    # A forked worker (the preprocessing pool) must not inherit a lock held, or a file
    # being decoded, by another thread of its parent: it would wait for it forever.
    global _cache_lock, _cache
    _cache_lock = threading.Lock()
    _cache = OrderedDict()


os.register_at_fork(after_in_child=_reset_cache_after_fork)


def _stream(path: str) -> _Stream:
    """Decoded stream0 file, shared by all threads: the few most recent files are kept.

    Frames of one file are read by several decoding threads at once; the first decodes
    the file, the others wait for it instead of decoding it again.
    """
    try:
        st = os.stat(path)
    except OSError as e:
        raise Stream0Error(f"{path}: cannot read file: {e.strerror or e}") from e
    key = (os.path.abspath(path), st.st_mtime_ns, st.st_size)
    with _cache_lock:
        future = _cache.get(key)
        owner = future is None
        if future is None:
            future = _cache[key] = Future()
            while len(_cache) > _CACHE_FILES:
                _cache.popitem(last=False)
        else:
            _cache.move_to_end(key)
    if owner:
        try:
            future.set_result(_decode_stream(path))
        except Stream0Error as e:
            future.set_exception(e)
        except BaseException as e:
            future.set_exception(e)
            with _cache_lock:
                _cache.pop(key, None)
            raise
    return future.result()


def stream0_frames(path: str | Path) -> list[datetime | None]:
    """List the complete frames of a THEMIS stream0 PGM file (plain, ``.gz`` or ``.bz2``).

    Args:
        path: the file.

    Returns:
        One entry per complete frame: its UTC time from the frame's ``Image request start``
        header line, or None when that line is missing or invalid. A frame the file stops in
        is not listed (:func:`stream0_cut`).

    Raises:
        Stream0Error: the file cannot be read as THEMIS frames; ``.reason`` says why.
    """
    return list(_stream(str(path)).times)


def stream0_cut(path: str | Path) -> tuple[int, str] | None:
    """The frame a stream0 file cut short stops in: ``(index, message)``, else None.

    Its index follows the complete frames; the message says how many bytes are missing.

    Raises:
        Stream0Error: the file cannot be read as THEMIS frames.
    """
    return _stream(str(path)).cut


def read_stream0_frame(path: str | Path, frame: int) -> np.ndarray:
    """Read one frame of a THEMIS stream0 PGM file.

    Args:
        path: the file.
        frame: frame index, 0-based.

    Returns:
        The frame as a (256, 256) uint16 array (a fresh, writable copy).

    Raises:
        Stream0Error: the file or that frame cannot be read.
    """
    stream = _stream(str(path))
    n = stream.frames.shape[0]
    if stream.cut is not None and frame == stream.cut[0]:
        raise Stream0Error(stream.cut[1], "truncated")
    if not 0 <= frame < n:
        raise Stream0Error(f"{path}: no frame {frame} (the file holds {n})", "unreadable")
    return stream.frames[frame].copy()
