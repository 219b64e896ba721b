"""Label new images with the groups of a saved solution.

``python cluster.py mode=apply solution=RUN/solution data=folder data.root=NEW_NIGHT`` scans the
new folder, preprocesses it with the solution's chain, extracts features with the solution's
extractor (rebuilt from the folder's weights), places the images in the solution's embedding
(the reducer's stored affine map, or nearest reference images in feature space) and gives each
the group of its nearest assigned reference image. ``distance`` is the distance, in feature
space, to the nearest assigned reference image; an image farther than the reference set's own
leave-one-out neighbour distances suggest (their 99th percentile) is flagged ``novel``.

Outputs in the run folder: ``labels.csv`` (``path,label,distance,novel``) and ``rejected.csv``
(``path,reason``); every input is in exactly one of them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.neighbors import NearestNeighbors

from aurora.data.sources import (
    DEFAULT_MAX_PIXELS,
    Rejection,
    scan,
    write_labels_csv,
    write_rejected_csv,
)
from aurora.extractors import extract_features
from aurora.infra.atomic import atomic_write_text
from aurora.infra.run_folder import begin_run, fail_run, finish_run
from aurora.preprocess import build_preprocessed
from aurora.reduction import embed_new
from aurora.solution.errors import SolutionError
from aurora.solution.limits import SolutionLimits
from aurora.solution.store import Solution, load_solution

log = logging.getLogger("aurora")


@dataclass
class ApplyResult:
    """Labels of the new images.

    Attributes:
        ids: (M,) accepted image ids (paths relative to the data root).
        labels: (M,) int64 group of the nearest assigned reference image in the embedding.
        distances: (M,) float distance to the nearest assigned reference image in feature space.
        novel: (M,) bool distance above the solution's novelty threshold.
        embedding: (M, d) float32 the images in the solution's embedding.
        rejected: inputs that did not become images, with reasons.
        n_inputs: every input seen (``M + len(duplicates) + len(rejected)``).
        duplicates: duplicate id -> id of the image with the same content (in ``ids``); a
            duplicate is labelled like its original.
        features: (M, D) the images' features, or None.
        store: the preprocessed store of the images (sky circle, Moon, times), or None.
        records: the manifest's records (what was read).
    """

    ids: list[str]
    labels: np.ndarray
    distances: np.ndarray
    novel: np.ndarray
    embedding: np.ndarray
    rejected: list[Rejection]
    n_inputs: int
    duplicates: dict[str, str] = field(default_factory=dict)
    features: np.ndarray | None = None
    store: Any = None
    records: list[Any] = field(default_factory=list)


def label_images(
    solution: Solution,
    data_root: str | Path,
    cache_root: str | Path,
    *,
    jobs: int | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "auto",
    progress: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ApplyResult:
    """Label every image of a folder (or list file) with the solution's groups.

    Args:
        solution: a loaded solution.
        data_root: folder of new images (recursive), list file or single image.
        cache_root: cache folder (preprocessed images and features of the new data).
        jobs: preprocessing processes (None = all cores).
        batch_size: images per forward pass.
        num_workers: DataLoader workers.
        device: torch device or ``auto``.
        progress: progress bars.
        max_pixels: an image whose header declares more pixels is rejected ``too large``.

    Returns:
        The :class:`ApplyResult`.
    """
    manifest = scan(data_root, jobs=jobs, progress=progress, max_pixels=max_pixels)
    store = build_preprocessed(
        manifest, solution.preprocess_cfg, cache_root, jobs=jobs, progress=progress
    )
    rejected = list(store.rejected)
    if len(store) == 0:
        empty = np.zeros(0)
        return ApplyResult(
            [],
            empty.astype(np.int64),
            empty,
            empty.astype(bool),
            np.zeros((0, solution.embedding.shape[1])),
            rejected,
            manifest.n_inputs,
        )
    fs = extract_features(
        store,
        solution.extractor,
        cache_root,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        progress=progress,
    )
    assert fs is not None  # single process: always assembles
    feats = _checked_features(fs.features, solution)
    emb, labels = _place(feats, solution)
    dist, novel = _novelty(feats, solution)
    return ApplyResult(
        list(fs.ids),
        labels,
        dist,
        novel,
        emb,
        rejected,
        manifest.n_inputs,
        dict(store.duplicates),
        features=feats,
        store=store,
        records=list(manifest.records),
    )


def _checked_features(features: np.ndarray, solution: Solution) -> np.ndarray:
    """The new images' (M, D) features as float32, with the solution's D."""
    feats = np.asarray(features, dtype=np.float32)
    if feats.shape[1] != solution.features.shape[1]:
        raise SolutionError(
            f"new features have {feats.shape[1]} dimensions, "
            f"the solution's {solution.features.shape[1]}"
        )
    return feats


def _place(feats: np.ndarray, solution: Solution) -> tuple[np.ndarray, np.ndarray]:
    """(M, d) float32 places of the new images in the solution's embedding and their (M,)
    int64 groups (that of the nearest assigned reference image there)."""
    emb = embed_new(
        feats,
        linear=solution.linear,
        train_features=solution.features,
        train_embedding=solution.embedding,
        n_neighbors=solution.placement_neighbours,
    ).astype(np.float32)
    return emb, np.asarray(solution.neighbours.predict(emb), dtype=np.int64)


def _novelty(feats: np.ndarray, solution: Solution) -> tuple[np.ndarray, np.ndarray]:
    """(M,) float64 feature-space distance of each new image to the nearest assigned reference
    image, and (M,) bool whether it is above the solution's novelty threshold."""
    # Distance and novelty in feature space: the embedding keeps only a few directions (an
    # image unlike any sky may differ in the others), and a fitted UMAP/Isomap places its
    # own training points differently from transformed new ones.
    ref = solution.features[solution.labels >= 0]
    fdist, _ = NearestNeighbors(n_neighbors=1).fit(ref).kneighbors(feats)
    dist = fdist[:, 0].astype(np.float64)
    thr = solution.novelty_threshold
    novel = dist > thr if thr is not None else np.zeros(len(dist), bool)
    return dist, novel


