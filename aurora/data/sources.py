"""Image sources with full accounting: folders, list files, many formats, one manifest.

What counts as an input
    ``scan`` walks a folder recursively (following folder links, each real folder once)
    and skips hidden files and folders (names starting with ``.``). A file is an input
    when its extension is an image or CDF extension (:data:`IMAGE_EXTENSIONS`, case
    ignored), or when its extension is not a known text/metadata one
    (:data:`IGNORED_EXTENSIONS`: ``.csv``, ``.md``, ``.txt``, ``.json``, ...) and its first
    bytes carry a supported image signature. So a data set's ``labels.csv`` and
    ``PROVENANCE.md`` are not inputs, a text file named ``.jpg`` is an input (and is
    rejected), and a JPEG named ``.png`` or with no extension is an input (and accepted).
    A compressed file (``.gz``, ``.bz2``) is an input when the name under the compression
    suffix is an image name (``x.pgm.gz``); other compressed files are ignored.
    With a list file every listed line is an input, whatever its extension; repeated
    lines naming the same file count once.

Duplicates
    Files with the same content (SHA-256 of their bytes) are one image: the first in sorted
    id order is the original, every later one is a duplicate, recorded in
    :attr:`Manifest.duplicates` (duplicate id -> original id) instead of ``records``, so it is
    decoded, preprocessed and clustered once and takes its original's label
    (:func:`expand_duplicates`). A duplicate of a multi-frame file maps each frame id to the
    original's frame id (``b.pgm.gz#0003`` -> ``a.pgm.gz#0003``). Duplicates are not
    rejections; their detail text is ``duplicate of <original id>`` (:func:`duplicate_detail`).

Format
    Decided by content (magic bytes), never by extension: JPEG, PNG, TIFF, BMP,
    Netpbm (PGM/PPM/PBM, incl. 16-bit THEMIS frames) and CDF (THEMIS L1 ``thg_asf_<site>``,
    one record per frame). THEMIS stream0 files (``20140310_0600_gill_themis19_full.pgm.gz``:
    a minute of 256 x 256 16-bit PGM frames, plain, gzip or bzip2) give one record per frame
    with the frame's time from its header (parsed in :mod:`aurora.data.themis`). A PGM file
    is a stream0 file when it is compressed or another frame follows its first; a single
    plain PGM frame is one ordinary image.

Rejection reasons (:data:`REASONS`)
    A rejection's ``reason`` is one of these short codes (counted in summaries); its
    ``detail`` is the one-line message naming the file and what is wrong.

    - ``missing``: the path does not exist (a list file entry naming nothing, or a file that
      disappeared between scanning and decoding).
    - ``dangling link``: a symbolic link whose target does not exist.
    - ``symlink loop``: a symbolic link that leads back to itself (``a -> b -> a``).
    - ``not a file``: the path exists but is no regular file (a folder, FIFO or device named
      by a list file; a FIFO or device found in a folder under an image name).
    - ``empty file``: zero bytes.
    - ``unsupported format``: no supported signature (text, random bytes, GIF, FITS, a
      CDF without THEMIS images, pixels that are neither 8- nor 16-bit unsigned).
    - ``truncated``: a supported signature but the data stops early: JPEG without its
      end-of-image marker, PNG without ``IEND``, BMP or binary Netpbm shorter than its
      header says, a compressed stream0 file without its end-of-stream marker, or a
      stream0 frame cut short.
    - ``unreadable``: the file cannot be read (permissions, I/O error) or has a supported
      signature but the decoder fails on it (corrupt data; TIFF files and CDF frames,
      which have no end marker, also land here when cut short).

    ``scan`` finds the path problems and the next three from the bytes it reads anyway for
    the content hash (and the CDF and stream0 files it cannot list); ``load_images`` decodes
    and reports the rest. The preprocessing chain adds its own reasons (``too small``,
    ``saturated``, ``too dark``, ``no sky circle: ...``; see :mod:`aurora.preprocess`). Every
    input therefore ends as exactly one accepted record, one duplicate or one rejection
    (``n_inputs == len(records) + len(duplicates) + len(rejected)`` before decoding;
    decoding moves records to rejections, it never drops them).

Ids
    A record's id is its path relative to the data root in POSIX form, plus ``#NNNN``
    for a frame of a multi-frame file (CDF, stream0). For a folder the root is the folder;
    for a list file it is the deepest folder holding the list file and every listed file,
    so ids never contain ``..`` and ``path == root / id`` (frame suffix aside).

Times
    A record's timestamp is the frame's own time for CDF and stream0 frames (None where the
    file gives none), the ``#"Image request start"`` header line of a single THEMIS PGM
    frame, else the time in the file name (:func:`aurora.data.timestamps.parse_timestamp`).

Pixels
    ``read_image`` returns the stored pixels: (H, W) or (H, W, 3) in RGB order, uint8 or
    uint16, alpha dropped, EXIF orientation not applied (an all-sky camera's geometry is
    fixed by its mounting, not by a tag).
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import os
import stat
import struct
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from aurora.cache import atomic_write_text, stable_hash
from aurora.data.themis import (
    CdfError,
    Stream0Error,
    cdf_frames,
    compression_of,
    read_cdf_frame,
    read_stream0_frame,
    stream0_frames,
    stream0_header_time,
)
from aurora.data.timestamps import parse_timestamp

__all__ = [
    "COMPRESSED_EXTENSIONS",
    "DANGLING_LINK",
    "DUPLICATE",
    "EMPTY_FILE",
    "IGNORED_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "MISSING",
    "NOT_A_FILE",
    "REASONS",
    "SYMLINK_LOOP",
    "TRUNCATED",
    "UNREADABLE",
    "UNSUPPORTED_FORMAT",
    "DataSourceError",
    "ImageReadError",
    "ImageRecord",
    "Manifest",
    "Rejection",
    "detect_format",
    "duplicate_detail",
    "expand_duplicates",
    "load_images",
    "parse_timestamp",
    "read_image",
    "scan",
    "write_rejected_csv",
]

UNREADABLE = "unreadable"
EMPTY_FILE = "empty file"
TRUNCATED = "truncated"
UNSUPPORTED_FORMAT = "unsupported format"
MISSING = "missing"
DANGLING_LINK = "dangling link"
SYMLINK_LOOP = "symlink loop"
NOT_A_FILE = "not a file"
REASONS: tuple[str, ...] = (
    UNREADABLE,
    EMPTY_FILE,
    TRUNCATED,
    UNSUPPORTED_FORMAT,
    MISSING,
    DANGLING_LINK,
    SYMLINK_LOOP,
    NOT_A_FILE,
)
#: Code of an input whose content repeats an earlier one (not a rejection: see ``duplicates``).
DUPLICATE = "duplicate"

_SUPPORTED_EXTENSIONS = ".jpg .jpeg .jpe .jfif .png .tif .tiff .bmp .dib .pgm .ppm .pnm .pbm .cdf"
# Image formats people point us at that we do not decode: inputs, rejected as unsupported.
_OTHER_IMAGE_EXTENSIONS = ".gif .webp .fits .fit .fts .jp2 .j2k .heic .heif .avif .dng .raw .exr"
IMAGE_EXTENSIONS = frozenset(f"{_SUPPORTED_EXTENSIONS} {_OTHER_IMAGE_EXTENSIONS}".split())
_TEXT_EXTENSIONS = ".csv .tsv .md .txt .json .yaml .yml .toml .ini .cfg .html .htm .xml .log .py"
_OTHER_EXTENSIONS = ".ipynb .pdf .zip .gz .tar .npz .npy .pt .ckpt .pkl .sha256 .md5"
IGNORED_EXTENSIONS = frozenset(f"{_TEXT_EXTENSIONS} {_OTHER_EXTENSIONS}".split())
# An input when what the compression wraps has an image extension (``x.pgm.gz``).
COMPRESSED_EXTENSIONS = frozenset({".gz", ".bz2"})

_HEAD = 4096  # bytes kept from the start of a file for signature and header checks
_TAIL = 4096  # bytes kept from the end for end-marker checks
_CHUNK = 1 << 20


class DataSourceError(Exception):
    """A data source that cannot be used at all: missing path, no images, unreadable list."""


class ImageReadError(Exception):
    """One input that cannot become an image; ``reason`` is one of :data:`REASONS`.

    Args:
        reason: the rejection reason.
        message: a clear one-line message naming the file.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ImageRecord:
    """One image of a data set (a file, or one frame of a multi-frame file)."""

    id: str
    path: str
    frame: int | None
    timestamp: datetime | None
    content_hash: str


