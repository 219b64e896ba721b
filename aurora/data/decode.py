"""Decoding: one record to its stored pixels (``read_image``), many in threads (``load_images``).

Also why a path cannot be read at all (missing, dangling link, link loop, not a regular
file), shared with the scan. Pixels come back as stored: (H, W) or (H, W, 3) in RGB order,
uint8 or uint16, alpha dropped, EXIF orientation not applied.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import cv2
import numpy as np

from aurora.data.formats import (
    HEAD_BYTES,
    TAIL_BYTES,
    detect_format,
    image_size,
    structural_problem,
    too_large_detail,
)
from aurora.data.manifest import (
    DANGLING_LINK,
    EMPTY_FILE,
    MISSING,
    NOT_A_FILE,
    REASONS,
    SYMLINK_LOOP,
    TOO_LARGE,
    UNREADABLE,
    UNSUPPORTED_FORMAT,
    ImageReadError,
    ImageRecord,
    Rejection,
)
from aurora.data.themis import (
    CdfError,
    Stream0Error,
    compression_of,
    read_cdf_frame,
    read_stream0_frame,
)


def path_problem(path: str) -> ImageReadError | None:
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
        kind = _file_kind(st.st_mode)
        if os.path.islink(path):  # name what it leads to: the link itself exists
            kind = f"a link to {os.path.realpath(path)}, {kind}"
        return ImageReadError(NOT_A_FILE, f"{path}: not a regular file ({kind})")
    return None


def _file_kind(mode: int) -> str:
    """What a path that is no regular file is, from its ``st_mode``."""
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


def os_error(path: str, error: OSError) -> ImageReadError:
    """The rejection for an OSError met while reading ``path``."""
    problem = path_problem(path)
    if problem is not None:
        return problem
    return ImageReadError(UNREADABLE, f"{path}: cannot read file: {error.strerror or error}")


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


def _decode_bytes(data: bytes, path: str, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image file's bytes (not CDF) into raw pixels; raises ImageReadError.

    With ``max_pixels``, an image whose header declares more pixels is refused (``too large``)
    before any pixel array is made.
    """
    if not data:
        raise ImageReadError(EMPTY_FILE, f"{path}: empty file")
    fmt = detect_format(data[:16])
    if compression_of(data[:4]) is not None:
        raise ImageReadError(
            UNSUPPORTED_FORMAT, f"{path}: compressed file: only its stream0 frames (#NNNN) are read"
        )
    if fmt is None or fmt == "cdf":
        raise ImageReadError(UNSUPPORTED_FORMAT, f"{path}: not a supported image format")
    problem = structural_problem(fmt, data[:HEAD_BYTES], data[-TAIL_BYTES:], len(data), path, data)
    if problem is not None:
        raise problem
    if max_pixels is not None:
        size = image_size(fmt, data)
        detail = None if size is None else too_large_detail(*size, max_pixels)
        if detail is not None:
            raise ImageReadError(TOO_LARGE, f"{path}: {detail}")
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


def read_image(record: ImageRecord, max_pixels: int | None = None) -> np.ndarray:
    """Read the raw pixels of one record.

    Args:
        record: the image (file, or frame of a CDF or THEMIS stream0 file).
        max_pixels: refuse (``too large``) an image whose header declares more pixels, before
            decoding it; None = no check here (a scan's records were checked by the scan).

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
                    raise ImageReadError(stream0_reason(e), str(e)) from e
            raise ImageReadError(
                UNSUPPORTED_FORMAT, f"{path}: frame given but not a CDF or THEMIS stream0 file"
            )
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise os_error(path, e) from e
    return _decode_bytes(data, path, max_pixels)


def stream0_reason(error: Stream0Error) -> str:
    """The rejection reason of a stream0 error (one of :data:`REASONS`)."""
    return error.reason if error.reason in REASONS else UNREADABLE


def default_jobs() -> int:
    """Default number of workers: the CPUs this process may run on (a SLURM job's allocation,
    not the whole node)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without affinity (macOS)
        return max(1, os.cpu_count() or 1)


def load_images(
    records: Iterable[ImageRecord], jobs: int | None = None, max_pixels: int | None = None
) -> Iterator[tuple[ImageRecord, np.ndarray | Rejection]]:
    """Decode images in parallel threads, in input order; bad ones become rejections.

    At most ``4 * jobs`` images are in flight, so memory stays bounded for any number
    of records.

    Args:
        records: the images to decode.
        jobs: number of decoding threads (default: number of CPUs).
        max_pixels: refuse larger images before decoding them (:func:`read_image`).

    Yields:
        ``(record, pixels)`` for a good image, ``(record, Rejection(record.id, reason,
        message))`` for a bad one, in the order of ``records``.
    """
    jobs = jobs or default_jobs()

    def work(record: ImageRecord) -> np.ndarray | Rejection:
        try:
            return read_image(record, max_pixels)
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
