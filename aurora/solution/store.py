"""A saved solution: everything needed to label new images with the groups of a finished run.

This module holds the folder's layout, the :class:`Solution` it loads into and the reading
(:func:`load_solution`); :mod:`aurora.solution.save` writes it.

Layout of ``RUN/solution/`` (format 2; nothing in it is code or pickle)::

    manifest.json     format, versions, counts, preprocessing, extractor and reducer
                      description, novelty threshold, the SHA-256 of every other file
    reference.npz     ids (N,), features (N, D), embedding (N, d), labels (N,), moon (N,)
    neighbours.npz    the :class:`aurora.fusion.FusedNeighbours` model (assigned images)
    linear.npz        the reducer's affine map (PCA, identity), when it has one
    extractor/weights.safetensors   the extractor's weights (state dict)
    run.json          the run's resolved config and chosen fusion (for people; never read)

:func:`load_solution` reads the manifest as JSON, validates it against
:data:`aurora.solution.schema.MANIFEST_SCHEMA` (types, ranges, no ``_target_`` anywhere), checks
every file's SHA-256, reads the arrays with ``allow_pickle=False`` and the weights with
safetensors, and rebuilds the extractor from an allow-list of aurora's own classes. The hashes
detect a damaged or partly copied folder; they do not make a folder trustworthy (whoever edits a
file can rewrite its hash): what keeps a foreign folder harmless is that nothing in it is run.
A format-1 folder (pickled reducer, extractor built from a ``_target_``) is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.neighbors import NearestNeighbors

from aurora.cache import file_sha256
from aurora.fusion import FusedNeighbours, FusionError
from aurora.preprocess import PreprocessConfig
from aurora.reduction import LINEAR_FILE, LinearMap
from aurora.solution.errors import (
    SolutionError,
    SolutionIntegrityError,
    SolutionVersionError,
)
from aurora.solution.extractor import SolutionExtractor, rebuild_extractor
from aurora.solution.schema import FORMAT_VERSION, validate_manifest

MANIFEST = "manifest.json"
REFERENCE = "reference.npz"
NEIGHBOURS = "neighbours.npz"
RUN_INFO = "run.json"
#: Nearest reference images whose embedding places a new image when the reducer is not affine.
PLACEMENT_NEIGHBOURS = 5
#: Quantile of the reference set's own nearest-neighbour distances (feature space) above which
#: a new image is called novel. Feature space, not the embedding: there a new image's distance
#: to the reference set is distributed like a reference image's leave-one-out distance, so the
#: 0.99 quantile flags about 1 % of images from the same population; a reducer such as UMAP
#: pulls its training points together, which new (transformed) points do not share.
NOVELTY_QUANTILE = 0.99


def aurora_version() -> str:
    """Installed version of the ``aurora`` package (``0+unknown`` when not installed)."""
    try:
        return metadata.version("aurora")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"


def _major(version: str) -> str:
    return version.split(".", 1)[0]


@dataclass
class Solution:
    """A loaded, verified solution.

    Attributes:
        path: the solution folder.
        manifest: the parsed, schema-checked ``manifest.json``.
        preprocess_cfg: the preprocessing chain of the reference images.
        extractor: the rebuilt extractor (weights from the folder, identity checked).
        linear: the reducer's affine map, or None (new images are then placed by their
            nearest reference images in feature space).
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
    extractor: SolutionExtractor
    linear: LinearMap | None
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

    @property
    def placement_neighbours(self) -> int:
        """Reference images that place a new image when the reducer is not affine."""
        return int(self.manifest["reducer"]["n_neighbors"])


