"""Preprocess a whole data set once into an on-disk, memory-mapped array store.

An entry of the cache stage ``preprocess`` holds:

- ``images.u8``: raw (N, size, size, 3) uint8 RGB, C order (read back with ``np.memmap``);
- ``meta.npz``: ``moon`` (N,) bool, ``moon_xyr`` (N, 3) float32, ``circle`` (N, 3) float32,
  ``glare`` (N,) bool, ``glare_xyr`` (N, 3) float32, ``twilight`` (N,) bool;
- ``index.json``: key, shape, ids, paths, timestamps, rejections (``[id, reason, detail]``),
  duplicates, the configuration.

The entry is filled inside :meth:`aurora.infra.cache.Cache.writing`, so it only becomes visible (and
``exists``) once complete; a killed run leaves nothing that a later run would read as valid.
Images are decoded and preprocessed in worker processes over chunks of records and written
to the array in manifest order. Every manifest input ends in exactly one of ``ids``,
``duplicates`` (a duplicate of an image in ``ids``) or ``rejected`` (a duplicate of a rejected
image is rejected for its original's reason, with the detail ``duplicate of <original>``).

The entry's key is made from the manifest's records, not from its rejections and duplicates, so
a new copy or a new broken file re-uses it; the store opened by :func:`build_preprocessed`
therefore takes the scan rejections and the duplicates from the manifest it is given, and only
the chain's own rejections from the entry.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from aurora.data.decode import default_jobs
from aurora.data.sources import (
    ImageReadError,
    ImageRecord,
    Manifest,
    Rejection,
    duplicate_detail,
    read_image,
    scan,
)
from aurora.infra.atomic import atomic_save_npz
from aurora.infra.cache import Cache, stable_hash
from aurora.infra.logs import show_progress
from aurora.preprocess.chain import preprocess_image
from aurora.preprocess.config import BAD_IMAGE, PreprocessConfig, PreprocessError

STAGE = "preprocess"
#: Bumped whenever the chain's output changes for the same configuration.
# v7: too-dark details; v8: the why of `no sky circle` and `bad image` in the detail
STORE_VERSION = "preprocess-v8"
CHUNK = 16

# (record index, image or None, rejection reason or None, rejection detail, moon (4,),
#  circle (3,), glare (4,), twilight)
Item = tuple[
    int,
    np.ndarray | None,
    str | None,
    str,
    tuple[float, ...],
    tuple[float, ...],
    tuple[float, ...],
    bool,
]


class PreprocessedStore:
    """Preprocessed images of a data set, memory-mapped read-only from the cache.

    Attributes:
        key: cache key (manifest + preprocess configuration).
        path: the cache entry folder.
        images: (N, size, size, 3) uint8 RGB, read-only memory map.
        ids, paths: per image, from the manifest records.
        timestamps: per image, ``datetime`` or ``None``.
        moon: (N,) bool Moon detected.
        moon_xyr: (N, 3) float32 Moon centre and radius in original pixels (NaN when absent).
        circle: (N, 3) float32 sky circle (cx, cy, r) in original pixels.
        glare: (N,) bool saturated glare at the edge of the sky detected.
        glare_xyr: (N, 3) float32 glare centroid and equal-area radius (NaN when absent).
        twilight: (N,) bool the sky itself is bright (twilight, daylight, low Moon).
        rejected: every rejected input: the manifest's scan rejections, then unreadable ones
            and those rejected by the chain (e.g. ``"too dark"``), in manifest order, then
            the duplicates of those.
        duplicates: duplicate id -> original id (an id in ``ids``): inputs with the same
            content as an accepted image, which take its results
            (:func:`aurora.data.sources.expand_duplicates`).

    Args:
        path: the cache entry folder.
        manifest: the manifest the store is used for: its scan rejections and duplicates
            replace those recorded when the entry was built (the key does not cover them).
    """

    def __init__(self, path: str | Path, manifest: Manifest | None = None) -> None:
        self.path = Path(path)
        index = json.loads((self.path / "index.json").read_text())
        self.key: str = index["key"]
        self.size: int = index["size"]
        self.config: dict[str, Any] = index["config"]
        n = len(index["ids"])
        shape = (n, self.size, self.size, 3)
        if n:
            self.images = np.memmap(self.path / "images.u8", np.uint8, mode="r", shape=shape)
        else:
            self.images = np.zeros(shape, np.uint8)
            self.images.flags.writeable = False
        self.ids: list[str] = index["ids"]
        self.paths: list[str] = index["paths"]
        self.timestamps: list[datetime | None] = [
            None if t is None else datetime.fromisoformat(t) for t in index["timestamps"]
        ]
        #: the records rejected while decoding or preprocessing (not the scan's)
        self.chain_rejected: list[Rejection] | None = (
            [Rejection(*r) for r in index["chain_rejected"]] if "chain_rejected" in index else None
        )
        if manifest is None:
            self.rejected: list[Rejection] = [Rejection(*r) for r in index["rejected"]]
            self.duplicates: dict[str, str] = dict(index.get("duplicates", {}))
        else:
            if self.chain_rejected is not None:
                chain = self.chain_rejected
            else:  # an entry written before the chain's rejections were kept apart
                scanned = {r.path for r in manifest.rejected}
                chain = [Rejection(*r) for r in index["rejected"] if r[0] not in scanned]
            self.rejected, self.duplicates = _account(manifest, self.ids, chain)
        with np.load(self.path / "meta.npz") as meta:
            self.moon: np.ndarray = meta["moon"]
            self.moon_xyr: np.ndarray = meta["moon_xyr"]
            self.circle: np.ndarray = meta["circle"]
            n_meta = len(self.moon)
            # Entries written before glare and twilight were recorded have neither.
            self.glare: np.ndarray = meta["glare"] if "glare" in meta else np.zeros(n_meta, bool)
            self.glare_xyr: np.ndarray = (
                meta["glare_xyr"]
                if "glare_xyr" in meta
                else np.full((n_meta, 3), np.nan, np.float32)
            )
            self.twilight: np.ndarray = (
                meta["twilight"] if "twilight" in meta else np.zeros(n_meta, bool)
            )

    def __len__(self) -> int:
        return len(self.ids)

    def float_batch(self, idx: Sequence[int] | np.ndarray | slice) -> np.ndarray:
        """Images ``idx`` as (B, size, size, 3) float32 in [0, 1]."""
        return np.asarray(self.images[idx], dtype=np.float32) * np.float32(1.0 / 255.0)

    def __repr__(self) -> str:
        return (
            f"PreprocessedStore(key={self.key!r}, n={len(self)}, "
            f"duplicates={len(self.duplicates)}, rejected={len(self.rejected)})"
        )


def _account(
    manifest: Manifest, ids: Sequence[str], chain: list[Rejection]
) -> tuple[list[Rejection], dict[str, str]]:
    """Rejections and duplicates of a store of ``manifest`` with images ``ids``.

    Args:
        manifest: the data set (records, scan rejections, duplicates).
        ids: the ids of the accepted images.
        chain: the records rejected while decoding or preprocessing.

    Returns:
        ``(rejected, duplicates)``: scan rejections, ``chain``, then the duplicates of
        rejected originals (same reason, detail ``duplicate of <original>``); and the
        duplicates of accepted images.

    Raises:
        RuntimeError: when the inputs do not add up (a bug, never bad data).
    """
    accepted = set(ids)
    by_id = {r.path: r for r in chain}
    rejected = [*manifest.rejected, *chain]
    duplicates: dict[str, str] = {}
    for dup, orig in sorted(manifest.duplicates.items()):
        if orig in accepted:
            duplicates[dup] = orig
        elif orig in by_id:
            why = by_id[orig]
            detail = duplicate_detail(orig) + (f": {why.detail}" if why.detail else "")
            rejected.append(Rejection(dup, why.reason, detail))
        else:
            raise RuntimeError(f"duplicate {dup} of {orig}, which is neither accepted nor rejected")
    if len(ids) + len(duplicates) + len(rejected) != manifest.n_inputs:
        raise RuntimeError(
            f"preprocess accounting broken: {len(ids)} images + {len(duplicates)} duplicates + "
            f"{len(rejected)} rejected != {manifest.n_inputs} inputs"
        )
    return rejected, duplicates


def store_key(manifest: Manifest, cfg: PreprocessConfig) -> str:
    """Cache key of the store of ``manifest`` under ``cfg``."""
    return stable_hash(STORE_VERSION, manifest.key, cfg)


def open_store(cache_root: str | Path, key: str) -> PreprocessedStore:
    """Open a complete store entry by key.

    Raises:
        FileNotFoundError: when the entry does not exist (or is incomplete).
    """
    cache = Cache(cache_root)
    if not cache.exists(STAGE, key):
        raise FileNotFoundError(f"no complete preprocessed store {key} under {cache_root}")
    return PreprocessedStore(cache.path(STAGE, key))


def _process(index: int, record: ImageRecord, cfg: PreprocessConfig) -> Item:
    nan4 = (0.0, np.nan, np.nan, np.nan)
    nan3 = (np.nan, np.nan, np.nan)
    try:
        raw = read_image(record)
    except ImageReadError as err:
        return index, None, err.reason, str(err), nan4, nan3, nan4, False
    try:
        res = preprocess_image(raw, cfg)
    except PreprocessError as err:
        return index, None, BAD_IMAGE, str(err), nan4, nan3, nan4, False
    m, c, g = res.moon, res.circle, res.glare
    return (
        index,
        res.image,
        res.rejected,
        res.detail or "",
        (float(m.present), m.x, m.y, m.r),
        (c.cx, c.cy, c.r),
        (float(g.present), g.x, g.y, g.r),
        res.twilight,
    )


def _process_chunk(args: tuple[int, list[ImageRecord], PreprocessConfig]) -> list[Item]:
    start, records, cfg = args
    return [_process(start + i, rec, cfg) for i, rec in enumerate(records)]


def _results(records: list[ImageRecord], cfg: PreprocessConfig, jobs: int) -> Iterator[list[Item]]:
    tasks = [(i, records[i : i + CHUNK], cfg) for i in range(0, len(records), CHUNK)]
    if jobs <= 1 or len(tasks) <= 1:
        yield from map(_process_chunk, tasks)
        return
    with mp.get_context("fork").Pool(min(jobs, len(tasks))) as pool:
        yield from pool.imap(_process_chunk, tasks)


def build_preprocessed(
    manifest: Manifest,
    cfg: PreprocessConfig,
    cache_root: str | Path,
    jobs: int | None = None,
    progress: bool = True,
) -> PreprocessedStore:
    """Preprocess every image of ``manifest`` once; later calls reuse the cached store.

    Args:
        manifest: the data set (records and scan rejections).
        cfg: chain settings.
        cache_root: root folder of the cache.
        jobs: worker processes (default: number of CPUs; 1 runs in this process).
        progress: show a tqdm progress bar.

    Returns:
        The store, memory-mapped from the cache entry, with the scan rejections and the
        duplicates of ``manifest``.
    """
    cache = Cache(cache_root)
    key = store_key(manifest, cfg)
    if not cache.exists(STAGE, key):
        records = list(manifest.records)
        with cache.writing(STAGE, key) as tmp:
            write_entry(
                tmp, key, manifest, cfg, _results(records, cfg, jobs or default_jobs()), progress
            )
    return PreprocessedStore(cache.path(STAGE, key), manifest)


def prepare_images(
    data_root: str | Path,
    preprocess_cfg: PreprocessConfig,
    cache_root: str | Path,
    jobs: int | None = None,
    progress: bool = True,
) -> PreprocessedStore:
    """Scan a folder (or list file) and preprocess it into the cache.

    Args:
        data_root: image folder (recursive) or text file listing images.
        preprocess_cfg: the preprocessing chain.
        cache_root: cache folder.
        jobs: worker processes (None = all cores).
        progress: show progress bars.

    Returns:
        The preprocessed store; every input is in ``store.ids`` or ``store.rejected``.
    """
    manifest = scan(data_root, jobs=jobs, progress=progress)
    return build_preprocessed(manifest, preprocess_cfg, cache_root, jobs=jobs, progress=progress)


def write_entry(
    tmp: Path,
    key: str,
    manifest: Manifest,
    cfg: PreprocessConfig,
    items: Iterable[list[Item]],
    progress: bool,
) -> None:
    """Fill the entry folder ``tmp`` of the store ``key`` from the records' items."""
    records = list(manifest.records)
    size = cfg.size
    ids: list[str] = []
    paths: list[str] = []
    stamps: list[str | None] = []
    moon: list[tuple[float, ...]] = []
    circle: list[tuple[float, ...]] = []
    glare: list[tuple[float, ...]] = []
    twilight: list[bool] = []
    chain: list[Rejection] = []
    bar = tqdm(
        total=len(records), desc="preprocess", unit="img", disable=not show_progress(progress)
    )
    with open(tmp / "images.u8", "wb") as f:
        for chunk in items:
            for i, image, reason, detail, m, c, g, tw in chunk:
                rec = records[i]
                if image is None:
                    chain.append(Rejection(rec.id, reason or "rejected", detail))
                    continue
                assert image.shape == (size, size, 3) and image.dtype == np.uint8
                f.write(np.ascontiguousarray(image).tobytes())
                ids.append(rec.id)
                paths.append(str(rec.path))
                stamps.append(None if rec.timestamp is None else rec.timestamp.isoformat())
                moon.append(m)
                circle.append(c)
                glare.append(g)
                twilight.append(tw)
            bar.update(len(chunk))
    bar.close()
    rejected, duplicates = _account(manifest, ids, chain)
    moon_arr = np.asarray(moon, np.float32).reshape(-1, 4)
    glare_arr = np.asarray(glare, np.float32).reshape(-1, 4)
    atomic_save_npz(
        tmp / "meta.npz",
        moon=moon_arr[:, 0] > 0.5,
        moon_xyr=moon_arr[:, 1:],
        circle=np.asarray(circle, np.float32).reshape(-1, 3),
        glare=glare_arr[:, 0] > 0.5,
        glare_xyr=glare_arr[:, 1:],
        twilight=np.asarray(twilight, bool).reshape(-1),
    )
    index = {
        "key": key,
        "version": STORE_VERSION,
        "manifest_key": manifest.key,
        "size": size,
        "config": asdict(cfg),
        "ids": ids,
        "paths": paths,
        "timestamps": stamps,
        "rejected": [[r.path, r.reason, r.detail] for r in rejected],
        "chain_rejected": [[r.path, r.reason, r.detail] for r in chain],
        "duplicates": duplicates,
    }
    (tmp / "index.json").write_text(json.dumps(index))