@dataclass(frozen=True)
class Rejection:
    """One input that did not become an image.

    Attributes:
        path: its id (path relative to the data root, ``#NNNN`` for a frame).
        reason: a short code (:data:`REASONS`, or a preprocessing reason).
        detail: one line saying what exactly is wrong (not compared: two rejections of the
            same input for the same reason are equal).
    """

    path: str
    reason: str
    detail: str = field(default="", compare=False)


@dataclass
class Manifest:
    """The images of a data set, their duplicates and the inputs rejected while scanning it.

    Attributes:
        root: the data root (ids are relative to it).
        records: the accepted images, originals only, sorted by id.
        rejected: the inputs rejected while scanning, sorted by path.
        duplicates: duplicate id -> original id (an id in ``records``), for inputs whose
            content repeats an earlier input's.
    """

    root: Path
    records: list[ImageRecord]
    rejected: list[Rejection] = field(default_factory=list)
    duplicates: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Stable hash of the (id, content hash) pairs: identifies the data set for caching.

        The root folder is not part of the key, so a moved data set keeps its cache; nor are
        the duplicates and rejections, so a new copy or a new broken file re-uses it.
        """
        return stable_hash("aurora-manifest-v1", [(r.id, r.content_hash) for r in self.records])

    @property
    def n_inputs(self) -> int:
        """Number of inputs: accepted records plus duplicates plus rejections."""
        return len(self.records) + len(self.duplicates) + len(self.rejected)

    def write(self, path: str | Path) -> None:
        """Write the records as CSV (``id,path,frame,timestamp,content_hash``).

        The rejections go to a sibling ``<stem>.rejected.csv`` (``path,reason,detail``), the
        duplicates to ``<stem>.duplicates.csv`` (``id,original``).
        """
        path = Path(path)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["id", "path", "frame", "timestamp", "content_hash"])
        for r in self.records:
            writer.writerow(
                [
                    r.id,
                    r.path,
                    "" if r.frame is None else r.frame,
                    "" if r.timestamp is None else r.timestamp.isoformat(),
                    r.content_hash,
                ]
            )
        atomic_write_text(path, buf.getvalue())
        write_rejected_csv(self.rejected, _sibling(path, "rejected"))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["id", "original"])
        writer.writerows(sorted(self.duplicates.items()))
        atomic_write_text(_sibling(path, "duplicates"), buf.getvalue())

    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        """Read a manifest written by :meth:`write`.

        Raises:
            DataSourceError: the file is missing or is not a manifest CSV.
        """
        path = Path(path)
        try:
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise DataSourceError(f"cannot read manifest {path}: {e}") from e
        records: list[ImageRecord] = []
        try:
            for row in rows:
                records.append(
                    ImageRecord(
                        id=row["id"],
                        path=row["path"],
                        frame=int(row["frame"]) if row["frame"] else None,
                        timestamp=datetime.fromisoformat(row["timestamp"])
                        if row["timestamp"]
                        else None,
                        content_hash=row["content_hash"],
                    )
                )
        except (KeyError, TypeError, ValueError) as e:
            raise DataSourceError(f"{path} is not a manifest CSV: {e}") from e
        rejected: list[Rejection] = []
        duplicates: dict[str, str] = {}
        try:
            sibling = _sibling(path, "rejected")
            if sibling.is_file():
                with open(sibling, newline="", encoding="utf-8") as f:
                    rejected = [
                        Rejection(r["path"], r["reason"], r.get("detail") or "")
                        for r in csv.DictReader(f)
                    ]
            sibling = _sibling(path, "duplicates")
            if sibling.is_file():
                with open(sibling, newline="", encoding="utf-8") as f:
                    duplicates = {r["id"]: r["original"] for r in csv.DictReader(f)}
        except (OSError, UnicodeDecodeError, csv.Error, KeyError) as e:
            raise DataSourceError(f"cannot read the sidecar files of manifest {path}: {e}") from e
        root = _root_from_record(records[0]) if records else path.parent
        return cls(root=root, records=records, rejected=rejected, duplicates=duplicates)


def _sibling(path: Path, what: str) -> Path:
    return path.with_name(f"{path.stem}.{what}.csv")


def duplicate_detail(original: str) -> str:
    """The detail text of a duplicate: ``duplicate of <original id>``."""
    return f"{DUPLICATE} of {original}"


def expand_duplicates(
    ids: Sequence[str], duplicates: Mapping[str, str]
) -> tuple[list[str], np.ndarray]:
    """Every input id, originals and duplicates, with the row whose result each one takes.

    Args:
        ids: (N,) ids of the rows of a result (e.g. the accepted images, one label each).
        duplicates: duplicate id -> original id (:attr:`Manifest.duplicates`).

    Returns:
        ``(all_ids, rows)``: the N + D ids sorted, and (N + D,) int64 indices into ``ids``:
        the row itself for an original, its original's row for a duplicate.

    Raises:
        ValueError: a duplicate is also in ``ids``, or its original is not.
    """
    row = {rid: i for i, rid in enumerate(ids)}
    if len(row) != len(ids):
        raise ValueError("ids are not unique")
    for dup, orig in duplicates.items():
        if dup in row:
            raise ValueError(f"{dup} is both a duplicate (of {orig}) and a row of its own")
        if orig not in row:
            raise ValueError(f"{dup} is a duplicate of {orig}, which has no row")
    all_ids = sorted([*ids, *duplicates])
    rows = np.fromiter(
        (row[rid] if rid in row else row[duplicates[rid]] for rid in all_ids),
        dtype=np.int64,
        count=len(all_ids),
    )
    return all_ids, rows


def _root_from_record(record: ImageRecord) -> Path:
    """Recover the data root from ``path == root / id`` (frame suffix stripped)."""
    rel = record.id.split("#", 1)[0] if record.frame is not None else record.id
    parts = len(Path(rel).parts)
    root = Path(record.path)
    for _ in range(parts):
        root = root.parent
    return root


def write_rejected_csv(rejections: Iterable[Rejection], path: str | Path) -> None:
    """Write rejections as CSV with columns ``path,reason,detail`` (atomically)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "reason", "detail"])
    for r in rejections:
        writer.writerow([r.path, r.reason, " ".join(r.detail.split())])
    atomic_write_text(path, buf.getvalue())


