"""Memory and disk of a ``cluster.py`` run, estimated before any work and checked against a budget.

Right after the scan, :func:`plan_budget` estimates the peak resident memory of the process and
the new disk of each stage for this many images, prints and logs them as a table, writes them to
``RUN_DIR/estimates.json`` and, with ``budget.check`` (the default), refuses a run that will not
fit (:class:`BudgetError`, one line naming the stage, the estimate, the budget and the setting to
change) instead of dying hours later. Nothing here builds a network or imports torch: the
figures come from the configuration, the manifest and the cache (a store, encoder or feature
set already in the cache writes nothing).

The model follows what the code does (sizes in bytes; n = candidate images, S = a store's side,
D = an extractor's feature dimension, d = a reducer's output dimension, m = min(n,
``grid.fit_sample``)):

- preprocess: one (n, S, S, 3) uint8 array per (variant, S) (exactly n*S*S*3 bytes of disk;
  the index files, a few hundred bytes per image, are left out); memory: the process, its
  per-image bookkeeping and ``jobs`` worker processes decoding one chunk of frames each.
- train (extractors whose ``ckpt_path`` is unset): weights, gradients and AdamW's two moments
  (16 bytes per parameter) and a batch's activations (on the CPU only; a GPU holds its own);
  disk: the best and the last checkpoint (weights + two moments each).
- extract: one network and a few batches in memory; disk: (n, D) float32 per extractor, and
  while an entry is assembled its shards are on disk beside it.
- grid: per cell, the features (the memory map is read whole, so its pages are resident), the
  (n, d) embedding and its copies (:data:`EMBEDDING_COPIES`), and the larger of the fit's work
  on m rows (dense methods m*m float64) and the silhouette's m_s*m_s distances; the peak is the
  worst cell. Disk: one (n, d) embedding per (extractor, reducer) and int64 labels per cell.
- fusion: the fused (n, P) partitions and the graph (:data:`FUSION_BYTES_PER_LABEL`).
- report: the solution's features (read whole, plus the copy of the assigned rows its
  neighbour distances take), the embedding and its float64 2-D map; disk: the solution's
  ``reference.npz`` (features, embedding, ids, labels).

The constants are calibrated on this project's measurements (BENCHMARKS.md, issue 21:
``bench/bench_scale.py``; ``bench/bench_budget.py`` prints the estimate beside the measured
peak RSS). GB in this module is 2**30 bytes (as SLURM's ``--mem=16G``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aurora.atomic import atomic_write_text
from aurora.cache import Cache
from aurora.clustering.memory import DEFAULT_MEMORY_BUDGET_BYTES
from aurora.config import UNSET
from aurora.data.sources import Manifest
from aurora.errors import AuroraError, free_bytes
from aurora.logs import log
from aurora.run.settings import BudgetSettings, RunSettings

GB = 2**30
MB = 2**20
ESTIMATES_FILE = "estimates.json"
STAGES = ("preprocess", "train", "extract", "grid", "fusion", "report")

#: RSS of a run's process before any data: Python with torch, timm, lightning, scikit-learn and
#: umap imported (measured 958 MB on this machine; the grid runs in the process that extracted).
RUN_BASE_BYTES = 1 * GB
#: RSS of a process without torch (aurora.cell, scikit-learn and umap imported: measured 254 MB),
#: the base of the benchmarks and tests that compare the grid estimate with a measured peak.
BENCH_BASE_BYTES = 256 * MB
#: Per-image bookkeeping of a run: its manifest record (measured 455 B with tracemalloc for
#: 100k records of KHO-like names), ids, paths and times of the run and of each store's index.
BOOKKEEPING_BYTES_PER_IMAGE = 1024
#: A preprocessing worker process: its own pages plus the decode of one frame and the float
#: copies of the chain (about 40 B per pixel of a 2k x 2k frame), a rounded upper figure.
PREPROCESS_WORKER_BYTES = 256 * MB
#: Copies of a cell's (n, d) float32 embedding alive at its peak: the embedding, the scores'
#: copy of the assigned rows, per-cluster temporaries of the scores, and the previous cell's
#: result until the next replaces it. Fitted: PCA (0.8) -> K-means cells of bench_scale's
#: mixture at 100k and 300k frames (d 341 / 352, 512-d, fit_sample 20k) grew by 4.2 x n x d x 4
#: bytes between the two (peak RSS 1.29 / 2.88 GB in fresh processes).
EMBEDDING_COPIES = 4.2
#: Bytes per stored embedding value (the reducers keep float32 features float32: PCA, UMAP).
EMBEDDING_ITEMSIZE = 4
#: The silhouette is computed on at most this many rows (aurora.scoring's sample) and its
#: distance matrix, one chunk of scikit-learn's working memory, holds s*s float32.
SILHOUETTE_SAMPLE = 10_000
SILHOUETTE_ITEMSIZE = 4
#: UMAP's fit on m rows: numba's compiled code plus its neighbour graph and layout, mostly fixed.
#: Measured with bench_scale's 512-d season: the UMAP cell alone at 100k frames (m = 20k) peaked
#: 0.72 GB above the process and its features; the 10k chain (m = 10k) peaked 1.02 GB in all
#: (bench/bench_budget.py). Split as 600 MB fixed + 6 KB per fitted row.
UMAP_FIXED_BYTES = 600 * MB
UMAP_BYTES_PER_ROW = 6 * 1024
#: A sparse k-nearest-neighbour graph method on m rows (spectral with n_neighbors, Ward with
#: connectivity): +151 MB / +114 MB at 20,000 points (BENCHMARKS.md, issue 6), about 8 KB a row.
SPARSE_GRAPH_BYTES_PER_ROW = 8 * 1024
#: Dense n x n methods hold this many m*m float64 matrices: Ward's distances (+3054 MB at 20,000
#: points = 0.95 x m*m*8, issue 6); Kernel PCA, Isomap and dense spectral keep the matrix and a
#: centred (or Laplacian) copy.
DENSE_MATRICES = {
    "WardClustering": 1,
    "AgglomerativeClustering": 1,
    "KernelPCA": 2,
    "Isomap": 2,
    "SpectralClustering": 2,
}
#: Fusion per (image, fused partition): the int64 label matrix (8 B) plus what
#: CoAssociationVoting's fit adds (+225 MB for 1M images x 10 partitions, +710 MB for 1M x 30:
#: BENCHMARKS.md, issue 7; about 24 B).
FUSION_BYTES_PER_LABEL = 8 + 24
#: scikit-learn's chunked pairwise distances (the report's nearest neighbours) use up to its
#: ``working_memory`` (1 GiB by default).
SKLEARN_WORKING_MEMORY = 1 * GB
#: The report's figures, montages and tables, and ``labels.csv`` per image.
REPORT_FIXED_DISK = 50 * MB
LABELS_CSV_BYTES_PER_IMAGE = 128

#: Feature dimension of a backbone (timm name): its pooled features (``num_classes=0``).
FEATURE_DIMS = {
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "inception_v3": 2048,
    "mobilenetv2_100": 1280,
    "efficientnet_b0": 1280,
    "densenet121": 1024,
    "convnext_tiny": 768,
}
#: An unknown network's dimension: 2048, as large as any configured one (an upper bound).
FALLBACK_DIM = 2048
#: Parameters of a backbone without its classifier (timm's figures, rounded up).
PARAMS = {
    "resnet18": 11_200_000,
    "resnet34": 21_300_000,
    "resnet50": 23_600_000,
    "inception_v3": 21_800_000,
    "mobilenetv2_100": 2_300_000,
    "efficientnet_b0": 4_100_000,
    "densenet121": 7_000_000,
    "convnext_tiny": 27_900_000,
}
FALLBACK_PARAMS = 30_000_000
#: Training activations kept for the backward pass, bytes per input pixel per image, float32
#: (rough figures: ResNet-50 about 150 MB per 224-px image, ResNet-18 about 40 MB).
TRAIN_ACTIVATION_BYTES_PER_PIXEL = {
    "resnet18": 800,
    "resnet34": 1200,
    "resnet50": 3000,
    "mobilenetv2_100": 1600,
    "inception_v3": 1700,
    "autoencoder": 800,
}
FALLBACK_TRAIN_ACTIVATION = 3000
#: Inference: the two largest consecutive activations of a batch, bytes per input pixel.
INFER_ACTIVATION_BYTES_PER_PIXEL = 256
#: Default input side of timm models whose config gives none (``input_size: null``).
TIMM_INPUT_SIZE = {"inception_v3": 299}
DEFAULT_TIMM_INPUT_SIZE = 224
#: The cache stage of features (aurora.extractors.inference.STAGE; that module imports torch).
FEATURES_STAGE = "features"
#: Images per feature shard (aurora.extractors.inference's default).
SHARD_SIZE = 4096


@dataclass(frozen=True)
class StageEstimate:
    """The estimated cost of one stage of a run.

    Attributes:
        stage: ``preprocess``, ``train``, ``extract``, ``grid``, ``fusion`` or ``report``.
        memory_bytes: estimated peak resident memory of the process during the stage (0 when
            the stage has nothing to do).
        disk_bytes: new disk the stage writes (0 when its cache entries already exist).
        detail: one short line: what the figure is made of.
        memory_key: the setting that lowers the memory most, for the refusal message.
        disk_key: idem for the disk.
    """

    stage: str
    memory_bytes: int
    disk_bytes: int
    detail: str
    memory_key: str = "budget.memory_gb"
    disk_key: str = "paths.cache_dir"


@dataclass(frozen=True)
class Budget:
    """What a run may use.

    Attributes:
        memory_bytes: peak resident memory allowed.
        disk_bytes: new disk allowed.
        memory_source: where the figure came from (``budget.memory_gb``, ``cgroup
            memory.max``, ``SLURM_MEM_PER_NODE``, ``available memory``).
        disk_source: idem (``budget.disk_gb``, ``free space of <folder>``).
    """

    memory_bytes: int
    disk_bytes: int
    memory_source: str
    disk_source: str


class BudgetError(AuroraError):
    """A stage will not fit the budget; the message names the stage, the estimate, the budget
    and the setting to change.

    Attributes:
        stage: the stage (``grid``, ...; ``all`` for the run's total disk).
        resource: ``memory`` or ``disk``.
        estimate_bytes: the estimate.
        budget_bytes: the budget.
        key: the setting to change.
    """

    def __init__(
        self,
        stage: str,
        resource: str,
        estimate_bytes: int,
        budget_bytes: int,
        source: str,
        key: str,
        detail: str = "",
    ) -> None:
        self.stage = stage
        self.resource = resource
        self.estimate_bytes = estimate_bytes
        self.budget_bytes = budget_bytes
        self.key = key
        setting = "budget.memory_gb" if resource == "memory" else "budget.disk_gb"
        what = f"stage {stage} needs" if stage != "all" else "the run writes"
        noun = "memory" if resource == "memory" else "new disk"
        how = f"an estimated {_gb(estimate_bytes)} of {noun}"
        said = f" ({detail})" if detail else ""
        super().__init__(
            f"{what} {how}{said}, more than the budget of {_gb(budget_bytes)} ({source}): "
            f"change {key}, or raise {setting} (budget.check=false runs anyway)"
        )


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / GB:.1f} GB"


# --------------------------------------------------------------------------- the pieces


@dataclass(frozen=True)
class _Extractor:
    """What the estimate needs of one extractor node."""

    name: str
    variant: str
    size: int
    dim: int
    params: int
    activation: int  # training activation bytes per input pixel
    trains: str | None  # model (key of models) trained first, or None
    node: Mapping[str, Any]


def _target(node: Mapping[str, Any] | None) -> str:
    """The class name of a node's ``_target_`` (``sklearn.decomposition.PCA`` -> ``PCA``)."""
    return str((node or {}).get("_target_", "")).rsplit(".", 1)[-1]


def _autoencoder_params(node: Mapping[str, Any], size: int) -> int:
    """Parameters of :class:`aurora.models.AutoEncoder` from its node (convs and two linears)."""
    depth, width = int(node.get("depth", 4)), int(node.get("width", 32))
    max_width, latent = int(node.get("max_width", 256)), int(node.get("latent_dim", 128))
    chans = [min(width * 2**i, max_width) for i in range(depth)]
    total, c_in = 0, 3
    for c in chans:
        total += 9 * c_in * c + 9 * c * c
        c_in = c
    rev = chans[::-1]
    for i, c in enumerate(rev):
        c_out = rev[i + 1] if i + 1 < len(rev) else width
        total += 16 * c * c_out + 9 * c_out * c_out
    flat = chans[-1] * max(1, size // 2**depth) ** 2
    return total + 2 * flat * latent + 9 * width * 3


def _model_figures(model: Mapping[str, Any], size: int) -> tuple[int, int, int]:
    """(feature dim, parameters, training activation bytes per pixel) of a ``models.<name>``."""
    if "latent_dim" in model:  # the autoencoder: its bottleneck
        return (
            int(model["latent_dim"]),
            _autoencoder_params(model, size),
            TRAIN_ACTIVATION_BYTES_PER_PIXEL["autoencoder"],
        )
    backbone = str(model.get("backbone", ""))
    if backbone:  # SimCLR: the backbone's pooled features, plus the projection head
        dim = FEATURE_DIMS.get(backbone, FALLBACK_DIM)
        hidden, proj = int(model.get("proj_hidden_dim", 512)), int(model.get("proj_dim", 128))
        params = PARAMS.get(backbone, FALLBACK_PARAMS) + dim * hidden + hidden * proj
        act = 2 * TRAIN_ACTIVATION_BYTES_PER_PIXEL.get(backbone, FALLBACK_TRAIN_ACTIVATION)
        return dim, params, act  # two views of every image
    return FALLBACK_DIM, FALLBACK_PARAMS, FALLBACK_TRAIN_ACTIVATION


def describe_extractor(settings: RunSettings, name: str) -> _Extractor:
    """The store, feature dimension and network size of extractor ``name``.

    The store's side is the extractor's input size: ``input_size`` when the node gives one,
    else the timm model's default (299 for Inception-v3, 224 for the others; an overlay's
    ``input_size`` wins), else, for our own encoders, ``train.image_size`` (the size they are
    trained at here; a checkpoint made elsewhere may have another). Dimensions and parameters
    come from the tables above (:data:`FEATURE_DIMS`, :data:`PARAMS`) or the model's node.
    """
    node = dict(settings.extractors[name])
    variant = str(node.get("preprocess") or "full")
    if "model_name" in node:  # timm
        model_name = str(node["model_name"])
        overlay = (node.get("pretrained_cfg_overlay") or {}).get("input_size")
        size = node.get("input_size") or (overlay[-1] if overlay else None)
        size = int(size or TIMM_INPUT_SIZE.get(model_name, DEFAULT_TIMM_INPUT_SIZE))
        return _Extractor(
            name,
            variant,
            size,
            FEATURE_DIMS.get(model_name, FALLBACK_DIM),
            PARAMS.get(model_name, FALLBACK_PARAMS),
            TRAIN_ACTIVATION_BYTES_PER_PIXEL.get(model_name, FALLBACK_TRAIN_ACTIVATION),
            None,
            node,
        )
    size = int(node.get("input_size") or settings.train.image_size)
    model_name = str(node.get("train") or name)
    model = settings.train.models.get(model_name)
    if model is None:
        dim, params, act = FALLBACK_DIM, FALLBACK_PARAMS, FALLBACK_TRAIN_ACTIVATION
    else:
        dim, params, act = _model_figures(model, size)
    trains = model_name if node.get("ckpt_path") == UNSET and model is not None else None
    return _Extractor(name, variant, size, dim, params, act, trains, node)


def reduced_dim(reducer: Mapping[str, Any], dim: int) -> int:
    """Output dimension of a reducer node on ``dim``-d features.

    ``n_components`` an integer: that many (at most ``dim``); a fraction of the variance
    (``0.8``) or ``variance`` (VarianceMatchedUMAP): ``ceil(fraction * dim)``, which is what
    features with evenly spread variance need (bench_scale's 512-d mixture: 350 at 0.8, this
    gives 410; network features concentrate their variance and need fewer); none: ``dim``
    (the identity), except UMAP's default of 2.
    """
    comps = reducer.get("n_components")
    if comps is None and "variance" in reducer:
        comps = float(reducer["variance"])
        cap = reducer.get("max_components")
        d = math.ceil(comps * dim)
        return max(1, min(d, int(cap) if cap else d, dim))
    if comps is None:
        return 2 if "umap" in str(reducer.get("_target_", "")).lower() else dim
    if isinstance(comps, float) and 0 < comps < 1:
        return max(1, min(dim, math.ceil(comps * dim)))
    return max(1, min(dim, int(comps)))


def _dense_bytes(node: Mapping[str, Any], m: int) -> int:
    """Bytes of the m x m float64 matrices a method allocates (0 for a sparse one)."""
    name = _target(node)
    copies = DENSE_MATRICES.get(name, 0)
    if not copies:
        return 0
    connected = node.get("connectivity_neighbors") or node.get("connectivity") is not None
    if name in ("WardClustering", "AgglomerativeClustering") and connected:
        return 0
    if name == "SpectralClustering" and node.get("affinity", "rbf") in (
        "nearest_neighbors",
        "precomputed_nearest_neighbors",
    ):
        return 0
    return copies * m * m * 8


def _refused(node: Mapping[str, Any], dense: int, m: int) -> bool:
    """Whether a cell's n*n guard refuses this dense method on m rows before it allocates
    (:func:`aurora.clustering.memory.check_quadratic_memory`: one m*m float64 matrix against the
    node's ``memory_budget_bytes``, else the run's default)."""
    budget = node.get("memory_budget_bytes", DEFAULT_MEMORY_BUDGET_BYTES)
    return bool(dense) and budget is not None and m * m * 8 > int(budget)


def _fit_work(node: Mapping[str, Any], m: int, dim: int, out_dim: int) -> int:
    """The fit's own memory on m rows of ``dim``-d input (reducer or clusterer), not dense."""
    name = _target(node).lower()
    if "umap" in name:
        return UMAP_FIXED_BYTES + m * UMAP_BYTES_PER_ROW
    if node.get("n_neighbors") or node.get("connectivity_neighbors"):
        return m * SPARSE_GRAPH_BYTES_PER_ROW
    # A linear fit (PCA's SVD, K-means): a centred copy and a factor of the sample.
    return 2 * m * dim * 4 + m * out_dim * 4


@dataclass(frozen=True)
class _Part:
    """A named term of an estimate (for the detail line and the key to change)."""

    what: str
    bytes: int
    key: str


def grid_memory(
    n: int,
    dims: Mapping[str, int],
    reducers: Mapping[str, Mapping[str, Any]],
    clusterers: Mapping[str, Mapping[str, Any]],
    fit_sample: int | None,
    base_bytes: int,
    held_bytes: int = 0,
) -> tuple[int, str, str, int]:
    """Peak memory of the grid: the worst cell of extractors x reducers x clusterers.

    Args:
        n: rows.
        dims: extractor name -> feature dimension D.
        reducers: reducer name -> node.
        clusterers: clusterer name -> node.
        fit_sample: ``grid.fit_sample`` (None = fit on every row).
        base_bytes: the process before the grid (interpreter, libraries, bookkeeping).
        held_bytes: in-memory feature copies the run holds besides the cell's own features.

    Returns:
        (bytes, detail line, key to change, cells the n*n guard will refuse).
    """
    m = n if fit_sample is None else min(n, int(fit_sample))
    s = min(n, SILHOUETTE_SAMPLE)
    best: tuple[int, list[_Part], str] | None = None
    refused = 0
    for ext, dim in dims.items():
        for rname, rnode in reducers.items():
            d = reduced_dim(rnode, dim)
            r_dense = _dense_bytes(rnode, m)
            for cname, cnode in clusterers.items():
                c_dense = _dense_bytes(cnode, m)
                if _refused(rnode, r_dense, m) or _refused(cnode, c_dense, m):
                    refused += 1  # refused by its guard before it allocates: recorded, not run
                    continue
                square = f"{m:,}x{m:,} float64"
                fits = [
                    _Part(
                        square if r_dense else f"{rname} fit on {m:,} rows",
                        (r_dense or _fit_work(rnode, m, dim, d)) + m * dim * 4,
                        "grid.fit_sample",
                    ),
                    _Part(
                        square if c_dense else f"{cname} fit on {m:,} rows",
                        c_dense or _fit_work(cnode, m, d, d),
                        "grid.fit_sample",
                    ),
                    _Part(
                        f"silhouette {s:,}x{s:,}", s * s * SILHOUETTE_ITEMSIZE, "budget.memory_gb"
                    ),
                ]
                parts = [
                    _Part(f"features {n:,}x{dim}", n * dim * 4, "grid.extractors"),
                    _Part(
                        f"embedding {n:,}x{d} x{EMBEDDING_COPIES:g}",
                        int(EMBEDDING_COPIES * n * d * EMBEDDING_ITEMSIZE),
                        f"reducers.{rname}.n_components",
                    ),
                    max(fits, key=lambda p: p.bytes),
                ]
                total = sum(p.bytes for p in parts)
                if best is None or total > best[0]:
                    best = (total, parts, f"{ext}/{rname}/{cname}")
    if best is None:
        return base_bytes + held_bytes, f"all {refused} cells refused by the n*n guard", "", refused
    total, parts, cell = best
    top = max(parts, key=lambda p: p.bytes)
    detail = f"worst cell {cell}: " + " + ".join(f"{p.what} {_gb(p.bytes)}" for p in parts)
    if refused:
        detail += f"; {refused} cells over the n*n guard will be refused"
    return base_bytes + held_bytes + total, detail, top.key, refused


def fusion_memory(n: int, n_partitions: int, base_bytes: int, held_bytes: int = 0) -> int:
    """Peak memory of the fusion of ``n_partitions`` partitions of n images."""
    return base_bytes + held_bytes + n * n_partitions * FUSION_BYTES_PER_LABEL


# --------------------------------------------------------------------------- the stages


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
    ext: _Extractor, store_key: str | None, ckpt: str | None, found: Sequence[dict[str, Any]]
) -> bool:
    """Whether a feature entry of this extractor on this store is in the cache."""
    if store_key is None:
        return False
    for prov in found:
        if prov.get("store_key") != store_key:
            continue
        ident = prov.get("extractor") or {}
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
    reducers = {k: settings.reducers[k] for k in settings.grid.axis("reducers", settings.reducers)
                if k in settings.reducers}  # fmt: skip
    clusterers = {
        k: settings.clusterers[k]
        for k in settings.grid.axis("clusterers", settings.clusterers)
        if k in settings.clusterers
    }
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
        g_detail + (f"; feature copies {_gb(held)}" if held else ""),
        memory_key=g_key or "grid.fit_sample",
    )

    # fusion
    fusion = settings.fusion
    search = fusion.get("search")
    p = max(search["n_partitions"]) if search else int(fusion.get("n_partitions", 10))
    per_group = n_cells // max(1, len(exts)) if fusion.get("per_extractor") else n_cells
    p = max(1, min(p, per_group or n_cells))
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
        _Part(f"features {n:,}x{dim} x2", 2 * n * dim * 4, "grid.extractors"),
        _Part(f"embedding {n:,}x{d} float32+2xfloat64", n * d * (4 + 16), "grid.reducers"),
        _Part("neighbour search", SKLEARN_WORKING_MEMORY if n else 0, "budget.memory_gb"),
    ]
    report = StageEstimate(
        "report",
        base + held + sum(p_.bytes for p_ in parts),
        REPORT_FIXED_DISK + n * ((dim + d) * 4 + 8 + 1 + 4 + 4 * id_chars),
        "solution " + " + ".join(f"{p_.what} {_gb(p_.bytes)}" for p_ in parts),
        memory_key=max(parts, key=lambda p_: p_.bytes).key,
    )
    if n_cells == 0:  # mode=prepare: preprocessing and extraction only
        grid, fuse, report = (
            StageEstimate(stage, 0, 0, "no grid in this run") for stage in STAGES[3:]
        )
    return [pre, train, extract, grid, fuse, report]


