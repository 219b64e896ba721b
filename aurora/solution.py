"""A saved solution: everything needed to label new images with the groups of a finished run.

Layout of ``RUN/solution/``::

    manifest.json       format + package versions, resolved configs, extractor identity,
                        novelty threshold, and the SHA-256 of every other file
    reference.npz       ids (N,), features (N, D), embedding (N, d), labels (N,), moon (N,)
    neighbours.npz      the :class:`aurora.fusion.FusedNeighbours` model (assigned images only)
    reducer.joblib      the fitted reducer, when it was small enough to store (pickle: its
                        SHA-256 is checked before it is loaded; a changed file is refused)
    reducer_meta.json   the reducer cache entry's ``meta.json``
    extractor/...       the checkpoint (our encoders) or local weights file (timm), when the
                        extractor was built from a file, so the folder is self-contained

Everything except ``reducer.joblib`` is JSON or NumPy ``.npz`` read with
``allow_pickle=False``. :func:`load_solution` refuses a folder with a missing or changed file,
another format version or another aurora major version, with a message that names the problem.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aurora.cache import atomic_save_npz, file_sha256
from aurora.pipeline import PipelineError
from aurora.preprocess import PreprocessConfig

if TYPE_CHECKING:
    from aurora.fusion import FusedNeighbours
    from aurora.pipeline import RunRecord

#: Bump when the layout or the meaning of a stored file changes.
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REFERENCE = "reference.npz"
NEIGHBOURS = "neighbours.npz"
REDUCER = "reducer.joblib"
REDUCER_META = "reducer_meta.json"
EXTRACTOR_DIR = "extractor"
#: Quantile of the reference set's own nearest-neighbour distances (feature space) above which
#: a new image is called novel. Feature space, not the embedding: there a new image's distance
#: to the reference set is distributed like a reference image's leave-one-out distance, so the
#: 0.99 quantile flags about 1 % of images from the same population; a reducer such as UMAP
#: pulls its training points together, which new (transformed) points do not share.
NOVELTY_QUANTILE = 0.99
_PACKAGES = ("numpy", "scikit-learn", "torch", "timm", "umap-learn", "joblib", "hydra-core")


class SolutionError(PipelineError):
    """A solution folder that cannot be used; the message names the file or the mismatch."""


class SolutionIntegrityError(SolutionError):
    """A file of the solution is missing or its SHA-256 differs from the manifest."""


class SolutionVersionError(SolutionError):
    """The solution was written by an incompatible format or aurora version."""


def aurora_version() -> str:
    """Installed version of the ``aurora`` package (``0+unknown`` when not installed)."""
    try:
        return metadata.version("aurora")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"


def _package_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "aurora": aurora_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def _major(version: str) -> str:
    return version.split(".", 1)[0]


@dataclass
class Solution:
    """A loaded, verified solution.

    Attributes:
        path: the solution folder.
        manifest: the parsed ``manifest.json``.
        preprocess_cfg: the preprocessing chain of the reference images.
        extractor_cfg: extractor node (``_target_``, ``meta``) with file paths made absolute.
        extractor_identity: the identity the rebuilt extractor must reproduce.
        reducer: the fitted reducer, or None (new images are then placed by nearest
            neighbours in feature space).
        ids: (N,) reference image ids.
        features: (N, D) float32 reference features.
        embedding: (N, d) float32 reference embedding.
        labels: (N,) int64 fused labels (-1 unassigned).
        neighbours: the nearest-group model fitted on the assigned reference images.
        novelty_threshold: feature-space distance to the nearest assigned reference image
            above which a new image is novel (None = never).
    """

    path: Path
    manifest: dict[str, Any]
    preprocess_cfg: PreprocessConfig
    extractor_cfg: dict[str, Any]
    extractor_identity: dict[str, Any]
    reducer: Any | None
    ids: list[str]
    features: np.ndarray
    embedding: np.ndarray
    labels: np.ndarray
    neighbours: FusedNeighbours
    novelty_threshold: float | None

    @property
    def n_groups(self) -> int:
        """Number of fused groups."""
        return int(self.manifest["n_groups"])


def novelty_threshold(
    embedding: np.ndarray, labels: np.ndarray, quantile: float = NOVELTY_QUANTILE
) -> float | None:
    """The ``quantile`` of the assigned reference images' leave-one-out neighbour distances.

    Args:
        embedding: (N, D) reference features (or any points).
        labels: (N,) fused labels; only assigned images (>= 0) count, as only they vote.
        quantile: in (0, 1].

    Returns:
        The threshold, or None when fewer than two images are assigned.
    """
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(embedding, dtype=np.float32)[np.asarray(labels) >= 0]
    if len(x) < 2:
        return None
    dist, _ = NearestNeighbors(n_neighbors=2).fit(x).kneighbors(x)
    return float(np.quantile(dist[:, 1], quantile))


def _preprocess_dict(cfg: PreprocessConfig | Mapping[str, Any]) -> dict[str, Any]:
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return dataclasses.asdict(cfg)
    return dict(cfg)


def _copy_extractor_files(extractor_cfg: Mapping[str, Any], tmp: Path) -> dict[str, Any]:
    """Copy the checkpoint / local weights file into the solution; paths become relative."""
    cfg = json.loads(json.dumps(dict(extractor_cfg), default=str))
    for key in ("ckpt_path", "weights"):
        value = cfg.get(key)
        if not value:
            continue
        src = Path(str(value)).expanduser()
        if not src.is_file():
            raise SolutionError(
                f"cannot save the solution: extractor {key} {src} does not exist "
                "(the solution must carry the file its features came from)"
            )
        (tmp / EXTRACTOR_DIR).mkdir(exist_ok=True)
        rel = f"{EXTRACTOR_DIR}/{key}_{src.name}"
        shutil.copyfile(src, tmp / rel)
        cfg[key] = rel
    return cfg


def _copy_reducer(entry: Path, tmp: Path) -> tuple[str, str | None]:
    """Copy the fitted reducer of a cache entry; returns (transform kind, sha256 or None)."""
    meta_path = entry / "meta.json"
    if not meta_path.is_file():
        raise SolutionError(
            f"cannot save the solution: reducer cache entry {entry} has no meta.json"
        )
    meta = json.loads(meta_path.read_text())
    shutil.copyfile(meta_path, tmp / REDUCER_META)
    src = entry / REDUCER
    if meta.get("transform") != "reducer" or not src.is_file():
        return "nearest_neighbours", None
    expected = (entry / "reducer.sha256").read_text().strip()
    actual = file_sha256(src)
    if actual != expected:
        raise SolutionIntegrityError(
            f"cached reducer {src} has SHA-256 {actual}, expected {expected}; not copying it"
        )
    shutil.copyfile(src, tmp / REDUCER)
    return "reducer", actual


def save_solution(record: RunRecord, out_dir: Path) -> Path:
    """Write the solution folder of a finished run (replacing an older one atomically).

    Args:
        record: the run record (:class:`aurora.pipeline.RunRecord`).
        out_dir: destination folder, usually ``RUN/solution``.

    Returns:
        ``out_dir``.
    """
    from aurora.fusion import FusedNeighbours

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(record.labels, dtype=np.int64)
    embedding = np.asarray(record.embedding, dtype=np.float32)
    features = np.asarray(record.features, dtype=np.float32)
    n = len(record.ids)
    if labels.shape != (n,) or embedding.shape[0] != n or features.shape[0] != n:
        raise SolutionError(
            f"run record is inconsistent: {n} ids, labels {labels.shape}, "
            f"embedding {embedding.shape}, features {features.shape}"
        )
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        extractor_cfg = _copy_extractor_files(record.extractor_cfg, tmp)
        transform, reducer_sha = _copy_reducer(Path(record.reducer_entry), tmp)
        atomic_save_npz(
            tmp / REFERENCE,
            ids=np.asarray([str(i) for i in record.ids], dtype=str),
            features=features,
            embedding=embedding,
            labels=labels,
            moon=np.asarray(record.moon, dtype=bool),
        )
        assigned = labels >= 0
        if assigned.any():
            FusedNeighbours(n_neighbors=1).fit(embedding, labels).save(tmp / NEIGHBOURS)
        threshold = novelty_threshold(features, labels)
        files = {
            p.relative_to(tmp).as_posix(): file_sha256(p)
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        manifest = {
            "format": "aurora-solution",
            "format_version": FORMAT_VERSION,
            "aurora_version": aurora_version(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": _package_versions(),
            "run_dir": str(record.run_dir),
            "seed": int(record.seed),
            "n_reference": n,
            "n_groups": int(labels.max() + 1) if assigned.any() else 0,
            "n_unassigned": int((~assigned).sum()),
            "solution_cell": {k: v for k, v in record.solution_cell.items() if k != "cell_dir"},
            "preprocess": _preprocess_dict(record.preprocess_cfg),
            "extractor": {
                "name": record.extractor_name,
                "config": extractor_cfg,
                "identity": record.extractor_identity,
                "weights_sha256": record.extractor_identity.get("weights_sha256")
                or record.extractor_identity.get("ckpt_sha256"),
            },
            "features_key": record.features_key,
            "reducer": {
                "config": record.reducer_cfg,
                "transform": transform,
                "sha256": reducer_sha,
            },
            "novelty": {"space": "features", "quantile": NOVELTY_QUANTILE, "threshold": threshold},
            "fusion": record.summary.get("fusion"),
            "config": record.config,
            "files": files,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.rename(out_dir, old)
            os.rename(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _read_manifest(path: Path) -> dict[str, Any]:
    mpath = path / MANIFEST
    if not path.is_dir():
        raise SolutionError(f"solution folder {path} does not exist")
    if not mpath.is_file():
        raise SolutionIntegrityError(
            f"solution {path} is incomplete: missing {MANIFEST} (is this a run's solution/ folder?)"
        )
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SolutionIntegrityError(f"{mpath} is not valid JSON: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != "aurora-solution":
        raise SolutionError(f"{mpath} is not an aurora solution manifest")
    return manifest


def _check_versions(manifest: Mapping[str, Any], path: Path) -> None:
    fmt = manifest.get("format_version")
    if fmt != FORMAT_VERSION:
        raise SolutionVersionError(
            f"solution {path} has format version {fmt}; this aurora ({aurora_version()}) reads "
            f"format {FORMAT_VERSION}: re-run `python cluster.py` to make a new solution"
        )
    made_by = str(manifest.get("aurora_version", "?"))
    if _major(made_by) != _major(aurora_version()):
        raise SolutionVersionError(
            f"solution {path} was made by aurora {made_by}, incompatible with the installed "
            f"aurora {aurora_version()} (different major version): re-run `python cluster.py` "
            f"with this version, or apply with aurora {_major(made_by)}.x"
        )


def _check_files(manifest: Mapping[str, Any], path: Path) -> None:
    files = manifest.get("files")
    if not isinstance(files, Mapping) or REFERENCE not in files:
        raise SolutionIntegrityError(f"{path / MANIFEST} lists no files (or no {REFERENCE})")
    for rel, expected in files.items():
        f = path / rel
        if not f.is_file():
            raise SolutionIntegrityError(f"solution {path} is incomplete: missing file {rel}")
        actual = file_sha256(f)
        if actual != expected:
            raise SolutionIntegrityError(
                f"solution file {f} has SHA-256 {actual}, but the manifest records {expected}: "
                "the file was changed after the solution was saved; refusing to use it"
            )


def _absolute_paths(cfg: Mapping[str, Any], path: Path) -> dict[str, Any]:
    out = dict(cfg)
    for key in ("ckpt_path", "weights"):
        value = out.get(key)
        if value and str(value).startswith(f"{EXTRACTOR_DIR}/"):
            out[key] = str((path / str(value)).resolve())
    return out


def load_solution(path: str | Path) -> Solution:
    """Read and verify a solution folder written by :func:`save_solution`.

    Args:
        path: the solution folder.

    Returns:
        The verified :class:`Solution`.

    Raises:
        SolutionIntegrityError: a file is missing or changed.
        SolutionVersionError: another format version or aurora major version.
        SolutionError: anything else that makes the folder unusable.
    """
    import joblib

    from aurora.fusion import FusedNeighbours
    from aurora.fusion.voting import FusionError

    path = Path(path).expanduser()
    manifest = _read_manifest(path)
    _check_versions(manifest, path)
    _check_files(manifest, path)  # every file's SHA-256, before anything is unpickled
    files = manifest["files"]
    try:
        with np.load(path / REFERENCE, allow_pickle=False) as z:
            ids = [str(i) for i in z["ids"]]
            features = np.asarray(z["features"], dtype=np.float32)
            embedding = np.asarray(z["embedding"], dtype=np.float32)
            labels = np.asarray(z["labels"], dtype=np.int64)
    except (OSError, KeyError, ValueError) as err:
        raise SolutionError(f"cannot read {path / REFERENCE}: {err}") from err
    if NEIGHBOURS not in files:
        raise SolutionError(f"solution {path} has no assigned image: it cannot label anything")
    try:
        neighbours = FusedNeighbours.load(path / NEIGHBOURS)
    except FusionError as err:
        raise SolutionError(str(err)) from err
    reducer = None
    if manifest["reducer"]["transform"] == "reducer":
        if REDUCER not in files or files[REDUCER] != manifest["reducer"]["sha256"]:
            raise SolutionIntegrityError(
                f"solution {path}: the manifest's reducer SHA-256 and file list disagree"
            )
        reducer = joblib.load(path / REDUCER)  # SHA-256 verified above
    try:
        preprocess = PreprocessConfig(**manifest["preprocess"])
    except (TypeError, ValueError) as err:
        raise SolutionError(f"solution {path}: bad preprocessing config: {err}") from err
    ext = manifest["extractor"]
    return Solution(
        path=path,
        manifest=manifest,
        preprocess_cfg=preprocess,
        extractor_cfg=_absolute_paths(ext["config"], path),
        extractor_identity=dict(ext["identity"]),
        reducer=reducer,
        ids=ids,
        features=features,
        embedding=embedding,
        labels=labels,
        neighbours=neighbours,
        novelty_threshold=manifest["novelty"]["threshold"],
    )