# --------------------------------------------------------------------------- formats


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


def _pnm_expected_size(head: bytes) -> int | None:
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


def _structural_problem(
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
        expected = _pnm_expected_size(head)
        if expected is not None and size < expected:
            return ImageReadError(TRUNCATED, f"{path}: truncated PNM ({size} of {expected} bytes)")
    return None


# --------------------------------------------------------------------------- paths


def _path_problem(path: str) -> ImageReadError | None:
    """Why ``path`` is not a regular file one can open (None when it is one).

    Distinguishes a missing path, a dangling link, a link loop and something that exists
    but is no regular file (folder, FIFO, device). Permissions are left to ``open``.
    """
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return ImageReadError(SYMLINK_LOOP, f"{path}: symbolic link loop")
        if os.path.islink(path):
            try:
                target = os.readlink(path)
            except OSError:  # removed in the meantime
                target = "?"
            return ImageReadError(DANGLING_LINK, f"{path}: dangling link to {target}")
        if e.errno in (errno.ENOENT, errno.ENOTDIR) and not os.path.lexists(path):
            return ImageReadError(MISSING, f"{path}: no such file")
        return ImageReadError(UNREADABLE, f"{path}: cannot read file: {e.strerror or e}")
    if not stat.S_ISREG(st.st_mode):
        return ImageReadError(NOT_A_FILE, f"{path}: not a regular file ({_file_kind(st.st_mode)})")
    return None


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _os_error(path: str, error: OSError) -> ImageReadError:
    """The rejection for an OSError met while reading ``path``."""
    problem = _path_problem(path)
    if problem is not None:
        return problem
    return ImageReadError(UNREADABLE, f"{path}: cannot read file: {error.strerror or error}")


# --------------------------------------------------------------------------- decoding


def _to_rgb_or_grey(arr: np.ndarray, path: str, bgr: bool) -> np.ndarray:
    """Normalise a decoded array to (H, W) or (H, W, 3) RGB, uint8 or uint16."""
    if arr.ndim == 3:
        c = arr.shape[2]
        if c in (1, 2):  # grey, or grey + alpha
            arr = arr[:, :, 0]
        elif c in (3, 4):
            arr = arr[:, :, :3]
            if bgr:
                arr = arr[:, :, ::-1]
        else:
            raise ImageReadError(UNSUPPORTED_FORMAT, f"{path}: {c} channels not supported")
    elif arr.ndim != 2:
        raise ImageReadError(UNREADABLE, f"{path}: decoded to shape {arr.shape}")
    if arr.size == 0:
        raise ImageReadError(UNREADABLE, f"{path}: decoded to an empty image")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(
            UNSUPPORTED_FORMAT, f"{path}: pixel type {arr.dtype} (only 8/16-bit unsigned)"
        )
    return np.ascontiguousarray(arr)


def _decode_pillow(data: bytes, path: str) -> np.ndarray | None:
    """Fallback decoder for files OpenCV cannot read (unusual TIFF flavours)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            mode = im.mode
            if mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGB")
            elif mode == "1":
                im = im.convert("L")
            arr = np.asarray(im)
    except Exception:
        return None
    if mode == "I" or mode.startswith("I;16"):
        if arr.min() < 0 or arr.max() > 65535:
            return None
        arr = arr.astype(np.uint16)
    return arr


def _decode_bytes(data: bytes, path: str) -> np.ndarray:
    """Decode an image file's bytes (not CDF) into raw pixels; raises ImageReadError."""
    if not data:
        raise ImageReadError(EMPTY_FILE, f"{path}: empty file")
    fmt = detect_format(data[:16])
    if compression_of(data[:4]) is not None:
        raise ImageReadError(
            UNSUPPORTED_FORMAT, f"{path}: compressed file: only its stream0 frames (#NNNN) are read"
        )
    if fmt is None or fmt == "cdf":
        raise ImageReadError(UNSUPPORTED_FORMAT, f"{path}: not a supported image format")
    problem = _structural_problem(fmt, data[:_HEAD], data[-_TAIL:], len(data), path, data)
    if problem is not None:
        raise problem
    arr: np.ndarray | None
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        arr = None
    if arr is not None:
        return _to_rgb_or_grey(arr, path, bgr=True)
    arr = _decode_pillow(data, path)
    if arr is None:
        raise ImageReadError(UNREADABLE, f"{path}: corrupt {fmt.upper()} data (decoder failed)")
    return _to_rgb_or_grey(arr, path, bgr=False)


def read_image(record: ImageRecord) -> np.ndarray:
    """Read the raw pixels of one record.

    Args:
        record: the image (file, or frame of a CDF or THEMIS stream0 file).

    Returns:
        (H, W) or (H, W, 3) RGB array, dtype uint8 or uint16.

    Raises:
        ImageReadError: the input cannot become an image; ``.reason`` says why.
    """
    path = record.path
    try:
        if record.frame is not None:
            with open(path, "rb") as f:
                head = f.read(16)
            if not head:
                raise ImageReadError(EMPTY_FILE, f"{path}: empty file")
            fmt = detect_format(head)
            if fmt == "cdf":
                try:
                    return read_cdf_frame(path, record.frame)
                except CdfError as e:
                    reason = UNSUPPORTED_FORMAT if e.unsupported else UNREADABLE
                    raise ImageReadError(reason, str(e)) from e
            if fmt == "pnm" or compression_of(head) is not None:
                try:
                    return read_stream0_frame(path, record.frame)
                except Stream0Error as e:
                    raise ImageReadError(_stream0_reason(e), str(e)) from e
            raise ImageReadError(
                UNSUPPORTED_FORMAT, f"{path}: frame given but not a CDF or THEMIS stream0 file"
            )
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise _os_error(path, e) from e
    return _decode_bytes(data, path)


def _stream0_reason(error: Stream0Error) -> str:
    return error.reason if error.reason in REASONS else UNREADABLE


def _default_jobs() -> int:
    return max(1, os.cpu_count() or 1)


def load_images(
    records: Iterable[ImageRecord], jobs: int | None = None
) -> Iterator[tuple[ImageRecord, np.ndarray | Rejection]]:
    """Decode images in parallel threads, in input order; bad ones become rejections.

    At most ``4 * jobs`` images are in flight, so memory stays bounded for any number
    of records.

    Args:
        records: the images to decode.
        jobs: number of decoding threads (default: number of CPUs).

    Yields:
        ``(record, pixels)`` for a good image, ``(record, Rejection(record.id, reason,
        message))`` for a bad one, in the order of ``records``.
    """
    jobs = jobs or _default_jobs()

    def work(record: ImageRecord) -> np.ndarray | Rejection:
        try:
            return read_image(record)
        except ImageReadError as e:
            return Rejection(record.id, e.reason, str(e))

    if jobs == 1:
        for record in records:
            yield record, work(record)
        return
    window: deque[tuple[ImageRecord, Future[np.ndarray | Rejection]]] = deque()
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="aurora-decode") as pool:
        for record in records:
            window.append((record, pool.submit(work, record)))
            if len(window) >= 4 * jobs:
                rec, fut = window.popleft()
                yield rec, fut.result()
        while window:
            rec, fut = window.popleft()
            yield rec, fut.result()


