"""The cost model's calibrated constants, and the estimate, budget and refusal types.

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
peak RSS). GB in this package is 2**30 bytes (as SLURM's ``--mem=16G``). The networks' own
figures (feature dimensions, parameters, activations) are in :mod:`aurora.run.budget.extractors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aurora.infra.errors import AuroraError

GB = 2**30
MB = 2**20
ESTIMATES_FILE = "estimates.json"
STAGES = ("preprocess", "train", "extract", "grid", "fusion", "report")

#: RSS of a run's process before any data: Python with torch, timm, lightning, scikit-learn and
#: umap imported (measured 958 MB on this machine; the grid runs in the process that extracted).
RUN_BASE_BYTES = 1 * GB
#: RSS of a process without torch (aurora.grid.cell, scikit-learn and umap imported: measured
#: 254 MB), the base of the benchmarks and tests that compare the grid estimate with a measured
#: peak.
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
#: The silhouette is computed on at most this many rows (aurora.grid.scoring's sample) and its
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
#: Inference: the two largest consecutive activations of a batch, bytes per input pixel.
INFER_ACTIVATION_BYTES_PER_PIXEL = 256


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
        how = f"an estimated {gb(estimate_bytes)} of {noun}"
        said = f" ({detail})" if detail else ""
        super().__init__(
            f"{what} {how}{said}, more than the budget of {gb(budget_bytes)} ({source}): "
            f"change {key}, or raise {setting} (budget.check=false runs anyway)"
        )


def gb(n_bytes: float) -> str:
    """A size as the tables and messages print it (``'3.2 GB'``, GB = 2**30 bytes)."""
    return f"{n_bytes / GB:.1f} GB"


@dataclass(frozen=True)
class Part:
    """A named term of an estimate (for the detail line and the key to change)."""

    what: str
    bytes: int
    key: str


def largest(parts: Sequence[Part]) -> Part:
    """The term with the most bytes (the first of equals)."""
    return max(parts, key=lambda p: p.bytes)


def describe_parts(parts: Sequence[Part]) -> str:
    """The terms of a sum as a detail line: ``what 1.0 GB + what 0.2 GB``."""
    return " + ".join(f"{p.what} {gb(p.bytes)}" for p in parts)