def neighbour_distances(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each assigned reference image's distance to its nearest other assigned image.

    Args:
        features: (N, D) reference features (or any points).
        labels: (N,) fused labels; only assigned images (>= 0) count, as only they vote.

    Returns:
        (N,) float32 distances, NaN for unassigned images (all NaN when fewer than two are
        assigned).
    """
    assigned = np.asarray(labels) >= 0
    out = np.full(len(assigned), np.nan, dtype=np.float32)
    x = np.asarray(features, dtype=np.float32)[assigned]
    if len(x) >= 2:
        dist, _ = NearestNeighbors(n_neighbors=2).fit(x).kneighbors(x)
        out[assigned] = dist[:, 1]
    return out


def novelty_threshold(distances: np.ndarray, quantile: float = NOVELTY_QUANTILE) -> float | None:
    """The ``quantile`` of the reference images' leave-one-out neighbour distances.

    Args:
        distances: (N,) from :func:`neighbour_distances` (NaN = not counted).
        quantile: in (0, 1].

    Returns:
        The threshold, or None when fewer than two images are assigned.
    """
    d = np.asarray(distances, dtype=np.float64)
    d = d[np.isfinite(d)]
    return float(np.quantile(d, quantile)) if len(d) >= 2 else None


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
    if fmt == 1:
        raise SolutionVersionError(
            f"solution {path} is in format 1, which stores a pickled reducer and names its "
            "extractor's class by `_target_`: loading it could run code, so this aurora refuses "
            "it. Re-export it in format 2 from the run that made it: `python -m aurora.solution "
            "export RUN_DIR` (RUN_DIR is the folder holding solution/ and .hydra/; it reruns "
            "that configuration from the cache)"
        )
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


def _read_arrays(
    path: Path, n: int, n_groups: int
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The reference arrays, checked for shape, dtype, finiteness and label range."""
    try:
        with np.load(path / REFERENCE, allow_pickle=False) as z:
            ids = [str(i) for i in z["ids"]]
            features = np.asarray(z["features"], dtype=np.float32)
            embedding = np.asarray(z["embedding"], dtype=np.float32)
            labels = np.asarray(z["labels"])
            distances = np.asarray(z["neighbour_distance"], dtype=np.float64)
    except (OSError, KeyError, ValueError) as err:
        raise SolutionError(f"cannot read {path / REFERENCE}: {err}") from err
    if (
        len(ids) != n
        or features.ndim != 2
        or embedding.ndim != 2
        or features.shape[0] != n
        or embedding.shape[0] != n
        or labels.shape != (n,)
        or distances.shape != (n,)
    ):
        raise SolutionError(
            f"{path / REFERENCE}: {len(ids)} ids, features {features.shape}, embedding "
            f"{embedding.shape}, labels {labels.shape}; the manifest records {n} images"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise SolutionError(f"{path / REFERENCE}: labels are {labels.dtype}, not integers")
    if labels.min() < -1 or labels.max() >= n_groups:
        raise SolutionError(
            f"{path / REFERENCE}: labels range {labels.min()}..{labels.max()}, outside -1.."
            f"{n_groups - 1} for the manifest's {n_groups} groups"
        )
    if not (np.isfinite(features).all() and np.isfinite(embedding).all()):
        raise SolutionError(f"{path / REFERENCE}: features or embedding hold NaN or inf")
    return ids, features, embedding, labels.astype(np.int64), distances


def _check_counts(
    manifest: Mapping[str, Any], labels: np.ndarray, distances: np.ndarray, path: Path
) -> None:
    """The manifest's numbers must follow from the reference arrays they describe."""
    assigned = labels >= 0
    n_groups = int(labels.max() + 1) if assigned.any() else 0
    found = {"n_groups": n_groups, "n_unassigned": int((~assigned).sum())}
    for key, value in found.items():
        if manifest[key] != value:
            raise SolutionError(
                f"{path / MANIFEST}: {key} is {manifest[key]}, but reference.npz has {value}"
            )
    novelty = manifest["novelty"]
    expected = novelty_threshold(distances, float(novelty["quantile"]))
    given = novelty["threshold"]
    if (expected is None) != (given is None) or (
        expected is not None and not np.isclose(given, expected, rtol=1e-6, atol=0.0)
    ):
        raise SolutionError(
            f"{path / MANIFEST}: novelty.threshold is {given}, but the {novelty['quantile']} "
            f"quantile of the reference set's neighbour distances is {expected}"
        )


def load_solution(path: str | Path) -> Solution:
    """Read and verify a solution folder written by :func:`save_solution`.

    Nothing read from the folder is executed: JSON validated against the schema, arrays
    without pickle, weights with safetensors into an allow-listed class.

    Args:
        path: the solution folder.

    Returns:
        The verified :class:`Solution`.

    Raises:
        SolutionIntegrityError: a file is missing or changed.
        SolutionVersionError: another format version or aurora major version.
        SolutionError: anything else that makes the folder unusable (a manifest value out of
            its range, an extractor outside the allow-list, ...).
    """
    path = Path(path).expanduser()
    manifest = _read_manifest(path)
    _check_versions(manifest, path)
    validate_manifest(manifest, path / MANIFEST)
    _check_files(manifest, path)
    files = manifest["files"]
    n_groups = int(manifest["n_groups"])
    ids, features, embedding, labels, distances = _read_arrays(
        path, int(manifest["n_reference"]), n_groups
    )
    _check_counts(manifest, labels, distances, path)
    if NEIGHBOURS not in files:
        raise SolutionError(f"solution {path} has no assigned image: it cannot label anything")
    try:
        neighbours = FusedNeighbours.load(path / NEIGHBOURS)
    except FusionError as err:
        raise SolutionError(str(err)) from err
    linear = None
    if manifest["reducer"]["transform"] == "linear":
        if LINEAR_FILE not in files:
            raise SolutionIntegrityError(f"solution {path}: the manifest lists no {LINEAR_FILE}")
        try:
            linear = LinearMap.load(path / LINEAR_FILE)
        except (OSError, ValueError) as err:
            raise SolutionError(f"cannot read {path / LINEAR_FILE}: {err}") from err
        if linear.components.shape != (embedding.shape[1], features.shape[1]):
            raise SolutionError(
                f"solution {path}: the reducer maps {linear.components.shape[1]} -> "
                f"{linear.components.shape[0]} dimensions; the reference is "
                f"{features.shape[1]} -> {embedding.shape[1]}"
            )
    try:
        preprocess = PreprocessConfig(**manifest["preprocess"])
    except (TypeError, ValueError) as err:
        raise SolutionError(f"solution {path}: bad preprocessing config: {err}") from err
    ext = manifest["extractor"]
    if ext["weights"] not in files:
        raise SolutionIntegrityError(f"solution {path}: the manifest lists no {ext['weights']}")
    extractor = rebuild_extractor(ext, path)
    if extractor.num_features != features.shape[1]:
        raise SolutionError(
            f"solution {path}: the extractor gives {extractor.num_features} features, the "
            f"reference has {features.shape[1]}"
        )
    return Solution(
        path=path,
        manifest=manifest,
        preprocess_cfg=preprocess,
        extractor=extractor,
        linear=linear,
        ids=ids,
        features=features,
        embedding=embedding,
        labels=labels,
        neighbours=neighbours,
        novelty_threshold=manifest["novelty"]["threshold"],
    )
