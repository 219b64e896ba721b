"""The bytes of a THEMIS stream0 file, once decompressed: PGM headers and frames (no file access).

A stream0 file is a concatenation of PGM (P5) frames of 256 x 256 16-bit big-endian pixels, each
header holding ``#"key" value`` comment lines, among them ``#"Image request start"`` with the
frame's UTC time. Reading the file (decompressed, cached) is :mod:`aurora.data.themis.stream0`.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np

from aurora.data.metadata import parse_time
from aurora.infra.errors import AuroraError

STREAM0_REASONS = ("truncated", "unreadable", "unsupported format", "too large")
_TIME_KEY = "Image request start"
THEMIS_HEADER = (256, 256, 65535)  # what the reader decodes: 256 x 256, 16-bit
FRAME_BYTES = THEMIS_HEADER[0] * THEMIS_HEADER[1] * 2


class Stream0Error(AuroraError):
    """A THEMIS stream0 file that cannot become frames.

    Args:
        message: one line naming the file.
        reason: ``truncated``, ``unreadable``, ``unsupported format`` or ``too large``.
    """

    def __init__(self, message: str, reason: str = "unreadable") -> None:
        super().__init__(message)
        self.reason = reason


def header_lines(head: bytes) -> tuple[list[bytes], list[int]] | None:
    """Comment lines and numeric fields of the first PGM header in ``head``.

    Returns:
        (comment lines, the up to three numbers width, height, maxval), or None when
        ``head`` does not start with a binary PGM magic.
    """
    if not head.startswith(b"P5") or head[2:3] not in (b"\n", b"\r", b" ", b"\t"):
        return None
    comments: list[bytes] = []
    numbers: list[int] = []
    lines = head[2:].split(b"\n")
    for line in lines[:-1]:  # the last piece may be cut by the end of ``head``
        line = line.strip(b"\r")
        if line.startswith(b"#"):
            comments.append(line)
            continue
        for token in line.split():
            if not token.isdigit():
                return comments, numbers
            numbers.append(int(token))
        if len(numbers) >= 3:
            break
    return comments, numbers[:3]


def stream0_header_time(head: bytes) -> datetime | None:
    """UTC time given by the first PGM header of ``head`` (``#"Image request start" ...``).

    Args:
        head: the first bytes of an uncompressed PGM file (4096 hold any THEMIS header).

    Returns:
        The frame's UTC time, or None when the header carries no (valid) such line.
    """
    parsed = header_lines(head)
    if parsed is None:
        return None
    for line in parsed[0]:
        text = line.decode("ascii", "replace")
        if text.startswith(f'#"{_TIME_KEY}"'):
            return parse_time(text[len(_TIME_KEY) + 3 :])
    return None


def parse_frames(
    data: bytes, path: str
) -> tuple[list[np.ndarray], list[datetime | None], tuple[int, str] | None]:
    """Split an uncompressed stream0 file into its 16-bit PGM frames and header times.

    Each frame is ``P5``, then whitespace-separated width, height and maxval with ``#`` comment
    lines anywhere between them, one whitespace byte, and width x height big-endian 16-bit
    pixels.

    Returns:
        The complete frames, their times, and ``(index, message)`` of a last frame that stops
        early (a download cut short), else None.
    """
    frames: list[np.ndarray] = []
    times: list[datetime | None] = []
    pos, n = 0, len(data)
    raster = FRAME_BYTES
    while pos < n:
        while pos < n and data[pos : pos + 1].isspace():
            pos += 1
        if pos >= n:
            break
        if data[pos : pos + 2] != b"P5":
            if b"P5".startswith(data[pos : pos + 2]):  # the file stops inside the magic
                return frames, times, _cut_header(path, len(frames))
            raise Stream0Error(
                f"{path}: bytes after frame {len(frames)} are not a binary PGM frame", "unreadable"
            )
        pos += 2
        numbers: list[int] = []
        when: datetime | None = None
        while len(numbers) < 3:
            while pos < n and data[pos : pos + 1].isspace():
                pos += 1
            if pos >= n:
                return frames, times, _cut_header(path, len(frames))
            if data[pos : pos + 1] == b"#":
                end = data.find(b"\n", pos)
                if end < 0:
                    return frames, times, _cut_header(path, len(frames))
                text = data[pos:end].decode("ascii", "replace").strip()
                if text.startswith(f'#"{_TIME_KEY}"'):
                    when = parse_time(text[len(_TIME_KEY) + 3 :])
                pos = end + 1
                continue
            end = pos
            while end < n and data[end : end + 1].isdigit():
                end += 1
            if end == pos:
                raise Stream0Error(f"{path}: frame {len(frames)}: bad PGM header", "unreadable")
            if end == n:  # a number that may go on past the end of the data
                return frames, times, _cut_header(path, len(frames))
            numbers.append(int(data[pos:end]))
            pos = end
        if tuple(numbers) != THEMIS_HEADER:
            raise Stream0Error(
                f"{path}: frame {len(frames)} is {tuple(numbers)} (width, height, maxval); "
                f"THEMIS stream0 frames are {THEMIS_HEADER}",
                "unsupported format",
            )
        pos += 1  # the single whitespace byte before the raster
        if pos + raster > n:
            held = max(0, n - pos)
            message = (
                f"{path}: frame {len(frames)} holds {held} of {raster} pixel bytes "
                f"({raster - held} bytes missing: the file is cut short)"
            )
            return frames, times, (len(frames), message)
        frame = np.frombuffer(data, dtype=">u2", count=raster // 2, offset=pos)
        frames.append(frame.reshape(numbers[1], numbers[0]).astype(np.uint16))
        times.append(when)
        pos += raster
    return frames, times, None


def _cut_header(path: str, index: int) -> tuple[int, str]:
    """The cut of a frame whose header stops early: all its pixel bytes are missing."""
    return index, (
        f"{path}: frame {index}: header cut short (all {FRAME_BYTES} pixel bytes missing: "
        "the file is cut short)"
    )