# --------------------------------------------------------------------------- the budget


def _read_int(path: Path) -> int | None:
    """An integer limit from a cgroup file, or None (absent, unreadable, ``max``, unlimited)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text.isdigit():
        return None  # "max": no limit
    value = int(text)
    return value if value < 2**60 else None  # cgroup v1 writes ~2**63 for no limit


def cgroup_memory_limit(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """This process's cgroup memory limit in bytes (v2 ``memory.max``, v1
    ``memory.limit_in_bytes``), or None when there is none."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    candidates: list[Path] = []
    for line in lines:
        _, controllers, rel = line.split(":", 2)
        rel = rel.lstrip("/")
        if controllers == "":
            candidates += [root / rel / "memory.max", root / "memory.max"]
        elif "memory" in controllers.split(","):
            mem = root / "memory"
            candidates += [mem / rel / "memory.limit_in_bytes", mem / "memory.limit_in_bytes"]
    limits = [v for v in (_read_int(p) for p in candidates) if v is not None]
    return min(limits) if limits else None


def slurm_memory() -> int | None:
    """The SLURM job's memory per node (``SLURM_MEM_PER_NODE``, in MB = 2**20 bytes), or None."""
    value = os.environ.get("SLURM_MEM_PER_NODE", "").strip()
    return int(value) * MB if value.isdigit() and int(value) > 0 else None


