"""Batched feature extraction over a preprocessed store, with a sharded, resumable cache.

Layout under ``cache_root``::

    features/<key>/                 final entry (atomic, via Cache.writing)
        features.npy                (N, D) float32, rows in store order
        ids.json                    the N image ids
        provenance.json             extractor identity, weights source, versions, time
    features_shards/<key>-s<size>/  work in progress
        shard_00000.npy ...         (<= size, D) float32, each written by atomic rename

``key = stable_hash(FORMAT, store.key, extractor.identity())``: the store key covers the
manifest and the preprocess configuration, the identity covers the network and its weights
(``state_sha256``: the hash aurora computed of the weights loaded, see
:mod:`aurora.extractors.feature_store`); runtime knobs (batch size, device, workers, shard
size) are not part of it. A killed run
leaves only complete shard files behind, so the next call computes just the missing shards.

Multi-GPU (or multi-process): run one process per device with ``shard=(rank, world)`` (or
the environment variables ``RANK``/``LOCAL_RANK`` and ``WORLD_SIZE`` that torchrun and
Lightning set). Process ``rank`` computes shards ``rank, rank + world, ...`` and writes them;
only rank 0 assembles the final entry, and only once every shard is on disk. So: every rank
calls :func:`extract_features`, then a barrier, then rank 0 calls it again (pure assembly,
no network work). Calls that cannot assemble return ``None``.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from torch.utils.data import DataLoader, Dataset

from aurora.extractors.feature_keys import (
    SHARD_SIZE,
    SHARD_STAGE,
    STAGE,
    feature_key,
    weights_match,
)
from aurora.extractors.feature_store import (
    FeatureSet,
    ImageStore,
    load_feature_set,
    provenance_of,
    write_feature_entry,
)
from aurora.infra.atomic import atomic_save_npy
from aurora.infra.cache import Cache
from aurora.infra.errors import AuroraError
from aurora.infra.logs import show_progress

log = logging.getLogger("aurora")


@runtime_checkable
class Extractor(Protocol):
    """What :func:`extract_features` needs from a feature extractor."""

    input_size: int

    def identity(self) -> dict[str, Any]:
        """Everything that defines the features; no runtime knobs. A network with weights
        holds ``state_sha256``: the hash of the weights it loaded, computed by aurora."""
        ...

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float in [0, 1] -> (B, D) float."""
        ...


class StoreBatches(Dataset):
    """Lazy batches of a store: item ``i`` is the uint8 block of rows ``ranges[i]``.

    Reading a contiguous block of the memmap per item (instead of one image per item plus a
    collate) keeps the data path to one copy per batch.

    Args:
        images: (N, S, S, 3) uint8 array or memmap.
        ranges: (start, stop) row ranges, one per batch.
    """

    def __init__(self, images: np.ndarray, ranges: Sequence[tuple[int, int]]) -> None:
        self.images = images
        self.ranges = list(ranges)

    def __len__(self) -> int:
        return len(self.ranges)

    def __getitem__(self, i: int) -> torch.Tensor:
        start, stop = self.ranges[i]
        # A copy: memmap slices are read-only views, and workers hand batches between processes.
        return torch.from_numpy(np.array(self.images[start:stop]))


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> ``cuda:LOCAL_RANK`` when CUDA is available, else CPU."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def resolve_shard(shard: tuple[int, int] | None) -> tuple[int, int]:
    """(rank, world) from the argument or from RANK/LOCAL_RANK and WORLD_SIZE."""
    if shard is None:
        world = int(os.environ.get("WORLD_SIZE", 1))
        rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0)))
        shard = (rank, world) if world > 1 else (0, 1)
    rank, world = int(shard[0]), int(shard[1])
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"invalid extraction shard (rank={rank}, world={world})")
    return rank, world


def _shard_path(shard_dir: Path, s: int) -> Path:
    return shard_dir / f"shard_{s:05d}.npy"