# --------------------------------------------------------------------------- scanning


def _is_candidate(path: str, name: str) -> bool:
    """Whether a file found by walking a folder is an input (see module docstring)."""
    stem, ext = os.path.splitext(name.lower())
    if ext in COMPRESSED_EXTENSIONS:
        return os.path.splitext(stem)[1] in IMAGE_EXTENSIONS
    if ext in IMAGE_EXTENSIONS:
        return True
    if ext in IGNORED_EXTENSIONS or not os.path.isfile(path):
        return False  # (opening a FIFO would block)
    try:
        with open(path, "rb") as f:
            return detect_format(f.read(16)) is not None
    except OSError:
        return False


def _walk(root: str) -> list[str]:
    """All input files under ``root`` (absolute, normalised, sorted)."""
    out: list[str] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link loop or a folder reached twice through links
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            p = os.path.join(dirpath, name)
            if _is_candidate(p, name):
                out.append(p)
    return sorted(out)


def _read_list(list_file: Path) -> list[str]:
    """Paths named by a list file, resolved against its folder, duplicates removed."""
    try:
        text = list_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataSourceError(f"cannot read list file {list_file}: {e}") from e
    base = list_file.parent
    out: dict[str, None] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line).expanduser()
        out[os.path.normpath(os.path.abspath(p if p.is_absolute() else base / p))] = None
    return list(out)