def available_memory() -> int:
    """Memory available now (``MemAvailable`` of /proc/meminfo; psutil's figure when installed)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def machine_budget(budget: BudgetSettings, cache_dir: str | Path) -> Budget:
    """The budget of a run: the settings where given, else what this machine or job has.

    Memory: ``budget.memory_gb``, else the cgroup's limit (:func:`cgroup_memory_limit`), else
    ``SLURM_MEM_PER_NODE``, else the memory available now. Disk: ``budget.disk_gb``, else the
    free space of the file system holding ``cache_dir`` (unknown: not limited).
    """
    if budget.memory_gb is not None:
        memory, msrc = int(budget.memory_gb * GB), "budget.memory_gb"
    elif (limit := cgroup_memory_limit()) is not None:
        memory, msrc = limit, "cgroup memory.max"
    elif (slurm := slurm_memory()) is not None:
        memory, msrc = slurm, "SLURM_MEM_PER_NODE"
    else:
        memory, msrc = available_memory(), "available memory"
    if budget.disk_gb is not None:
        disk, dsrc = int(budget.disk_gb * GB), "budget.disk_gb"
    else:
        free = free_bytes(cache_dir)
        disk = free if free is not None else 2**62
        dsrc = f"free space of {cache_dir}" if free is not None else "unknown free space"
    return Budget(memory, disk, msrc, dsrc)


def check_budget(estimates: Sequence[StageEstimate], budget: Budget) -> None:
    """Refuse what will not fit.

    Raises:
        BudgetError: the first stage whose memory is over the budget; else the run's total new
            disk over the budget (naming the stage that writes most).
    """
    for e in estimates:
        if e.memory_bytes > budget.memory_bytes:
            raise BudgetError(
                e.stage,
                "memory",
                e.memory_bytes,
                budget.memory_bytes,
                budget.memory_source,
                e.memory_key,
                e.detail,
            )
    total = sum(e.disk_bytes for e in estimates)
    if total > budget.disk_bytes:
        top = max(estimates, key=lambda e: e.disk_bytes)
        raise BudgetError(
            "all",
            "disk",
            total,
            budget.disk_bytes,
            budget.disk_source,
            top.disk_key,
            f"most in stage {top.stage}: {_gb(top.disk_bytes)}",
        )


def format_estimates(estimates: Sequence[StageEstimate], budget: Budget) -> str:
    """The estimates as a small aligned table: one line per stage, the total disk, the budget."""
    rows = [("stage", "memory", "new disk", "made of")]
    rows += [(e.stage, _gb(e.memory_bytes), _gb(e.disk_bytes), e.detail) for e in estimates]
    rows.append(("total", "", _gb(sum(e.disk_bytes for e in estimates)), ""))
    rows.append(
        (
            "budget",
            _gb(budget.memory_bytes),
            _gb(budget.disk_bytes),
            f"memory: {budget.memory_source}; disk: {budget.disk_source}",
        )
    )
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}  {r[3]}".rstrip() for r in rows
    )


def _log_to_files(text: str) -> None:
    """Log ``text`` at INFO to the log files only (the console gets it printed once)."""
    record = log.makeRecord(log.name, logging.INFO, __file__, 0, "%s", (text,), None)
    handlers = {
        h
        for logger in (log, logging.getLogger())
        for h in logger.handlers
        if isinstance(h, logging.FileHandler)
    }
    for h in handlers:
        if record.levelno >= h.level:
            h.handle(record)


def plan_budget(
    manifest: Manifest,
    settings: RunSettings,
    extractor_names: Sequence[str],
    n_cells: int,
    run_dir: Path,
) -> list[StageEstimate]:
    """Estimate, show and record each stage's cost; refuse what will not fit.

    Prints the table (:func:`format_estimates`), logs it to the run's log files, writes
    ``run_dir/estimates.json`` (``n``, ``stages``, ``budget``, ``fits``), then, with
    ``budget.check``, :func:`check_budget`.

    Returns:
        The estimates.

    Raises:
        BudgetError: ``budget.check`` and a stage over the budget (estimates.json is written
            first).
    """
    estimates = estimate_stages(manifest, settings, extractor_names, n_cells)
    budget = machine_budget(settings.budget, settings.cache_dir)
    error: BudgetError | None = None
    try:
        check_budget(estimates, budget)
    except BudgetError as err:
        error = err
    n = len(manifest.records)
    table = format_estimates(estimates, budget)
    print(f"estimated peak memory and new disk per stage ({n:,} images, {n_cells} cells):")
    print(table, flush=True)
    _log_to_files(f"estimated peak memory and new disk per stage ({n:,} images):\n{table}")
    doc = {
        "n": n,
        "n_cells": n_cells,
        "extractors": list(extractor_names),
        "stages": [dataclasses.asdict(e) for e in estimates],
        "total_disk_bytes": sum(e.disk_bytes for e in estimates),
        "budget": {**dataclasses.asdict(budget), "check": settings.budget.check},
        "fits": error is None,
        "over_budget": None if error is None else str(error),
    }
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / ESTIMATES_FILE, json.dumps(doc, indent=2) + "\n")
    if error is not None:
        if settings.budget.check:
            raise error
        log.warning("over budget, going on (budget.check=false): %s", error)
    return estimates