def _shard_done(shard_dir: Path, s: int, rows: int) -> bool:
    p = _shard_path(shard_dir, s)
    if not p.is_file():
        return False
    try:
        arr = np.load(p, mmap_mode="r")
    except (ValueError, OSError):
        return False
    return arr.ndim == 2 and arr.shape[0] == rows and arr.dtype == np.float32


def _run_shards(
    images: np.ndarray,
    extractor: Extractor,
    shards: list[tuple[int, int, int]],
    shard_dir: Path,
    *,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    progress: bool,
) -> None:
    """Compute and write each (shard, start, stop) in ``shards``."""
    from tqdm.auto import tqdm

    ranges: list[tuple[int, int]] = []
    owner: list[int] = []  # index into ``shards`` of each batch
    for j, (_, start, stop) in enumerate(shards):
        for a in range(start, stop, batch_size):
            ranges.append((a, min(a + batch_size, stop)))
            owner.append(j)
    cuda = device.type == "cuda"
    loader = DataLoader(
        StoreBatches(images, ranges),
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=cuda,
        persistent_workers=False,
    )
    if isinstance(extractor, torch.nn.Module):
        extractor.to(device=device, memory_format=torch.channels_last).eval()
    bar = tqdm(
        total=sum(stop - start for _, start, stop in shards),
        desc="extract",
        unit="img",
        disable=not show_progress(progress),
    )
    # Outputs stay on the device until their shard is complete: no host sync per batch.
    parts: list[torch.Tensor] = []
    done = 0
    try:
        with torch.inference_mode():
            for j, block in zip(owner, loader, strict=True):
                # (B, S, S, 3) uint8 -> (B, 3, S, S) float in [0, 1] (as store.float_batch);
                # the permute of an NHWC block is already channels-last in memory.
                x = block.to(device, non_blocking=cuda).permute(0, 3, 1, 2).float()
                x = x.mul_(1.0 / 255.0)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                    parts.append(extractor(x))
                done += len(block)
                bar.update(len(block))
                s, start, stop = shards[j]
                if done == stop - start:
                    feats = torch.cat(parts).float().cpu().numpy()
                    atomic_save_npy(_shard_path(shard_dir, s), feats)
                    parts, done = [], 0
    finally:
        bar.close()


def extract_features(
    store: ImageStore,
    extractor: Extractor,
    cache_root: str | Path,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device = "auto",
    shard_size: int = SHARD_SIZE,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
) -> FeatureSet | None:
    """Features of every image of ``store``, from the cache or computed and cached.

    Args:
        store: preprocessed images (``key``, ``images`` (N, S, S, 3) uint8, ``ids``).
        extractor: maps (B, 3, S, S) float in [0, 1] to (B, D); does its own resize and
            normalisation.
        cache_root: root of the :class:`aurora.infra.cache.Cache`.
        batch_size: images per forward pass (not part of the cache key).
        num_workers: DataLoader worker processes (0 = read in the main process).
        device: ``auto`` (CUDA ``LOCAL_RANK`` if available, else CPU) or a torch device.
        shard_size: images per shard file; the unit of resumption.
        progress: show a tqdm bar.
        shard: ``(rank, world)`` for multi-process extraction (see module docstring);
            default from ``RANK``/``WORLD_SIZE``, else a single process.

    Returns:
        The :class:`FeatureSet` (N, D); ``None`` only for a sharded call that cannot assemble
        yet (rank > 0, or some other rank's shards are not finished).
    """
    if len(store) == 0:
        raise ValueError(f"preprocessed store {store.key} holds no images; nothing to extract")
    if shard_size < 1 or batch_size < 1:
        raise ValueError(f"shard_size ({shard_size}) and batch_size ({batch_size}) must be >= 1")
    identity = extractor.identity()
    key = feature_key(store.key, identity)
    cache = Cache(cache_root)
    found = _cached_entry(cache, key, identity)
    if found is not None:
        return found

    n = len(store)
    if len(store.ids) != n:
        raise ValueError(f"store {store.key} has {n} images but {len(store.ids)} ids")
    rank, world = resolve_shard(shard)
    bounds = [(s, a, min(a + shard_size, n)) for s, a in enumerate(range(0, n, shard_size))]
    shard_dir = cache.root / SHARD_STAGE / f"{key}-s{shard_size}"
    shard_dir.mkdir(parents=True, exist_ok=True)
    todo = [
        b for b in bounds if b[0] % world == rank and not _shard_done(shard_dir, b[0], b[2] - b[1])
    ]
    dev = resolve_device(device)
    if todo:
        _run_shards(
            store.images,
            extractor,
            todo,
            shard_dir,
            batch_size=batch_size,
            num_workers=num_workers,
            device=dev,
            progress=progress,
        )
    if rank != 0 or not all(_shard_done(shard_dir, s, b - a) for s, a, b in bounds):
        return None
    runtime = {
        "batch_size": batch_size,
        "device": str(dev),
        "num_workers": num_workers,
        "shard_size": shard_size,
        "world": world,
    }
    return _assemble(cache, store, extractor, identity, shard_dir, bounds, runtime=runtime)


