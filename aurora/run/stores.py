"""The preprocessed images of a run: one store per (variant, size), and rows of several stores
read as one array."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aurora.data.sources import Manifest
from aurora.infra.errors import RunError
from aurora.infra.logs import stage
from aurora.preprocess import PreprocessConfig, PreprocessedStore, build_preprocessed


class StoreSet:
    """Preprocessed stores of one manifest, one per (preprocess variant, image size).

    Args:
        manifest: the scanned data set.
        variants: variant name -> preprocessing chain (sizes are overridden per request).
        cache_root: cache folder.
        jobs: worker processes.
    """

    def __init__(
        self,
        manifest: Manifest,
        variants: Mapping[str, PreprocessConfig],
        cache_root: str | Path,
        jobs: int | None,
    ) -> None:
        self.manifest = manifest
        self.variants = dict(variants)
        self.cache_root = Path(cache_root)
        self.jobs = jobs
        self._stores: dict[tuple[str, int], PreprocessedStore] = {}

    def get(self, variant: str, size: int) -> PreprocessedStore:
        """The store of ``variant`` at ``size`` px, built (or read from the cache) once."""
        if variant not in self.variants:
            raise RunError(
                f"unknown preprocess variant {variant!r}; configured: {sorted(self.variants)}"
            )
        key = (variant, int(size))
        if key not in self._stores:
            cfg = dataclasses.replace(self.variants[variant], size=int(size))
            with stage("preprocess") as st:
                store = build_preprocessed(self.manifest, cfg, self.cache_root, jobs=self.jobs)
                st["msg"] = (
                    f"{variant}@{size}px: {len(store)} accepted, {len(store.rejected)} rejected"
                    f" of {self.manifest.n_inputs} inputs"
                )
            self._stores[key] = store
        return self._stores[key]


class ImageRows:
    """Chosen rows of one or more (N_i, S, S, 3) image arrays, read lazily.

    Lets the report and the projector index the images of a run (possibly a million-image
    memory map plus a few reference images) without ever copying a whole store.

    Args:
        parts: (array, row indices into it) pairs, concatenated in order.
    """

    def __init__(self, parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        self.parts = [(a, np.asarray(r, dtype=np.int64)) for a, r in parts]
        self._offsets = np.cumsum([0] + [len(r) for _, r in self.parts])
        first = self.parts[0][0]
        self.shape = (int(self._offsets[-1]), *first.shape[1:])
        self.dtype = first.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[np.arange(len(self))]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, idx: Any) -> np.ndarray:
        if isinstance(idx, int | np.integer):
            return self[np.array([idx])][0]
        idx = np.arange(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx)
        out = np.empty((len(idx), *self.shape[1:]), self.dtype)
        part = np.searchsorted(self._offsets, idx, side="right") - 1
        for p, (arr, rows) in enumerate(self.parts):
            sel = np.flatnonzero(part == p)
            if sel.size:
                src = rows[idx[sel] - self._offsets[p]]
                order = np.argsort(src, kind="stable")  # memory maps read fastest in order
                out[sel[order]] = arr[src[order]]
        return out


def store_rows(store: PreprocessedStore, ids: Sequence[str]) -> np.ndarray:
    """(len(ids),) int64 rows of ``ids`` in ``store``."""
    pos = {i: k for k, i in enumerate(store.ids)}
    return np.array([pos[i] for i in ids], dtype=np.int64)
