"""A data set's scan, kept in the cache and done in shards.

A scan reads and hashes every input (:func:`aurora.data.sources.scan`), so a season of a
million files takes about as long to scan as to read once. Its results are kept in the cache
stage ``scan`` under the key of the data set's *listing*: the root and, per input file, its
path, size, modification and change times (a ``stat``, no read). A later run over the same
unchanged files reads none of them again; any new, removed, rewritten, renamed or re-permitted
file gives another key and a fresh scan.

In shards (``mode=prepare``): the sorted listing is cut into ``shards`` contiguous blocks;
shard ``i`` inspects block ``i`` only and keeps its results in stage ``scan_parts``. Once every
block's results are there, :func:`assemble_scan` joins them into the ``scan`` entry, which is
then exactly what a one-process scan would have stored (duplicates across blocks included).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from aurora.data.decode import default_jobs
from aurora.data.formats import DEFAULT_MAX_PIXELS
from aurora.data.inputs import resolve_inputs
from aurora.data.manifest import DataSourceError, ImageReadError, Manifest
from aurora.data.sources import Inspected, Result, assemble_manifest, inspect_inputs
from aurora.infra.atomic import atomic_write_text
from aurora.infra.cache import Cache, stable_hash

STAGE = "scan"
PART_STAGE = "scan_parts"
_VERSION = "aurora-scan-v2"  # v2: header sizes and cut frames
_RESULTS = "results.json"


@dataclass(frozen=True)
class Listing:
    """The input files of a data set, with what ``stat`` says of each.

    Attributes:
        data_root: the root the ids are relative to.
        files: (F,) absolute input paths, sorted.
        key: hash of the root and each file's path, size, mtime and ctime (``stat``).
        max_pixels: images whose header declares more are rejected ``too large`` when the
            manifest is assembled (``data.max_pixels``; not part of the key: the scan results
            hold each image's size, the limit is applied to them).
    """

    data_root: Path
    files: list[str]
    key: str
    max_pixels: int = DEFAULT_MAX_PIXELS

    def block(self, shard: int, shards: int) -> tuple[int, int]:
        """``[start, stop)`` of shard ``shard`` of ``shards`` contiguous blocks of ``files``."""
        n = len(self.files)
        return n * shard // shards, n * (shard + 1) // shards


def _stat(path: str) -> tuple[int, int, int] | str:
    """(size, mtime_ns, ctime_ns) of ``path`` (links followed), or why there is none."""
    try:
        st = os.stat(path)
    except OSError as err:
        return type(err).__name__
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


def list_inputs(root: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Listing:
    """The listing of a folder, list file or single image (stat only, no file is read).

    Args:
        root: the data set.
        max_pixels: ``data.max_pixels``, applied by every manifest made from the listing.

    Raises:
        DataSourceError: the path is missing or holds no input.
    """
    given = Path(root).expanduser()
    data_root, files = resolve_inputs(Path(os.path.normpath(os.path.abspath(given))))
    if not files:
        raise DataSourceError(f"no image files found in {given}")
    with ThreadPoolExecutor(max_workers=min(32, default_jobs() + 4)) as pool:
        stats = list(pool.map(_stat, files))  # a network file system answers many at once
    key = stable_hash(_VERSION, str(data_root), list(zip(files, stats, strict=True)))
    return Listing(data_root, list(files), key, max_pixels)


def _to_json(results: Sequence[Result]) -> list[Any]:
    out: list[Any] = []
    for r in results:
        if isinstance(r, ImageReadError):
            out.append({"reason": r.reason, "message": str(r)})
        else:
            out.append(
                {
                    "digest": r.digest,
                    "frames": [[f, None if t is None else t.isoformat()] for f, t in r.frames],
                    "size": None if r.size is None else list(r.size),
                    "cut": [list(c) for c in r.cut],
                }
            )
    return out


def _from_json(items: Sequence[dict[str, Any]]) -> list[Result]:
    out: list[Result] = []
    for item in items:
        if "reason" in item:
            out.append(ImageReadError(item["reason"], item["message"]))
        else:
            frames = [
                (f, None if t is None else datetime.fromisoformat(t)) for f, t in item["frames"]
            ]
            size = None if item["size"] is None else (int(item["size"][0]), int(item["size"][1]))
            cut = tuple((int(k), str(why), str(text)) for k, why, text in item["cut"])
            out.append(Inspected(item["digest"], frames, size, cut))
    return out


def _read(path: Path, n: int) -> list[Result]:
    items = json.loads((path / _RESULTS).read_text())
    if len(items) != n:
        raise RuntimeError(f"scan entry {path} holds {len(items)} results for {n} files")
    return _from_json(items)


def _write(cache: Cache, stage: str, key: str, results: Sequence[Result]) -> None:
    with cache.writing(stage, key) as tmp:
        atomic_write_text(tmp / _RESULTS, json.dumps(_to_json(results)))


def _part_key(listing: Listing, shard: int, shards: int) -> str:
    return stable_hash(listing.key, shard, shards)


def scan_cached(
    root: str | Path,
    cache_root: str | Path,
    jobs: int | None = None,
    progress: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Manifest:
    """:func:`aurora.data.sources.scan`, reusing the cached scan of the same unchanged files.

    Args:
        root: a folder, list file or single image.
        cache_root: the cache folder.
        jobs: threads for hashing.
        progress: show a tqdm progress bar.
        max_pixels: ``data.max_pixels`` (larger images are rejected ``too large``).
    """
    listing = list_inputs(root, max_pixels)
    cache = Cache(cache_root)
    if cache.exists(STAGE, listing.key):
        results = _read(cache.path(STAGE, listing.key), len(listing.files))
    else:
        results = inspect_inputs(listing.files, jobs, progress, f"scan {root}")
        _write(cache, STAGE, listing.key, results)
    return assemble_manifest(listing.data_root, listing.files, results, listing.max_pixels)


def _block_results(cache: Cache, listing: Listing, shard: int, shards: int) -> list[Result] | None:
    """The cached scan results of block ``shard`` (from the joined scan once there is one),
    or None before the block is scanned."""
    a, b = listing.block(shard, shards)
    if cache.exists(STAGE, listing.key):  # the shards' scans were joined already
        return _read(cache.path(STAGE, listing.key), len(listing.files))[a:b]
    key = _part_key(listing, shard, shards)
    if cache.exists(PART_STAGE, key):
        return _read(cache.path(PART_STAGE, key), b - a)
    return None


def scan_shard(
    listing: Listing,
    shard: int,
    shards: int,
    cache_root: str | Path,
    jobs: int | None = None,
    progress: bool = False,
) -> Manifest:
    """Scan block ``shard`` of ``shards`` of the listing (cached); its own manifest.

    The block's manifest holds the records of its files only (a duplicate of a file in
    another block is a record here), so that each block can be preprocessed on its own.
    """
    cache = Cache(cache_root)
    a, b = listing.block(shard, shards)
    files = listing.files[a:b]
    results = _block_results(cache, listing, shard, shards)
    if results is None:
        results = inspect_inputs(files, jobs, progress, f"scan shard {shard}/{shards}")
        _write(cache, PART_STAGE, _part_key(listing, shard, shards), results)
    return assemble_manifest(listing.data_root, files, results, listing.max_pixels)


def block_manifests(listing: Listing, shards: int, cache_root: str | Path) -> list[Manifest]:
    """The manifest of each of the ``shards`` blocks, from the joined scan (read once).

    Raises:
        FileNotFoundError: the blocks' scans are not joined yet (:func:`assemble_scan`).
    """
    cache = Cache(cache_root)
    if not cache.exists(STAGE, listing.key):
        raise FileNotFoundError(f"no joined scan {listing.key} under {cache_root}")
    results = _read(cache.path(STAGE, listing.key), len(listing.files))
    out = []
    for s in range(shards):
        a, b = listing.block(s, shards)
        out.append(
            assemble_manifest(
                listing.data_root, listing.files[a:b], results[a:b], listing.max_pixels
            )
        )
    return out


def missing_scan_shards(listing: Listing, shards: int, cache_root: str | Path) -> list[int]:
    """The shards of ``shards`` whose block has not been scanned yet."""
    cache = Cache(cache_root)
    return [s for s in range(shards) if not cache.exists(PART_STAGE, _part_key(listing, s, shards))]


def assemble_scan(listing: Listing, shards: int, cache_root: str | Path) -> Manifest | None:
    """The whole data set's manifest from the scans of its ``shards`` blocks.

    Writes the ``scan`` entry (the one :func:`scan_cached` reads); the blocks' entries stay
    until :func:`remove_scan_shards`.

    Returns:
        The manifest, or None while some block is not scanned yet.
    """
    cache = Cache(cache_root)
    if cache.exists(STAGE, listing.key):
        results = _read(cache.path(STAGE, listing.key), len(listing.files))
        return assemble_manifest(listing.data_root, listing.files, results, listing.max_pixels)
    if missing_scan_shards(listing, shards, cache_root):
        return None
    results: list[Result] = []
    for s in range(shards):
        a, b = listing.block(s, shards)
        results += _read(cache.path(PART_STAGE, _part_key(listing, s, shards)), b - a)
    _write(cache, STAGE, listing.key, results)
    return assemble_manifest(listing.data_root, listing.files, results, listing.max_pixels)


def remove_scan_shards(listing: Listing, shards: int, cache_root: str | Path) -> None:
    """Delete the blocks' scans once the ``scan`` entry holds them."""
    cache = Cache(cache_root)
    for s in range(shards):
        cache.remove(PART_STAGE, _part_key(listing, s, shards))
