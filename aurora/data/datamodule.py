"""LightningDataModule over a (possibly memory-mapped) uint8 image array."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from aurora.infra.errors import AuroraError


class DataError(AuroraError, ValueError):
    """Images that cannot be used for training (wrong shape or dtype, too few)."""


@dataclass(frozen=True)
class LoaderConfig:
    """How batches are cut and loaded.

    Attributes:
        batch_size: images per batch (per device under DDP).
        num_workers: loader worker processes (0 = load in the main process).
        val_fraction: fraction of images held out for validation (at least 2 images; none
            when there are fewer than 4).
        pin_memory: pin host memory; None = only when CUDA is available.
        temporal_pair: 0: each item is one image (a model draws its two views from it);
            k > 0: each item is the image and another drawn uniformly from the images at most
            k rows away in the array (a store is in the order of its sorted names, which is
            time order for camera folders), so a contrastive model's two views are two moments
            of the sky a few frames apart.
    """

    batch_size: int = 256
    num_workers: int = 4
    val_fraction: float = 0.05
    pin_memory: bool | None = None
    temporal_pair: int = 0


class ImageArrayDataset(Dataset):
    """Float views of selected rows of a uint8 (N, S, S, 3) array, read lazily per item.

    Args:
        images: (N, S, S, 3) uint8 array; a ``np.memmap`` is never loaded whole.
        indices: rows of ``images`` that make up this dataset.
    """

    def __init__(self, images: np.ndarray, indices: np.ndarray) -> None:
        self.images = images
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor:
        """Image (3, S, S) float32 in [0, 1]."""
        img = np.asarray(self.images[self.indices[i]])
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


class TemporalPairDataset(ImageArrayDataset):
    """Pairs of float images: each selected row with a neighbour at most ``k`` rows away.

    The neighbour is drawn uniformly among the selected rows within ``k`` of the item's row
    (itself when it has none), from torch's generator (seeded per loader worker by Lightning).

    Args:
        images: (N, S, S, 3) uint8 array, rows in time order.
        indices: rows of ``images`` that make up this dataset.
        k: the largest row distance of a pair (> 0).
    """

    def __init__(self, images: np.ndarray, indices: np.ndarray, k: int) -> None:
        super().__init__(images, np.sort(np.asarray(indices, dtype=np.int64)))
        if k < 1:
            raise DataError(f"temporal pairs need k >= 1, got {k}")
        self.k = int(k)
        rows = self.indices
        # [lo[i], hi[i]) = positions of the selected rows within k of row i, itself excluded.
        self._lo = np.searchsorted(rows, rows - self.k, side="left")
        self._hi = np.searchsorted(rows, rows + self.k, side="right")

    def neighbour(self, i: int) -> int:
        """Position (in this dataset) of a random neighbour of item ``i`` (``i`` if none)."""
        lo, hi = int(self._lo[i]), int(self._hi[i])
        if hi - lo <= 1:
            return i
        j = lo + int(torch.randint(hi - lo - 1, (1,)).item())
        return j + 1 if j >= i else j

    def __getitem__(self, i: int) -> torch.Tensor:
        """Images (2, 3, S, S) float32 in [0, 1]: the item and its neighbour."""
        return torch.stack([super().__getitem__(i), super().__getitem__(self.neighbour(i))])


class EpochSeededSampler(Sampler[int]):
    """Shuffles with a permutation that depends only on (seed, epoch).

    Lightning calls ``set_epoch`` before every epoch, so a run resumed from a checkpoint sees
    the same order as an uninterrupted one (a plain shuffling loader draws from the global RNG,
    whose state is not in the checkpoint).
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random train/validation split of ``range(n)``, fixed by ``seed``.

    Returns:
        (sorted train indices, sorted validation indices); with ``val_fraction > 0``
        validation has at least 2 images, or none when fewer than 4 images are given.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if n < 2:
        raise DataError(f"{n} image(s): training needs at least 2")
    n_val = int(round(n * val_fraction))
    if val_fraction > 0:
        # A validation set of one image logs nothing (a batch of one has no negatives), so
        # it holds at least 2, or none when that would leave fewer than 2 for training.
        n_val = max(2, n_val)
        if n - n_val < 2:
            n_val = 0
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


class SkyDataModule(pl.LightningDataModule):
    """Train/validation loaders over preprocessed all-sky images.

    Args:
        images: (N, S, S, 3) uint8 array (memmap welcome), sky inside the inscribed circle.
        loader: batch size, workers, validation fraction, pinning.
        seed: fixes the split and the shuffling order.
    """

    def __init__(self, images: np.ndarray, loader: LoaderConfig = LoaderConfig(), seed: int = 0):
        super().__init__()
        if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2]:
            raise DataError(f"images must be (N, S, S, 3), got shape {images.shape}")
        if images.dtype != np.uint8:
            raise DataError(f"images must be uint8, got {images.dtype}")
        if loader.batch_size < 2:
            raise DataError(f"batch_size must be at least 2, got {loader.batch_size}")
        self.images = images
        self.loader = loader
        self.seed = seed
        self.train_idx, self.val_idx = split_indices(len(images), loader.val_fraction, seed)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def _kwargs(self) -> dict:
        pin = (
            torch.cuda.is_available() if self.loader.pin_memory is None else self.loader.pin_memory
        )
        workers = self.loader.num_workers
        return {
            "batch_size": self.loader.batch_size,
            "num_workers": workers,
            "pin_memory": pin,
            "persistent_workers": workers > 0,
        }

    def _dataset(self, indices: np.ndarray) -> Dataset:
        k = self.loader.temporal_pair
        if k:
            return TemporalPairDataset(self.images, indices, k)
        return ImageArrayDataset(self.images, indices)

    def train_dataloader(self) -> DataLoader:
        ds = self._dataset(self.train_idx)
        distributed = self.trainer is not None and self.trainer.world_size > 1
        sampler: Sampler[int]
        if distributed:
            sampler = DistributedSampler(
                ds,
                num_replicas=self.trainer.world_size,
                rank=self.trainer.global_rank,
                shuffle=True,
                seed=self.seed,
                drop_last=True,
            )
        else:
            sampler = EpochSeededSampler(len(ds), self.seed)
        # Full batches only (contrastive batches and BatchNorm want them), unless the
        # training set is smaller than one batch.
        drop_last = len(ds) >= self.loader.batch_size
        return DataLoader(ds, sampler=sampler, drop_last=drop_last, **self._kwargs())

    def val_dataloader(self) -> DataLoader | list:
        if len(self.val_idx) == 0:
            return []
        ds = self._dataset(self.val_idx)
        return DataLoader(ds, shuffle=False, **self._kwargs())
