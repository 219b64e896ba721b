"""A preprocessed store joined from the stores of a data set's shards (``mode=prepare``).

Each shard's manifest (:func:`aurora.data.scan_cache.scan_shard`) is preprocessed into its own
store by :func:`aurora.preprocess.build_preprocessed`; :func:`assemble_preprocessed` then writes
the whole data set's store from them, record by record, so that it is the entry a one-process
run would have written (same key, same bytes).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from aurora.data.sources import Manifest, Rejection
from aurora.infra.cache import Cache
from aurora.preprocess.config import PreprocessConfig
from aurora.preprocess.store import (
    CHUNK,
    STAGE,
    Item,
    PreprocessedStore,
    store_key,
    write_entry,
)


def assemble_preprocessed(
    manifest: Manifest,
    cfg: PreprocessConfig,
    cache_root: str | Path,
    parts: Sequence[PreprocessedStore],
    progress: bool = False,
) -> PreprocessedStore:
    """The store of ``manifest`` joined from the stores of its shards, without preprocessing.

    Each record of ``manifest`` is taken from the part that holds it (accepted there, or
    rejected by the chain there), so the entry is the one :func:`build_preprocessed` would
    have written. The parts' entries are left in the cache.

    Args:
        manifest: the whole data set.
        cfg: chain settings (those the parts were built with).
        cache_root: root folder of the cache.
        parts: the stores of the shards' manifests (together, every record of ``manifest``).
        progress: show a tqdm progress bar.

    Raises:
        RuntimeError: a record of ``manifest`` is in no part (the parts are not its shards).
    """
    cache = Cache(cache_root)
    key = store_key(manifest, cfg)
    if not cache.exists(STAGE, key):
        with cache.writing(STAGE, key) as tmp:
            write_entry(tmp, key, manifest, cfg, _from_parts(manifest, parts), progress)
    return PreprocessedStore(cache.path(STAGE, key), manifest)


def _from_parts(manifest: Manifest, parts: Sequence[PreprocessedStore]) -> Iterator[list[Item]]:
    """The items of ``manifest``'s records, read from the parts' entries, in chunks."""
    where: dict[str, tuple[int, int]] = {}
    rejected: dict[str, Rejection] = {}
    for p, part in enumerate(parts):
        where.update((i, (p, row)) for row, i in enumerate(part.ids))
        rejected.update((r.path, r) for r in part.chain_rejected or [])
    nan4 = (0.0, np.nan, np.nan, np.nan)
    chunk: list[Item] = []
    for index, rec in enumerate(manifest.records):
        if rec.id in where:
            p, row = where[rec.id]
            part = parts[p]
            chunk.append(
                (
                    index,
                    np.asarray(part.images[row]),
                    None,
                    "",
                    (float(part.moon[row]), *map(float, part.moon_xyr[row])),
                    tuple(map(float, part.circle[row])),
                    (float(part.glare[row]), *map(float, part.glare_xyr[row])),
                    bool(part.twilight[row]),
                )
            )
        elif rec.id in rejected:
            why = rejected[rec.id]
            nan3 = (np.nan, np.nan, np.nan)
            chunk.append((index, None, why.reason, why.detail, nan4, nan3, nan4, False))
        else:
            raise RuntimeError(f"{rec.id} is in none of the {len(parts)} preprocessed shards")
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
