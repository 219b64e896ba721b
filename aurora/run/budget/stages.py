"""Peak memory and new disk of each stage of a run (:func:`estimate_stages`), with the cache
lookups that make a stage whose entries already exist write nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aurora.data.sources import Manifest
from aurora.extractors.feature_keys import SHARD_SIZE, computed_by, entry_provenances
from aurora.infra.cache import Cache
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


def _features_cached(
    ext: ExtractorFigures,
    store_key: str | None,
    ckpt: str | None,
    found: Sequence[dict[str, Any]],
) -> bool:
    """Whether a feature entry of this extractor on this store is in the cache
    (:func:`aurora.extractors.feature_keys.computed_by`)."""
    if store_key is None:
        return False
    node = ext.plan.node
    return any(
        computed_by(
            prov,
            store_key=store_key,
            timm_model=ext.plan.timm_model,
            pretrained=bool(node.get("pretrained", True)),
            ckpt_path=ckpt,
            dihedral=bool(node.get("dihedral")),
        )
        for prov in found
    )


def _grid_nodes(settings: RunSettings, axis: str) -> dict[str, Any]:
    """The configured nodes of grid axis ``axis`` (``reducers``, ``clusterers``) the grid runs."""
    configured = getattr(settings, axis)
    return {k: configured[k] for k in settings.grid.axis(axis, configured) if k in configured}


@dataclass(frozen=True)
class _Run:
    """What the estimate of every stage reads.

    Attributes:
        manifest: the scanned data set.
        settings: the run's settings.
        exts: the figures of each extractor the run computes.
        cache: the run's cache.
        base: resident bytes of the run before any stage (the process, per-image bookkeeping).
        held: bytes of the in-memory copies of every extractor's features (made when
            reference images are appended; 0 without).
    """

    manifest: Manifest
    settings: RunSettings
    exts: list[ExtractorFigures]
    cache: Cache
    base: int
    held: int

    @property
    def n(self) -> int:
        """Candidate images of the data set."""
        return len(self.manifest.records)

    @property
    def dims(self) -> dict[str, int]:
        """Extractor name -> feature dimension."""
        return {e.name: e.dim for e in self.exts}


def _preprocess(run: _Run) -> tuple[StageEstimate, dict[tuple[str, int], str | None]]:
    """One uint8 array per (variant, size) not in the cache; and each store's key (None: its
    variant is not configured)."""
    from aurora.data.decode import default_jobs

    n, stores = run.n, {e.store for e in run.exts}
    new_stores, store_keys = [], {}
    for variant, size in sorted(stores):
        preprocess = run.settings.preprocess.get(variant)
        exists, key = _store_exists(run.manifest, preprocess, size, run.cache)
        store_keys[(variant, size)] = key
        if not exists:
            new_stores.append((variant, size))
    jobs = run.settings.jobs or default_jobs()
    pre_disk = sum(n * s * s * 3 for _, s in new_stores)
    pre_mem = run.base + (jobs * PREPROCESS_WORKER_BYTES if new_stores else 0)
    detail = (
        f"{len(new_stores)} new of {len(stores)} stores: "
        + ", ".join(f"{v} {n:,} x {s}x{s}x3 uint8" for v, s in new_stores)
        + f"; {jobs} workers"
        if new_stores
        else f"all {len(stores)} stores cached"
    )
    return StageEstimate("preprocess", pre_mem, pre_disk, detail, memory_key="jobs"), store_keys


def _train(
    run: _Run, store_keys: Mapping[tuple[str, int], str | None]
) -> tuple[StageEstimate, dict[str, str]]:
    """Our own encoders without a checkpoint and not in the cache; and the checkpoint each
    trained extractor will read (name -> path in the cache)."""
    from aurora.run.features import training_key

    tr, settings = run.settings.train, run.settings
    loader_batch = int(tr.loader.get("batch_size", 128))
    workers = int(tr.loader.get("num_workers", 0) or 0)
    on_cpu = str(tr.trainer.get("accelerator", "cpu")) == "cpu"
    train_mem, train_disk, trained, ckpts = 0, 0, [], {}
    for e in run.exts:
        if e.trains is None:
            continue
        key = training_key(
            store_keys[e.store] or "",
            tr.models[e.trains],
            tr.trainer,
            tr.loader,
            settings.seed,
            tr.callbacks,
        )
        ckpts[e.name] = str(run.cache.path("train", key) / "model.ckpt")
        if store_keys[e.store] is not None and run.cache.exists("train", key):
            continue
        pixels = e.plan.size**2
        act = loader_batch * pixels * e.activation if on_cpu else 0
        loader_bytes = (workers + 1) * 2 * loader_batch * pixels * 3 * 4
        train_mem = max(train_mem, run.base + 16 * e.params + act + loader_bytes)
        train_disk += 2 * 12 * e.params  # best and last checkpoint: weights + 2 moments
        trained.append(f"{e.trains} ({e.params / 1e6:.1f}M params, batch {loader_batch})")
    detail = (
        "; ".join(trained) + ("" if on_cpu else ", activations on the GPU")
        if trained
        else "nothing to train"
    )
    estimate = StageEstimate(
        "train", train_mem, train_disk, detail, memory_key="train.loader.batch_size"
    )
    return estimate, ckpts


def _extract(
    run: _Run, store_keys: Mapping[tuple[str, int], str | None], ckpts: Mapping[str, str]
) -> StageEstimate:
    """(n, D) float32 per extractor not in the cache, shards beside the entry being assembled."""
    n, ex = run.n, run.settings.extract
    found = list(entry_provenances(run.cache))
    ex_mem, ex_sizes, ex_names = 0, [], []
    for e in run.exts:
        ckpt = ckpts.get(e.name) or e.plan.ckpt_path
        if _features_cached(e, store_keys[e.store], ckpt, found):
            continue
        pixels = e.plan.size**2
        batches = (int(ex.num_workers) + 2) * ex.batch_size * pixels * 3 * (1 + 4)
        act = ex.batch_size * pixels * INFER_ACTIVATION_BYTES_PER_PIXEL
        shard = SHARD_SIZE * e.dim * 4
        ex_mem = max(ex_mem, run.base + 4 * e.params + batches + act + shard)
        ex_sizes.append(n * e.dim * 4)
        ex_names.append(f"{e.name} {n:,}x{e.dim}")
    detail = (
        "float32 " + ", ".join(ex_names) + " (+ shards of the largest)"
        if ex_names
        else "all features cached"
    )
    disk = sum(ex_sizes) + max(ex_sizes, default=0)
    return StageEstimate("extract", ex_mem, disk, detail, memory_key="extract.batch_size")


def _grid(run: _Run, reducers: Mapping[str, Any], n_cells: int) -> StageEstimate:
    """The grid's worst cell (:func:`grid_memory`); the embeddings and the cells' labels."""
    n, dims, settings = run.n, run.dims, run.settings
    clusterers = _grid_nodes(settings, "clusterers")
    g_mem, g_detail, g_key, _ = grid_memory(
        n, dims, reducers, clusterers, settings.grid.fit_sample, run.base, run.held
    )
    emb_disk = sum(
        n * reduced_dim(r, d) * EMBEDDING_ITEMSIZE for d in dims.values() for r in reducers.values()
    )
    return StageEstimate(
        "grid",
        g_mem,
        emb_disk + n_cells * n * 8,
        g_detail + (f"; feature copies {gb(run.held)}" if run.held else ""),
        memory_key=g_key or "grid.fit_sample",
    )


def _fusion(run: _Run, n_cells: int) -> StageEstimate:
    """The co-association of the partitions fused (:func:`fusion_memory`); ``labels.csv``."""
    n, settings, exts = run.n, run.settings, run.exts
    fusion = settings.fusion
    per_group = n_cells // max(1, len(exts)) if fusion.per_extractor else n_cells
    p = max(1, min(fusion.candidates, per_group or n_cells))
    return StageEstimate(
        "fusion",
        fusion_memory(n, p, run.base, run.held),
        n * LABELS_CSV_BYTES_PER_IMAGE,
        f"{n:,} x {p} partitions, {FUSION_BYTES_PER_LABEL} B each",
        memory_key="fusion.n_partitions",
    )


def _report(run: _Run, reducers: Mapping[str, Any]) -> StageEstimate:
    """The solution's features and embedding, the 2-D map."""
    n = run.n
    dim = max(run.dims.values(), default=FALLBACK_DIM)
    d = max((reduced_dim(r, dim) for r in reducers.values()), default=dim)
    id_chars = max((len(r.id) for r in run.manifest.records), default=0)
    parts = [
        Part(f"features {n:,}x{dim} x2", 2 * n * dim * 4, "grid.extractors"),
        Part(f"embedding {n:,}x{d} float32+2xfloat64", n * d * (4 + 16), "grid.reducers"),
        # scikit-learn's chunks of the n x n float64 distances, at most its working memory
        Part("neighbour search", min(SKLEARN_WORKING_MEMORY, n * n * 8), "budget.memory_gb"),
    ]
    return StageEstimate(
        "report",
        run.base + run.held + sum(p_.bytes for p_ in parts),
        REPORT_FIXED_DISK + n * ((dim + d) * 4 + 8 + 1 + 4 + 4 * id_chars),
        "solution " + describe_parts(parts),
        memory_key=largest(parts).key,
    )


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
    n = len(manifest.records)
    exts = [describe_extractor(settings, name) for name in extractor_names]
    # Reference images are appended to in-memory copies of every extractor's features.
    dims = {e.name: e.dim for e in exts}
    held = sum(n * d * 4 for d in dims.values()) if settings.data.reference_dir else 0
    base = RUN_BASE_BYTES + BOOKKEEPING_BYTES_PER_IMAGE * n
    run = _Run(manifest, settings, exts, Cache(settings.cache_dir), base, held)
    pre, store_keys = _preprocess(run)
    train, ckpts = _train(run, store_keys)
    extract = _extract(run, store_keys, ckpts)
    if n_cells == 0:  # mode=prepare: preprocessing and extraction only
        rest = [StageEstimate(stage, 0, 0, "no grid in this run") for stage in STAGES[3:]]
        return [pre, train, extract, *rest]
    reducers = _grid_nodes(settings, "reducers")
    grid = _grid(run, reducers, n_cells)
    return [pre, train, extract, grid, _fusion(run, n_cells), _report(run, reducers)]
