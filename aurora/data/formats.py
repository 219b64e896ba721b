"""Image formats by content: signatures, header sizes and cheap completeness checks.

A format is decided by a file's first bytes (magic numbers), never by its extension; a
truncated file is found from its head and tail bytes alone where the format allows
(:func:`structural_problem`), so a scan need not decode anything.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

from aurora.data.manifest import TRUNCATED, ImageReadError

HEAD_BYTES = 4096  # bytes kept from the start of a file for signature and header checks
TAIL_BYTES = 4096  # bytes kept from the end for end-marker checks


def detect_format(head: bytes) -> str | None:
    """Supported format from a file's first bytes.

    Args:
        head: the first bytes of a file (16 are enough).

    Returns:
        One of ``jpeg``, ``png``, ``tiff``, ``bmp``, ``pnm``, ``cdf``, or None.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head.startswith(b"BM") and len(head) >= 14:
        return "bmp"
    if len(head) >= 3 and head[0:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace():
        return "pnm"
    # CDF v3 / v2.6-2.7 / v2.5 magic numbers.
    if head[:4] in (b"\xcd\xf3\x00\x01", b"\xcd\xf2\x60\x02", b"\x00\x00\xff\xff"):
        return "cdf"
    return None


def pnm_expected_size(head: bytes) -> int | None:
    """Total file size a binary Netpbm (P4/P5/P6) header announces, or None if unknown."""
    kind = head[1:2]
    if kind not in (b"4", b"5", b"6"):
        return None
    fields: list[int] = []
    i = 2
    want = 2 if kind == b"4" else 3
    n = len(head)
    while len(fields) < want and i < n:
        c = head[i : i + 1]
        if c.isspace():
            i += 1
        elif c == b"#":
            while i < n and head[i : i + 1] not in (b"\n", b"\r"):
                i += 1
        else:
            j = i
            while j < n and head[j : j + 1].isdigit():
                j += 1
            if j == i:
                return None
            fields.append(int(head[i:j]))
            i = j
    if len(fields) < want or i >= n:
        return None
    data_start = i + 1  # exactly one whitespace byte after the last header field
    if kind == b"4":
        w, h = fields
        return data_start + h * ((w + 7) // 8)
    w, h, maxval = fields
    channels = 3 if kind == b"6" else 1
    return data_start + w * h * channels * (2 if maxval > 255 else 1)


def _jpeg_complete(path: str, data: bytes | None) -> bool:
    """Ask Pillow to decode a JPEG whose tail lacks the EOI marker (rare: trailing data).

    Pillow refuses truncated data (``LOAD_TRUNCATED_IMAGES`` is False), unlike libjpeg
    in some OpenCV builds, which fills the missing rows with grey.
    """
    from PIL import Image

    try:
        if data is None:
            data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            im.load()
        return True
    except Exception:
        return False


def structural_problem(
    fmt: str, head: bytes, tail: bytes, size: int, path: str, data: bytes | None = None
) -> ImageReadError | None:
    """Cheap completeness checks from a file's head and tail bytes."""
    if fmt == "jpeg":
        # Writers may pad after EOI with NULs or newlines; anything else falls to Pillow.
        if not tail.rstrip(b"\x00\r\n \t").endswith(b"\xff\xd9") and not _jpeg_complete(path, data):
            return ImageReadError(TRUNCATED, f"{path}: truncated JPEG (no end-of-image marker)")
    elif fmt == "png":
        if b"IEND" not in tail[-64:]:
            return ImageReadError(TRUNCATED, f"{path}: truncated PNG (no IEND chunk)")
    elif fmt == "bmp":
        (declared,) = struct.unpack("<I", head[2:6])
        if declared and size < declared:
            return ImageReadError(TRUNCATED, f"{path}: truncated BMP ({size} of {declared} bytes)")
    elif fmt == "pnm":
        expected = pnm_expected_size(head)
        if expected is not None and size < expected:
            return ImageReadError(TRUNCATED, f"{path}: truncated PNM ({size} of {expected} bytes)")
    return None
