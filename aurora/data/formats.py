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


#: Default of ``data.max_pixels``: 100 Mpx admits a 2832 x 2832 KHO full frame (8 Mpx) many
#: times over, while a 30,000 x 30,000 image (900 Mpx, 0.9 to 2.7 GB once decoded) is refused.
DEFAULT_MAX_PIXELS = 100_000_000

_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start of frame (not DHT/JPG/DAC)
_JPEG_MAX_MARKERS = 512  # a real JPEG has a few dozen segments before its frame header


def check_max_pixels(value: object, key: str = "data.max_pixels") -> int:
    """``data.max_pixels`` as an int: a whole number of pixels, at least 1.

    Raises:
        SettingsError: anything else (naming ``key``).
    """
    from aurora.infra.errors import SettingsError

    allowed = f"a whole number of pixels >= 1 (e.g. {DEFAULT_MAX_PIXELS} = 100 Mpx)"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SettingsError(key, value, allowed)
    try:
        number = float(value)
    except ValueError:
        raise SettingsError(key, value, allowed) from None
    if not number.is_integer() or number < 1:
        raise SettingsError(key, value, allowed)
    return int(number)


def too_large_detail(width: int, height: int, max_pixels: int) -> str | None:
    """The detail of a ``too large`` rejection, or None when the image is within the limit."""
    if width * height <= max_pixels:
        return None
    return (
        f"{width}x{height} = {width * height / 1e6:.1f} Mpx above "
        f"data.max_pixels={max_pixels} ({max_pixels / 1e6:.1f} Mpx)"
    )


class _Bytes:
    """Random access to a file's bytes: from memory, or read from the file where needed."""

    def __init__(self, head: bytes, path: str | None) -> None:
        self.head = head
        self.path = path
        self._file: io.BufferedReader | None = None

    def read(self, offset: int, n: int) -> bytes:
        if offset + n <= len(self.head) or self.path is None:
            return self.head[offset : offset + n]
        if self._file is None:
            self._file = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        self._file.seek(offset)
        return self._file.read(n)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def image_size(fmt: str, head: bytes, path: str | None = None) -> tuple[int, int] | None:
    """(width, height) of an image from its header alone, before any pixel is decoded.

    Args:
        fmt: the format (:func:`detect_format`).
        head: the first bytes of the file, or all of them.
        path: the file, read (a few small seeks) where the header lies beyond ``head``
            (JPEG segments before the frame header, a TIFF's first directory); None = only
            ``head`` is known.

    Returns:
        The declared width and height (of the first page of a TIFF), or None when the header
        does not say (the decoder then decides).
    """
    src = _Bytes(head, path)
    try:
        if fmt == "png":
            return _png_size(src)
        if fmt == "bmp":
            return _bmp_size(src)
        if fmt == "pnm":
            return _pnm_size(head)
        if fmt == "jpeg":
            return _jpeg_size(src)
        if fmt == "tiff":
            return _tiff_size(src)
    except (OSError, struct.error):
        return None
    finally:
        src.close()
    return None


def _png_size(src: _Bytes) -> tuple[int, int] | None:
    ihdr = src.read(8, 16)  # length, "IHDR", width, height (big-endian)
    if len(ihdr) < 16 or ihdr[4:8] != b"IHDR":
        return None
    w, h = struct.unpack(">II", ihdr[8:16])
    return w, h


def _bmp_size(src: _Bytes) -> tuple[int, int] | None:
    dib = src.read(14, 12)
    if len(dib) < 8:
        return None
    (header_size,) = struct.unpack("<I", dib[:4])
    if header_size == 12:  # BITMAPCOREHEADER: 16-bit unsigned sides
        w, h = struct.unpack("<HH", dib[4:8])
        return w, h
    if len(dib) < 12:
        return None
    w, h = struct.unpack("<ii", dib[4:12])
    return abs(w), abs(h)  # a negative height is a top-down bitmap


def _pnm_size(head: bytes) -> tuple[int, int] | None:
    fields: list[int] = []
    i, n = 2, len(head)
    while len(fields) < 2 and i < n:
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
            if j in (i, n):  # not a number, or one that may go on past ``head``
                return None
            fields.append(int(head[i:j]))
            i = j
    return (fields[0], fields[1]) if len(fields) == 2 else None


def _jpeg_size(src: _Bytes) -> tuple[int, int] | None:
    pos = 2
    for _ in range(_JPEG_MAX_MARKERS):
        two = src.read(pos, 2)
        if len(two) < 2 or two[0] != 0xFF:
            return None
        marker = two[1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length field
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before
            return None
        seg = src.read(pos + 2, 7)
        if len(seg) < 2:
            return None
        (length,) = struct.unpack(">H", seg[:2])
        if marker in _JPEG_SOF:
            if len(seg) < 7:
                return None
            h, w = struct.unpack(">HH", seg[3:7])
            return (w, h) if h else None  # height 0: given later by a DNL segment
        if length < 2:
            return None
        pos += 2 + length
    return None


def _tiff_size(src: _Bytes) -> tuple[int, int] | None:
    order = "<" if src.read(0, 2) == b"II" else ">"
    (magic,) = struct.unpack(order + "H", src.read(2, 2))
    big = magic == 43  # BigTIFF: 8-byte offsets and counts
    if big:
        (ifd,) = struct.unpack(order + "Q", src.read(8, 8))
        (count,) = struct.unpack(order + "Q", src.read(ifd, 8))
        first, entry, value_at = ifd + 8, 20, 12
    else:
        (ifd,) = struct.unpack(order + "I", src.read(4, 4))
        (count,) = struct.unpack(order + "H", src.read(ifd, 2))
        first, entry, value_at = ifd + 2, 12, 8
    sides: dict[int, int] = {}
    table = src.read(first, min(count, 4096) * entry)
    for k in range(len(table) // entry):
        e = table[k * entry : (k + 1) * entry]
        tag, kind = struct.unpack(order + "HH", e[:4])
        if tag not in (256, 257):  # ImageWidth, ImageLength
            continue
        fmt = {3: "H", 4: "I", 16: "Q"}.get(kind)
        if fmt is None:
            return None
        (sides[tag],) = struct.unpack_from(order + fmt, e, value_at)
        if len(sides) == 2:
            return sides[256], sides[257]
    return None
