"""The feature entries of the cache: read, write, and join from the shards of a data set.

An entry of stage ``features`` (key ``stable_hash(FORMAT, store key, extractor identity)``)::

    features.npy        (N, D) float32, rows in store order
    ids.json            the N image ids
    provenance.json     extractor identity, weights source, versions, how it was computed

:func:`aurora.extractors.extract_features` fills it from a store; :func:`assemble_features`
fills it from the entries of the stores of a data set's shards (``mode=prepare``), row by row
by image id.

The identity of a network with weights holds ``state_sha256``, the hash aurora computed of the
weights loaded in it (:func:`aurora.models.weights.state_dict_sha256`), never a hash a file
or a solution's manifest claims: two networks share an entry only when they hold the same
weights, and an entry is read only when the hash it records is the reader's
(:func:`aurora.extractors.feature_keys.weights_match`). The keys, names and matching rules live
in :mod:`aurora.extractors.feature_keys` (torch-free: the run's budget reads them too).
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from aurora.extractors.feature_keys import (
    FEATURES_FILE,
    FORMAT,
    IDS_FILE,
    PROVENANCE_FILE,
    STAGE,
    feature_key,
)
from aurora.infra.atomic import atomic_write_text
from aurora.infra.cache import Cache, stable_hash


class ImageStore(Protocol):
    """The part of :class:`aurora.preprocess.PreprocessedStore` used here."""

    key: str
    images: np.ndarray  # (N, S, S, 3) uint8, usually a memmap
    ids: list[str]

    def __len__(self) -> int: ...


@dataclass
class FeatureSet:
    """Features of every image of a store.

    Attributes:
        ids: the N image ids, in store order.
        features: (N, D) float32 (memory-mapped when loaded from the cache).
        key: cache key of the entry.
        provenance: the entry's provenance.json.
        path: folder of the cache entry.
    """

    ids: list[str]
    features: np.ndarray
    key: str
    provenance: dict[str, Any]
    path: Path


def load_feature_set(path: str | Path) -> FeatureSet:
    """Open a complete feature cache entry (features memory-mapped)."""
    path = Path(path)
    prov = json.loads((path / PROVENANCE_FILE).read_text())
    ids = json.loads((path / IDS_FILE).read_text())
    feats = np.load(path / FEATURES_FILE, mmap_mode="r")
    return FeatureSet(ids=ids, features=feats, key=path.name, provenance=prov, path=path)


def _versions() -> dict[str, str]:
    import timm
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
    }


def provenance_of(extractor: Any, identity: dict[str, Any]) -> dict[str, Any]:
    """What a feature entry records of its extractor (beside the identity)."""
    return {
        "extractor": identity,
        "extractor_details": dict(getattr(extractor, "provenance", dict)()),
        "random_init": identity.get("pretrained") is False,
        "preprocess": getattr(extractor, "preprocess", None),
    }


def write_feature_entry(
    cache_root: str | Path,
    store: ImageStore,
    identity: dict[str, Any],
    described: dict[str, Any],
    runtime: dict[str, Any],
    dim: int,
    blocks: Iterable[tuple[int, int, np.ndarray]],
) -> None:
    """Write the feature entry of ``store`` under ``identity`` from blocks of rows.

    Args:
        cache_root: root of the cache.
        store: the store the features belong to (its key and ids).
        identity: the extractor's identity (with the store key, the entry's key).
        described: :func:`provenance_of` the extractor.
        runtime: how the features were computed (not part of the key).
        dim: D, the feature size.
        blocks: ``(start, stop, (stop - start, D) float32)`` covering every row once.
    """
    n = len(store)
    key = feature_key(store.key, identity)
    provenance = {
        "stage": STAGE,
        "key": key,
        "format": FORMAT,
        "store_key": store.key,
        "n_images": n,
        "dim": dim,
        **described,
        "versions": _versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "runtime": runtime,
    }
    with Cache(cache_root).writing(STAGE, key) as tmp:
        out = np.lib.format.open_memmap(
            tmp / FEATURES_FILE, mode="w+", dtype=np.float32, shape=(n, dim)
        )
        for a, b, block in blocks:
            if block.shape != (b - a, dim):
                raise RuntimeError(f"features {key}: block {a}:{b} has shape {block.shape}")
            out[a:b] = block
        out.flush()
        del out
        atomic_write_text(tmp / IDS_FILE, json.dumps([str(i) for i in store.ids]))
        atomic_write_text(tmp / PROVENANCE_FILE, json.dumps(provenance, indent=2, default=str))


def assemble_features(
    store: ImageStore, parts: Sequence[FeatureSet], cache_root: str | Path
) -> FeatureSet:
    """The features of ``store`` joined from the features of its shards' stores.

    Each row is taken, by image id, from the part that holds it; the parts must have been
    computed by one extractor (the same identity). Their entries are left in the cache.

    Args:
        store: the whole data set's store (its rows: every part's rows, in store order).
        parts: the feature sets of the shards' stores (together, every image of ``store``).
        cache_root: root of the cache.

    Raises:
        RuntimeError: the parts disagree on the extractor, or an image is in no part.
    """
    identities = {stable_hash(p.provenance["extractor"]) for p in parts}
    if len(identities) != 1:
        raise RuntimeError(f"feature shards of {store.key} come from different extractors")
    first = parts[0].provenance
    identity = first["extractor"]
    key = feature_key(store.key, identity)
    cache = Cache(cache_root)
    if not cache.exists(STAGE, key):
        where = {i: (p, row) for p, part in enumerate(parts) for row, i in enumerate(part.ids)}
        missing = [i for i in store.ids if i not in where]
        if missing:
            raise RuntimeError(f"{missing[0]} is in none of the {len(parts)} feature shards")
        dim = int(parts[0].features.shape[1])

        def blocks(step: int = 4096) -> Iterable[tuple[int, int, np.ndarray]]:
            for a in range(0, len(store), step):
                rows = [where[i] for i in store.ids[a : a + step]]
                yield a, a + len(rows), np.stack([parts[p].features[r] for p, r in rows])

        described = {
            k: first[k]
            for k in ("extractor", "extractor_details", "random_init", "preprocess")
            if k in first
        }
        runtime = {**first.get("runtime", {}), "assembled_from_shards": len(parts)}
        write_feature_entry(cache_root, store, identity, described, runtime, dim, blocks())
    return load_feature_set(cache.path(STAGE, key))