def _is_pnm_stream(path: str, head: bytes, size: int) -> bool:
    """Whether an uncompressed Netpbm file holds more frames after its first one."""
    expected = _pnm_expected_size(head)
    if expected is None or size <= expected:
        return False
    try:
        with open(path, "rb") as f:
            f.seek(expected)
            return detect_format(f.read(3)) == "pnm"
    except OSError:
        return False


def _inspect(path: str) -> tuple[str, list[tuple[int | None, datetime | None]]] | ImageReadError:
    """Hash one input and check it cheaply.

    Returns:
        ``(sha256, frames)`` where ``frames`` lists ``(frame index or None, timestamp)``,
        or the ImageReadError that rejects the whole file.
    """
    h = hashlib.sha256()
    size = 0
    head = b""
    tail = b""
    problem = _path_problem(path)
    if problem is not None:
        return problem
    try:
        with open(path, "rb") as f:
            while block := f.read(_CHUNK):
                h.update(block)
                if size < _HEAD:
                    head = (head + block)[:_HEAD]
                tail = (tail + block)[-_TAIL:]
                size += len(block)
    except OSError as e:
        return _os_error(path, e)
    if size == 0:
        return ImageReadError(EMPTY_FILE, f"{path}: empty file")
    fmt = detect_format(head)
    if compression_of(head) is not None:
        return _inspect_stream0(path, h.hexdigest())
    if fmt is None:
        return ImageReadError(UNSUPPORTED_FORMAT, f"{path}: not a supported image format")
    if fmt == "cdf":
        try:
            times = cdf_frames(path)
        except CdfError as e:
            return ImageReadError(UNSUPPORTED_FORMAT if e.unsupported else UNREADABLE, str(e))
        if not times:
            return ImageReadError(UNREADABLE, f"{path}: CDF holds no frames")
        return h.hexdigest(), list(enumerate(times))
    problem = _structural_problem(fmt, head, tail, size, path)
    if problem is not None:
        return problem
    if fmt == "pnm":
        if _is_pnm_stream(path, head, size):
            return _inspect_stream0(path, h.hexdigest())
        ts = stream0_header_time(head)
        if ts is not None:
            return h.hexdigest(), [(None, ts)]
    return h.hexdigest(), [(None, parse_timestamp(os.path.basename(path)))]