def write_apply_outputs(result: ApplyResult, out_dir: str | Path) -> None:
    """``labels.csv`` (``path,label,distance,novel``) and ``rejected.csv`` in ``out_dir``.

    One line per input: a duplicate gets the line of its original, under its own path.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = {
        "label": [int(v) for v in result.labels],
        "distance": [f"{float(d):.6g}" for d in result.distances],
        "novel": [int(bool(v)) for v in result.novel],
    }
    write_labels_csv(out_dir / "labels.csv", result.ids, columns, result.duplicates)
    write_rejected_csv(result.rejected, out_dir / "rejected.csv")


def _summary(result: ApplyResult, solution: Solution, data_root: str) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for r in result.rejected:
        counts[r.reason] = counts.get(r.reason, 0) + 1
    groups = np.bincount(result.labels[result.labels >= 0], minlength=solution.n_groups)
    return {
        "solution": str(solution.path),
        "data_root": data_root,
        "n_inputs": result.n_inputs,
        "n_labelled": len(result.ids) + len(result.duplicates),
        "n_duplicates": len(result.duplicates),
        "n_rejected": len(result.rejected),
        "rejected_by_reason": counts,
        "n_novel": int(result.novel.sum()),
        "novelty_threshold": solution.novelty_threshold,
        "group_counts": {str(k): int(c) for k, c in enumerate(groups)},
    }


def _print_summary(summary: dict[str, Any], out_dir: Path) -> None:
    used = sorted(summary["group_counts"].items(), key=lambda kv: -kv[1])
    top = ", ".join(f"{k}: {v}" for k, v in used[:8] if v)
    lines = [
        "",
        "aurora apply",
        f"  solution {summary['solution']}",
        f"  inputs {summary['n_inputs']}: labelled {summary['n_labelled']}, "
        f"rejected {summary['n_rejected']} {summary['rejected_by_reason'] or ''}",
        f"  novel (farther than the reference set's 99th-percentile neighbour distance): "
        f"{summary['n_novel']}",
        f"  most frequent groups: {top or '-'}",
        f"  outputs: {(out_dir / 'labels.csv').resolve()}",
    ]
    print("\n".join(lines), flush=True)


def apply_solution(
    solution_dir: str | Path,
    data_root: str | Path,
    run_dir: str | Path,
    *,
    cache_dir: str | Path,
    jobs: int | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "auto",
    limits: SolutionLimits | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    after_labels: Callable[[ApplyResult, Path], ApplyResult] | None = None,
) -> dict[str, Any]:
    """Label a folder of new images with a saved solution; outputs go into ``run_dir``.

    What ``python cluster.py mode=apply solution=DIR data.root=NEW`` runs (through
    :func:`aurora.run.run_apply`, which reads these from the config).

    Args:
        solution_dir: the ``solution/`` folder of an earlier run.
        data_root: folder of new images (recursive), list file or single image.
        run_dir: output folder.
        cache_dir: cache folder (preprocessed images and features of the new data).
        jobs: preprocessing processes (None = all cores).
        batch_size: images per forward pass.
        num_workers: DataLoader workers.
        device: torch device or ``auto``.
        limits: the largest solution to read (:class:`aurora.solution.SolutionLimits`; by
            default its defaults and this machine's memory).
        max_pixels: an image whose header declares more pixels is rejected ``too large``.
        after_labels: called with the labelled images and ``run_dir`` before the outputs are
            written; what it returns is written (the run's screening and nights).

    Returns:
        The summary (also written to ``run_dir/apply_summary.json``); ``status.json`` follows
        the run as for ``cluster.py`` (:mod:`aurora.infra.run_folder`).
    """
    run_dir = Path(run_dir)
    keep = [str(solution_dir), str(data_root), cache_dir]
    begin_run(run_dir, keep=[k for k in keep if k])
    try:
        solution = load_solution(solution_dir, limits)
        root = str(data_root)
        log.info("applying %s to %s", solution.path, root)
        result = label_images(
            solution,
            root,
            cache_dir,
            jobs=jobs,
            batch_size=batch_size,
            num_workers=num_workers,
            device=device,
            max_pixels=max_pixels,
        )
        if after_labels is not None:
            result = after_labels(result, run_dir)
        write_apply_outputs(result, run_dir)
        summary = _summary(result, solution, root)
        atomic_write_text(run_dir / "apply_summary.json", json.dumps(summary, indent=2) + "\n")
        _print_summary(summary, run_dir)
    except BaseException as err:
        fail_run(run_dir, err)
        raise
    finish_run(run_dir, 0, [])
    return summary


__all__ = [
    "ApplyResult",
    "apply_solution",
    "label_images",
    "write_apply_outputs",
]