def _cached_entry(cache: Cache, key: str, identity: dict[str, Any]) -> FeatureSet | None:
    """The cached feature entry ``key``, if it holds the extractor's weights.

    An entry that records other weights than ``identity`` is removed (computed again).
    """
    if not cache.exists(STAGE, key):
        return None
    found = load_feature_set(cache.path(STAGE, key))
    if weights_match(found.provenance, identity):
        return found
    log.warning(
        "feature entry %s records other weights than the extractor's: computing it again",
        key,
    )
    del found
    cache.remove(STAGE, key)
    return None


def _assemble(
    cache: Cache,
    store: ImageStore,
    extractor: Extractor,
    identity: dict[str, Any],
    shard_dir: Path,
    bounds: Sequence[tuple[int, int, int]],
    *,
    runtime: dict[str, Any],
) -> FeatureSet:
    """Join the finished shards into the final entry, then remove them.

    Args:
        cache: the feature cache.
        store: the preprocessed images.
        extractor: the extractor (its provenance is recorded).
        identity: its identity (part of the key).
        shard_dir: the shard files.
        bounds: (shard, first row, end row) of every shard, in row order.
        runtime: the runtime knobs recorded with the entry (not part of the key).

    Returns:
        The :class:`FeatureSet` (N, D) read back from the cache.
    """
    key = feature_key(store.key, identity)
    first = np.load(_shard_path(shard_dir, 0), mmap_mode="r")
    blocks = ((a, b, np.load(_shard_path(shard_dir, s), mmap_mode="r")) for s, a, b in bounds)
    try:
        write_feature_entry(
            cache.root,
            store,
            identity,
            provenance_of(extractor, identity),
            runtime,
            int(first.shape[1]),
            blocks,
        )
    except FileNotFoundError:
        # A concurrent process of the same extraction assembled first and removed the shards.
        if not cache.exists(STAGE, key):
            raise
    shutil.rmtree(shard_dir, ignore_errors=True)
    return load_feature_set(cache.path(STAGE, key))


def build_extractor(cfg: Any, **overrides: Any) -> Any:
    """Instantiate an ``extractor/`` group config, surfacing our own errors unwrapped.

    Hydra wraps every constructor error in ``InstantiationException``; an
    :class:`aurora.infra.errors.AuroraError` (missing weights, a bad checkpoint, a setting) is
    re-raised as itself so that callers can catch it by type and the user sees its one message.

    Args:
        cfg: the group config (``_target_`` and arguments, e.g. ``preprocess``).
        **overrides: constructor arguments to override (e.g. ``pretrained=False``).

    Returns:
        The extractor.
    """
    try:
        return instantiate(cfg, **overrides)
    except InstantiationException as err:
        if isinstance(err.__cause__, AuroraError):
            raise err.__cause__ from None
        raise
