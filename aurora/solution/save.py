"""Writing a finished run's solution folder (the layout is described in :mod:`.layout`).

:func:`save_solution` rebuilds the run's extractor from its config (and checks it is the one
that made the features), exports its weights, copies the reducer's affine map, writes the
reference arrays and the nearest-group model, and last the manifest with every file's SHA-256,
validated as :func:`aurora.solution.store.load_solution` will demand. It all goes into a
temporary sibling folder renamed into place, so a folder is complete or absent.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aurora.extractors import build_extractor
from aurora.fusion import FusedNeighbours
from aurora.grid.scoring import n_groups
from aurora.infra.atomic import atomic_save_npz, atomic_write_text
from aurora.infra.cache import file_sha256
from aurora.preprocess import PreprocessConfig
from aurora.reduction import LINEAR_FILE, LinearMap
from aurora.solution.errors import SolutionError
from aurora.solution.extractor import export_extractor
from aurora.solution.layout import MANIFEST, NEIGHBOURS, REFERENCE, RUN_INFO
from aurora.solution.schema import FORMAT_VERSION, validate_manifest
from aurora.solution.store import (
    NOVELTY_QUANTILE,
    PLACEMENT_NEIGHBOURS,
    aurora_version,
    neighbour_distances,
    novelty_threshold,
)

if TYPE_CHECKING:
    from aurora.report.record import RunRecord

#: Packages whose versions the manifest records.
_PACKAGES = ("numpy", "scikit-learn", "torch", "timm", "umap-learn", "safetensors")


def _package_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "aurora": aurora_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def _preprocess_dict(cfg: PreprocessConfig | Mapping[str, Any]) -> dict[str, Any]:
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return dataclasses.asdict(cfg)
    return dict(cfg)


def _build_run_extractor(record: RunRecord) -> Any:
    """The run's extractor, rebuilt from its (trusted, local) config, checked against the run."""
    extractor = build_extractor(record.extractor_cfg)
    if extractor.identity() != record.extractor_identity:
        raise SolutionError(
            f"cannot save the solution: extractor {record.extractor_name} rebuilt from its config "
            "is not the one that made the features (its weights changed during the run?)"
        )
    return extractor


def _copy_linear_map(entry: Path, tmp: Path) -> str:
    """Copy the reducer's affine map from its cache entry when it has one; returns the kind."""
    src = entry / LINEAR_FILE
    if not (entry / "meta.json").is_file():
        raise SolutionError(f"cannot save the solution: reducer cache entry {entry} is missing")
    if not src.is_file():
        return "neighbours"
    LinearMap.load(src).save(tmp / LINEAR_FILE)
    return "linear"


def _record_arrays(record: RunRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The run's (N,) int64 labels, (N, d) float32 embedding and (N, D) float32 features,
    checked to have one row per image id."""
    labels = np.asarray(record.labels, dtype=np.int64)
    embedding = np.asarray(record.embedding, dtype=np.float32)
    features = np.asarray(record.features, dtype=np.float32)
    n = len(record.ids)
    if labels.shape != (n,) or embedding.shape[0] != n or features.shape[0] != n:
        raise SolutionError(
            f"run record is inconsistent: {n} ids, labels {labels.shape}, "
            f"embedding {embedding.shape}, features {features.shape}"
        )
    return labels, embedding, features


def _write_arrays(
    tmp: Path,
    record: RunRecord,
    *,
    labels: np.ndarray,
    embedding: np.ndarray,
    features: np.ndarray,
    distances: np.ndarray,
) -> None:
    """``reference.npz`` (every image) and ``neighbours.npz`` (when any image is assigned)."""
    atomic_save_npz(
        tmp / REFERENCE,
        ids=np.asarray([str(i) for i in record.ids], dtype=str),
        features=features,
        embedding=embedding,
        labels=labels,
        moon=np.asarray(record.moon, dtype=bool),
        neighbour_distance=distances,
    )
    if (labels >= 0).any():
        FusedNeighbours(n_neighbors=1).fit(embedding, labels).save(tmp / NEIGHBOURS)


def _write_run_info(tmp: Path, record: RunRecord) -> None:
    """``run.json``: the run's resolved config and chosen fusion, for people (never read)."""
    run_info = {
        "run_dir": str(record.run_dir),
        "solution_cell": {k: v for k, v in record.solution_cell.items() if k != "cell_dir"},
        "reducer": record.reducer_cfg,
        "extractor": record.extractor_cfg,
        "fusion": record.summary.get("fusion"),
        "config": record.config,
    }
    atomic_write_text(tmp / RUN_INFO, json.dumps(run_info, indent=2, default=str) + "\n")


def _manifest(
    record: RunRecord,
    *,
    labels: np.ndarray,
    distances: np.ndarray,
    extractor_entry: Mapping[str, Any],
    transform: str,
    files: Mapping[str, str],
) -> dict[str, Any]:
    """The manifest's content: versions, counts, how images are prepared and placed, the files.

    Args:
        record: the run record.
        labels: (N,) fused labels (-1 unassigned).
        distances: (N,) from :func:`neighbour_distances`.
        extractor_entry: what :func:`export_extractor` wrote.
        transform: ``linear`` or ``neighbours`` (how a new image is placed in the embedding).
        files: relative file name -> SHA-256 of every file written so far.
    """
    return {
        "format": "aurora-solution",
        "format_version": FORMAT_VERSION,
        "aurora_version": aurora_version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": _package_versions(),
        "seed": int(record.seed),
        "n_reference": len(record.ids),
        "n_groups": n_groups(labels),
        "n_unassigned": int((labels < 0).sum()),
        "solution_cell": str(record.solution_cell.get("cell", "")),
        "features_key": str(record.features_key),
        "preprocess": _preprocess_dict(record.preprocess_cfg),
        "extractor": {"name": record.extractor_name, **extractor_entry},
        "reducer": {
            "name": str(record.solution_cell.get("reducer", "")),
            "transform": transform,
            "n_neighbors": PLACEMENT_NEIGHBOURS,
        },
        "novelty": {
            "space": "features",
            "quantile": NOVELTY_QUANTILE,
            "threshold": novelty_threshold(distances),
        },
        "files": dict(files),
    }


def _replace_folder(tmp: Path, out_dir: Path) -> None:
    """Rename the finished ``tmp`` to ``out_dir``, replacing an older folder of that name."""
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.rename(out_dir, old)
        os.rename(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out_dir)


def save_solution(record: RunRecord, out_dir: Path) -> Path:
    """Write the solution folder of a finished run (replacing an older one atomically).

    Args:
        record: the run record (:class:`aurora.report.record.RunRecord`).
        out_dir: destination folder, usually ``RUN/solution``.

    Returns:
        ``out_dir``.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    labels, embedding, features = _record_arrays(record)
    extractor = _build_run_extractor(record)
    distances = neighbour_distances(features, labels)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        extractor_entry = export_extractor(extractor, tmp)
        transform = _copy_linear_map(Path(record.reducer_entry), tmp)
        _write_arrays(
            tmp, record, labels=labels, embedding=embedding, features=features, distances=distances
        )
        _write_run_info(tmp, record)
        files = {
            p.relative_to(tmp).as_posix(): file_sha256(p)
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        manifest = _manifest(
            record,
            labels=labels,
            distances=distances,
            extractor_entry=extractor_entry,
            transform=transform,
            files=files,
        )
        text = json.dumps(manifest, indent=2) + "\n"
        validate_manifest(json.loads(text), tmp / MANIFEST)  # what load_solution will demand
        (tmp / MANIFEST).write_text(text)
        _replace_folder(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
