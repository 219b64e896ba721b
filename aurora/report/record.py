"""What a finished run hands to the report and the solution: :class:`RunRecord`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aurora.data.sources import Rejection
from aurora.preprocess import PreprocessConfig


@dataclass
class FusionOutcome:
    """The fused grouping chosen for ``labels.csv``."""

    labels: np.ndarray  # (N,) int64, -1 = unassigned
    group: str  # extractor name, or "all"
    n_partitions: int
    threshold: float
    min_cluster_size: int
    loss: float | None
    per_group: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class RunRecord:
    """Everything the report and the saved solution need from a finished run.

    The "solution cell" is the best-ranked grid cell of the extractor whose fused grouping was
    chosen: its extractor and reducer define the embedding new images are placed in.
    """

    run_dir: Path
    ids: list[str]  # (N,) accepted image ids (relative paths), in label order
    paths: list[str]  # (N,) absolute image paths (CDF frames: the file)
    timestamps: list[Any]  # (N,) UTC datetimes or None
    labels: np.ndarray  # (N,) fused labels, -1 = unassigned
    features: np.ndarray  # (N, D) features of the solution extractor
    embedding: np.ndarray  # (N, d) reduced features of the solution cell
    thumbnails: Any  # (N, S, S, 3) uint8 preprocessed images, indexable (ImageRows)
    moon: np.ndarray  # (N,) bool, Moon detected by preprocessing
    truth: np.ndarray | None  # (N,) true class or None per image; None without a truth table
    nuisances: dict[str, np.ndarray]  # name -> (N,) nuisance values from the truth table
    rejected: list[Rejection]
    ranking: list[dict[str, Any]]  # ranked cells (rows of ranking.csv, absolute labels_path)
    summary: dict[str, Any]
    solution_cell: dict[str, Any]
    extractor_name: str
    extractor_cfg: dict[str, Any]  # resolved extractor node (ckpt_path filled in)
    extractor_identity: dict[str, Any]
    preprocess_cfg: PreprocessConfig
    reducer_cfg: dict[str, Any]
    reducer_entry: Path  # cache folder of the fitted reducer (meta.json, reducer.joblib + sha256)
    features_key: str
    seed: int
    config: dict[str, Any]  # the whole resolved run config
    tensorboard_dir: Path | None = None
    reference_classes: list[str | None] = field(default_factory=list)  # (N,) None = ordinary