def _inspect_stream0(
    path: str, digest: str
) -> tuple[str, list[tuple[int | None, datetime | None]]] | ImageReadError:
    """The frames of a THEMIS stream0 file (decoded once here, kept for ``read_image``)."""
    try:
        times = stream0_frames(path)
    except Stream0Error as e:
        return ImageReadError(_stream0_reason(e), str(e))
    return digest, list(enumerate(times))


def _resolve_inputs(root: Path) -> tuple[Path, list[str]]:
    """Data root and the input files of a folder, a list file or a single image."""
    if not root.exists():
        raise DataSourceError(f"data source not found: {root}")
    if root.is_dir():
        return root, _walk(str(root))
    if root.suffix.lower() in IMAGE_EXTENSIONS or _is_candidate(str(root), root.name):
        return root.parent, [str(root)]
    files = _read_list(root)
    if not files:
        return root.parent, []
    common = os.path.commonpath([str(root.parent), *(os.path.dirname(p) for p in files)])
    return Path(common), files


def scan(root: str | Path, jobs: int | None = None, progress: bool = False) -> Manifest:
    """Find, hash and check every input of a data set.

    Args:
        root: a folder (searched recursively), a text list file (one path per line,
            relative paths resolved against the list file's folder, blank lines and
            ``#`` comments ignored), or a single image file.
        jobs: threads for hashing (default: number of CPUs + 4, as the inputs are
            mostly I/O).
        progress: show a tqdm progress bar.

    Returns:
        The manifest: accepted records (originals) sorted by id, duplicates (by content
        hash; the first id in sorted order is the original) and rejections sorted by path.

    Raises:
        DataSourceError: the path is missing, the list file is unreadable, or there is
            no input at all.
    """
    given = Path(root).expanduser()
    root_path = Path(os.path.normpath(os.path.abspath(given)))
    data_root, files = _resolve_inputs(root_path)
    if not files:
        raise DataSourceError(f"no image files found in {given}")
    jobs = jobs or min(32, _default_jobs() + 4)

    results: Sequence[tuple[str, list[tuple[int | None, datetime | None]]] | ImageReadError]
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="aurora-scan") as pool:
        it = pool.map(_inspect, files)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, total=len(files), desc=f"scan {given}", unit="file")
        results = list(it)

    records: list[ImageRecord] = []
    rejected: list[Rejection] = []
    duplicates: dict[str, str] = {}
    originals: dict[str, tuple[str, list[int | None]]] = {}  # digest -> (id, frames)
    rels = [Path(os.path.relpath(path, data_root)).as_posix() for path in files]
    for rel, path, result in sorted(zip(rels, files, results, strict=True), key=lambda t: t[0]):
        if isinstance(result, ImageReadError):
            rejected.append(Rejection(rel, result.reason, str(result)))
            continue
        digest, frames = result
        indices = [frame for frame, _ in frames]
        if digest in originals and originals[digest][1] == indices:
            orig = originals[digest][0]
            for frame in indices:
                suffix = "" if frame is None else f"#{frame:04d}"
                duplicates[rel + suffix] = orig + suffix
            continue
        originals.setdefault(digest, (rel, indices))
        for frame, ts in frames:
            rid = rel if frame is None else f"{rel}#{frame:04d}"
            records.append(ImageRecord(rid, path, frame, ts, digest))
    records.sort(key=lambda r: r.id)
    rejected.sort(key=lambda r: r.path)
    return Manifest(root=data_root, records=records, rejected=rejected, duplicates=duplicates)
