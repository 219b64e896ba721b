"""Peak memory and new disk of each stage of a run (:func:`estimate_stages`), with the cache
lookups that make a stage whose entries already exist write nothing."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from aurora.data.sources import Manifest
from aurora.infra.cache import Cache
from aurora.infra.config import UNSET
from aurora.run.budget.extractors import (
    FALLBACK_DIM,
    ExtractorFigures,
    describe_extractor,
    reduced_dim,
)
from aurora.run.budget.grid import fusion_memory, grid_memory
from aurora.run.budget.model import (
    BOOKKEEPING_BYTES_PER_IMAGE,
    EMBEDDING_ITEMSIZE,
    FUSION_BYTES_PER_LABEL,
    INFER_ACTIVATION_BYTES_PER_PIXEL,
    LABELS_CSV_BYTES_PER_IMAGE,
    PREPROCESS_WORKER_BYTES,
    REPORT_FIXED_DISK,
    RUN_BASE_BYTES,
    SKLEARN_WORKING_MEMORY,
    STAGES,
    Part,
    StageEstimate,
    describe_parts,
    gb,
    largest,
)
from aurora.run.settings import RunSettings

#: The cache stage of features (aurora.extractors.inference.STAGE; that module imports torch).
FEATURES_STAGE = "features"
#: Images per feature shard (aurora.extractors.inference's default).
SHARD_SIZE = 4096


def _store_exists(
    manifest: Manifest, variant: Mapping[str, Any] | None, size: int, cache: Cache
) -> tuple[bool, str | None]:
    """(whether the store of ``variant`` at ``size`` px is in the cache, its key)."""
    if variant is None:
        return False, None
    from hydra.utils import instantiate

    from aurora.preprocess.store import STAGE, store_key

    cfg = dataclasses.replace(instantiate(dict(variant)), size=int(size))
    key = store_key(manifest, cfg)
    return cache.exists(STAGE, key), key


def _cached_features(cache: Cache) -> Iterator[dict[str, Any]]:
    """The provenance of every complete feature entry of the cache."""
    root = cache.root / FEATURES_STAGE
    if not root.is_dir():
        return
    for entry in root.iterdir():
        if cache.exists(FEATURES_STAGE, entry.name):
            try:
                yield json.loads((entry / "provenance.json").read_text())
            except (OSError, ValueError):
                continue


def _features_cached(
    ext: ExtractorFigures,
    store_key: str | None,
    ckpt: str | None,
    found: Sequence[dict[str, Any]],
) -> bool:
    """Whether a feature entry of this extractor on this store is in the cache."""
    if store_key is None:
        return False
    for prov in found:
        if prov.get("store_key") != store_key:
            continue
        ident = prov.get("extractor") or {}
        if (prov.get("extractor_details") or {}).get("weights_source") == "solution":
            continue  # a solution's network: its entries are keyed by its own weights
        if "model_name" in ext.node:
            pretrained = bool(ext.node.get("pretrained", True))
            if ident.get("model_name") == ext.node["model_name"] and (
                bool(ident.get("pretrained")) == pretrained
            ):
                return True
        elif ckpt is not None:
            details = prov.get("extractor_details") or {}
            same_views = bool(ident.get("dihedral", False)) == bool(ext.node.get("dihedral"))
            if str(details.get("ckpt_path")) == str(ckpt) and same_views:
                return True
    return False


def _grid_nodes(settings: RunSettings, axis: str) -> dict[str, Any]:
    """The configured nodes of grid axis ``axis`` (``reducers``, ``clusterers``) the grid runs."""
    configured = getattr(settings, axis)
    return {k: configured[k] for k in settings.grid.axis(axis, configured) if k in configured}


def estimate_stages(
    manifest: Manifest,
    settings: RunSettings,
    extractor_names: Sequence[str],
    n_cells: int,
) -> list[StageEstimate]:
    """Peak memory and new disk of each stage of a run on ``manifest``.

    Args:
        manifest: the scanned data set (n = its candidate images).
        settings: the run's settings.
        extractor_names: the extractors the run computes.
        n_cells: grid cells of the run (1 for a sweep job; 0 = no grid, fusion or report:
            ``mode=prepare``).

    Returns:
        One :class:`StageEstimate` per stage, in run order (:data:`STAGES`).
    """
    from aurora.data.decode import default_jobs
    from aurora.run.features import training_key

    n = len(manifest.records)
    cache = Cache(settings.cache_dir)
    exts = [describe_extractor(settings, name) for name in extractor_names]
    stores = {(e.variant, e.size) for e in exts}
    keep = BOOKKEEPING_BYTES_PER_IMAGE * n
    base = RUN_BASE_BYTES + keep

    # preprocess: one uint8 array per (variant, size)
    new_stores, store_keys = [], {}
    for variant, size in sorted(stores):
        exists, key = _store_exists(manifest, settings.preprocess.get(variant), size, cache)
        store_keys[(variant, size)] = key
        if not exists:
            new_stores.append((variant, size))
    jobs = settings.jobs or default_jobs()
    pre_disk = sum(n * s * s * 3 for _, s in new_stores)
    pre_mem = base + (jobs * PREPROCESS_WORKER_BYTES if new_stores else 0)
    pre = StageEstimate(
        "preprocess",
        pre_mem,
        pre_disk,
        (
            f"{len(new_stores)} new of {len(stores)} stores: "
            + ", ".join(f"{v} {n:,} x {s}x{s}x3 uint8" for v, s in new_stores)
            + f"; {jobs} workers"
            if new_stores
            else f"all {len(stores)} stores cached"
        ),
        memory_key="jobs",
    )

    # train: our own encoders without a checkpoint
    tr = settings.train
    loader_batch = int(tr.loader.get("batch_size", 128))
    workers = int(tr.loader.get("num_workers", 0) or 0)
    on_cpu = str(tr.trainer.get("accelerator", "cpu")) == "cpu"
    train_mem, train_disk, trained, ckpts = 0, 0, [], {}
    for e in exts:
        if e.trains is None:
            continue
        key = training_key(
            store_keys[(e.variant, e.size)] or "",
            tr.models[e.trains],
            tr.trainer,
            tr.loader,
            settings.seed,
            tr.callbacks,
        )
        ckpts[e.name] = str(cache.path("train", key) / "model.ckpt")
        if store_keys[(e.variant, e.size)] is not None and cache.exists("train", key):
            continue
        pixels = e.size * e.size
        act = loader_batch * pixels * e.activation if on_cpu else 0
        loader_bytes = (workers + 1) * 2 * loader_batch * pixels * 3 * 4
        train_mem = max(train_mem, base + 16 * e.params + act + loader_bytes)
        train_disk += 2 * 12 * e.params  # best and last checkpoint: weights + 2 moments
        trained.append(f"{e.trains} ({e.params / 1e6:.1f}M params, batch {loader_batch})")
    train = StageEstimate(
        "train",
        train_mem,
        train_disk,
        (
            "; ".join(trained) + ("" if on_cpu else ", activations on the GPU")
            if trained
            else "nothing to train"
        ),
        memory_key="train.loader.batch_size",
    )

    # extract: (n, D) float32 per extractor, shards beside the entry being assembled
    found = list(_cached_features(cache))
    ex = settings.extract
    ex_mem, ex_sizes, ex_names = 0, [], []
    for e in exts:
        ckpt = ckpts.get(e.name) or (
            None if e.node.get("ckpt_path") in (None, UNSET) else e.node["ckpt_path"]
        )
        if _features_cached(e, store_keys[(e.variant, e.size)], ckpt, found):
            continue
        pixels = e.size * e.size
        batches = (int(ex.num_workers) + 2) * ex.batch_size * pixels * 3 * (1 + 4)
        act = ex.batch_size * pixels * INFER_ACTIVATION_BYTES_PER_PIXEL
        shard = SHARD_SIZE * e.dim * 4
        ex_mem = max(ex_mem, base + 4 * e.params + batches + act + shard)
        ex_sizes.append(n * e.dim * 4)
        ex_names.append(f"{e.name} {n:,}x{e.dim}")
    extract = StageEstimate(
        "extract",
        ex_mem,
        sum(ex_sizes) + max(ex_sizes, default=0),
        (
            "float32 " + ", ".join(ex_names) + " (+ shards of the largest)"
            if ex_names
            else "all features cached"
        ),
        memory_key="extract.batch_size",
    )

    # grid
    dims = {e.name: e.dim for e in exts}
    reducers = _grid_nodes(settings, "reducers")
    clusterers = _grid_nodes(settings, "clusterers")
    # Reference images are appended to in-memory copies of every extractor's features.
    held = sum(n * d * 4 for d in dims.values()) if settings.data.reference_dir else 0
    g_mem, g_detail, g_key, _ = grid_memory(
        n, dims, reducers, clusterers, settings.grid.fit_sample, base, held
    )
    emb_disk = sum(
        n * reduced_dim(r, d) * EMBEDDING_ITEMSIZE for d in dims.values() for r in reducers.values()
    )
    grid = StageEstimate(
        "grid",
        g_mem,
        emb_disk + n_cells * n * 8,
        g_detail + (f"; feature copies {gb(held)}" if held else ""),
        memory_key=g_key or "grid.fit_sample",
    )

    # fusion
    fusion = settings.fusion
    per_group = n_cells // max(1, len(exts)) if fusion.per_extractor else n_cells
    p = max(1, min(fusion.candidates, per_group or n_cells))
    fuse = StageEstimate(
        "fusion",
        fusion_memory(n, p, base, held),
        n * LABELS_CSV_BYTES_PER_IMAGE,
        f"{n:,} x {p} partitions, {FUSION_BYTES_PER_LABEL} B each",
        memory_key="fusion.n_partitions",
    )

    # report: the solution's features and embedding, the 2-D map
    dim = max(dims.values(), default=FALLBACK_DIM)
    d = max((reduced_dim(r, dim) for r in reducers.values()), default=dim)
    id_chars = max((len(r.id) for r in manifest.records), default=0)
    parts = [
        Part(f"features {n:,}x{dim} x2", 2 * n * dim * 4, "grid.extractors"),
        Part(f"embedding {n:,}x{d} float32+2xfloat64", n * d * (4 + 16), "grid.reducers"),
        # scikit-learn's chunks of the n x n float64 distances, at most its working memory
        Part("neighbour search", min(SKLEARN_WORKING_MEMORY, n * n * 8), "budget.memory_gb"),
    ]
    report = StageEstimate(
        "report",
        base + held + sum(p_.bytes for p_ in parts),
        REPORT_FIXED_DISK + n * ((dim + d) * 4 + 8 + 1 + 4 + 4 * id_chars),
        "solution " + describe_parts(parts),
        memory_key=largest(parts).key,
    )
    if n_cells == 0:  # mode=prepare: preprocessing and extraction only
        grid, fuse, report = (
            StageEstimate(stage, 0, 0, "no grid in this run") for stage in STAGES[3:]
        )
    return [pre, train, extract, grid, fuse, report]
