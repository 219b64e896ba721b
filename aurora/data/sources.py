"""Image sources with full accounting: folders, list files, many formats, one manifest.

What counts as an input
    Decided by :mod:`aurora.data.inputs` (which files of a folder, a list file or a single
    image are inputs; its docstring gives the rules): a data set's ``labels.csv`` and
    ``PROVENANCE.md`` are not inputs, a text file named ``.jpg`` is one (and is rejected).

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
      by a list file; a FIFO, a device or a link to one found in a folder under an image
      name: the detail names the link's target).
    - ``empty file``: zero bytes.
    - ``unsupported format``: no supported signature (text, random bytes, GIF, FITS, a
      CDF without THEMIS images, pixels that are neither 8- nor 16-bit unsigned).
    - ``truncated``: a supported signature but the data stops early: JPEG without its
      end-of-image marker, PNG without ``IEND``, BMP or binary Netpbm shorter than its
      header says. A stream0 file cut short keeps its complete frames; the frame it stops
      in (``file#NNNN``) is rejected, its detail saying how many bytes are missing (the
      whole file only when not one frame is complete).
    - ``too large``: the header declares more pixels than ``data.max_pixels`` (default
      :data:`DEFAULT_MAX_PIXELS`, 100 Mpx); found from the header, before any pixel is
      decoded (a stream0 file that decompresses past 2048 frames likewise).
    - ``unreadable``: the file cannot be read (permissions, I/O error) or has a supported
      signature but the decoder fails on it (corrupt data; TIFF files and CDF frames,
      which have no end marker, also land here when cut short).

    ``scan`` finds the path problems, ``too large`` and the next three from the bytes it reads
    anyway for the content hash (and the CDF and stream0 files it cannot list);
    ``load_images`` decodes and reports the rest. The preprocessing chain adds its own
    reasons (``too small``, ``saturated``, ``too dark``, ``no sky circle``; see
    :mod:`aurora.preprocess`). Every input therefore ends as exactly one accepted record,
    one duplicate or one rejection (``n_inputs == len(records) + len(duplicates) +
    len(rejected)`` before decoding; decoding moves records to rejections, it never drops
    them).

File names
    Names are kept exactly as the file system gives them: a name that is not valid UTF-8
    (bytes such as ``bad\\377\\376name.jpg``) is decoded as Python does (``os.fsdecode``,
    lone surrogates for the bad bytes) and every CSV aurora writes encodes it back with
    ``surrogateescape``, so the original bytes round-trip: read such a CSV with
    ``open(path, encoding="utf-8", errors="surrogateescape")`` and ``os.fsencode(id)``
    gives the file's name. JSON files escape them (``\\udcff``), which reads back the same.

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

Modules
    This module scans what :mod:`aurora.data.inputs` finds (which files are inputs); the
    records, rejection reasons and :class:`Manifest` are in :mod:`aurora.data.manifest`,
    format signatures and completeness checks in :mod:`aurora.data.formats`, decoding
    (``read_image``, ``load_images``) in :mod:`aurora.data.decode`. Every public name of
    those three is importable from here.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from aurora.data.decode import (
    default_jobs,
    load_images,
    os_error,
    path_problem,
    read_image,
    stream0_reason,
)
from aurora.data.formats import (
    DEFAULT_MAX_PIXELS,
    HEAD_BYTES,
    TAIL_BYTES,
    detect_format,
    image_size,
    pnm_expected_size,
    structural_problem,
    too_large_detail,
)
from aurora.data.inputs import resolve_inputs
from aurora.data.manifest import (
    DANGLING_LINK,
    DUPLICATE,
    EMPTY_FILE,
    MISSING,
    NOT_A_FILE,
    REASONS,
    SYMLINK_LOOP,
    TOO_LARGE,
    TRUNCATED,
    UNREADABLE,
    UNSUPPORTED_FORMAT,
    DataSourceError,
    ImageReadError,
    ImageRecord,
    Manifest,
    Rejection,
    duplicate_detail,
    expand_duplicates,
    write_labels_csv,
    write_rejected_csv,
)
from aurora.data.themis import (
    CdfError,
    Stream0Error,
    cdf_frame_size,
    cdf_frames,
    compression_of,
    stream0_cut,
    stream0_frames,
    stream0_header_time,
)
from aurora.data.timestamps import parse_timestamp
from aurora.infra.logs import show_progress

__all__ = [
    "DANGLING_LINK",
    "DEFAULT_MAX_PIXELS",
    "DUPLICATE",
    "EMPTY_FILE",
    "MISSING",
    "NOT_A_FILE",
    "REASONS",
    "SYMLINK_LOOP",
    "TOO_LARGE",
    "TRUNCATED",
    "UNREADABLE",
    "UNSUPPORTED_FORMAT",
    "DataSourceError",
    "ImageReadError",
    "ImageRecord",
    "Inspected",
    "Manifest",
    "Rejection",
    "detect_format",
    "duplicate_detail",
    "expand_duplicates",
    "load_images",
    "parse_timestamp",
    "read_image",
    "scan",
    "write_labels_csv",
    "write_rejected_csv",
]

_CHUNK = 1 << 20  # bytes read at a time while hashing
# An input's (frame index or None, timestamp) pairs: one pair for a plain image.
Frames = list[tuple[int | None, datetime | None]]


class Inspected(NamedTuple):
    """What the scan learned of one readable input file (:func:`inspect_input`).

    Attributes:
        digest: SHA-256 of its bytes.
        frames: its images: ``(frame index or None, timestamp)`` pairs.
        size: (width, height) its header declares (of each frame of a multi-frame file), or
            None where the header does not say.
        cut: ``(frame index, reason, detail)`` of frames that are inputs but no image (the
            frame a stream0 file cut short stops in).
    """

    digest: str
    frames: Frames
    size: tuple[int, int] | None = None
    cut: tuple[tuple[int, str, str], ...] = ()


Result = Inspected | ImageReadError


def _is_pnm_stream(path: str, head: bytes, size: int) -> bool:
    """Whether an uncompressed Netpbm file holds more frames after its first one."""
    expected = pnm_expected_size(head)
    if expected is None or size <= expected:
        return False
    try:
        with open(path, "rb") as f:
            f.seek(expected)
            return detect_format(f.read(3)) == "pnm"
    except OSError:
        return False


def inspect_input(path: str) -> Result:
    """Hash one input and check it cheaply (its header's size included, not its pixels).

    Returns:
        The :class:`Inspected` file, or the ImageReadError that rejects the whole file.
    """
    h = hashlib.sha256()
    size = 0
    head = b""
    tail = b""
    problem = path_problem(path)
    if problem is not None:
        return problem
    try:
        with open(path, "rb") as f:
            while block := f.read(_CHUNK):
                h.update(block)
                if size < HEAD_BYTES:
                    head = (head + block)[:HEAD_BYTES]
                tail = (tail + block)[-TAIL_BYTES:]
                size += len(block)
    except OSError as e:
        return os_error(path, e)
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
        return Inspected(h.hexdigest(), list(enumerate(times)), cdf_frame_size(path))
    problem = structural_problem(fmt, head, tail, size, path)
    if problem is not None:
        return problem
    dims = image_size(fmt, head, path)
    if fmt == "pnm":
        if _is_pnm_stream(path, head, size):
            return _inspect_stream0(path, h.hexdigest())
        ts = stream0_header_time(head)
        if ts is not None:
            return Inspected(h.hexdigest(), [(None, ts)], dims)
    return Inspected(h.hexdigest(), [(None, parse_timestamp(os.path.basename(path)))], dims)


def _inspect_stream0(path: str, digest: str) -> Result:
    """The frames of a THEMIS stream0 file (decoded once here, kept for ``read_image``), and
    the frame it stops in when it is cut short."""
    try:
        times = stream0_frames(path)
        cut = stream0_cut(path)
    except Stream0Error as e:
        return ImageReadError(stream0_reason(e), str(e))
    bad = () if cut is None else ((cut[0], TRUNCATED, cut[1]),)
    return Inspected(digest, list(enumerate(times)), (256, 256), bad)


def scan(
    root: str | Path,
    jobs: int | None = None,
    progress: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Manifest:
    """Find, hash and check every input of a data set.

    Args:
        root: a folder (searched recursively), a text list file (one path per line,
            relative paths resolved against the list file's folder, blank lines and
            ``#`` comments ignored), or a single image file.
        jobs: threads for hashing (default: number of CPUs + 4, as the inputs are
            mostly I/O).
        progress: show a tqdm progress bar.
        max_pixels: an image whose header declares more pixels is rejected ``too large``
            (``data.max_pixels``), never decoded.

    Returns:
        The manifest: accepted records (originals) sorted by id, duplicates (by content
        hash; the first id in sorted order is the original) and rejections sorted by path.

    Raises:
        DataSourceError: the path is missing, the list file is unreadable, or there is
            no input at all.
    """
    given = Path(root).expanduser()
    root_path = Path(os.path.normpath(os.path.abspath(given)))
    data_root, files = resolve_inputs(root_path)
    if not files:
        raise DataSourceError(f"no image files found in {given}")
    results = inspect_inputs(files, jobs, progress, f"scan {given}")
    return assemble_manifest(data_root, files, results, max_pixels)


def inspect_inputs(
    files: Sequence[str], jobs: int | None = None, progress: bool = False, desc: str = "scan"
) -> list[Result]:
    """:func:`inspect_input` of each of ``files`` (in order), in ``jobs`` threads (default:
    CPUs + 4, the work is mostly I/O), with a progress bar labelled ``desc``."""
    jobs = jobs or min(32, default_jobs() + 4)
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="aurora-scan") as pool:
        it = pool.map(inspect_input, files)
        if show_progress(progress):  # on a terminal only
            from tqdm.auto import tqdm

            it = tqdm(it, total=len(files), desc=desc, unit="file")
        return list(it)


def assemble_manifest(
    data_root: Path,
    files: list[str],
    results: Sequence[Result],
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Manifest:
    """The manifest from each input file's inspection (``results[i]`` is ``files[i]``'s).

    Inputs are taken in id order, so the first of equal contents is the original. A file
    whose header declares more than ``max_pixels`` pixels is rejected ``too large`` (each
    copy of it too); the cut frames of a file are rejected by their own ids.
    """
    records: list[ImageRecord] = []
    rejected: list[Rejection] = []
    duplicates: dict[str, str] = {}
    originals: dict[str, tuple[str, list[int | None]]] = {}  # digest -> (id, frames)
    rels = [Path(os.path.relpath(path, data_root)).as_posix() for path in files]
    for rel, path, result in sorted(zip(rels, files, results, strict=True), key=lambda t: t[0]):
        if isinstance(result, ImageReadError):
            rejected.append(Rejection(rel, result.reason, str(result)))
            continue
        digest, frames, dims, cut = result
        detail = None if dims is None else too_large_detail(*dims, max_pixels)
        if detail is not None:
            rejected.append(Rejection(rel, TOO_LARGE, f"{path}: {detail}"))
            continue
        rejected += [Rejection(f"{rel}#{k:04d}", why, text) for k, why, text in cut]
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
