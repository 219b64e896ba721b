"""A saved solution: everything needed to label new images with the groups of a finished run.

This module holds the :class:`Solution` a folder loads into and the reading
(:func:`load_solution`); the folder's layout is :mod:`aurora.solution.layout`, the checks of what
it declares before anything is loaded :mod:`aurora.solution.declared`, and
:mod:`aurora.solution.save` writes it.

:func:`load_solution` reads the manifest as strict JSON (no NaN or Infinity, nesting bounded),
validates it against :data:`aurora.solution.schema.MANIFEST_SCHEMA` (closed at every level,
types, ranges, no ``_target_`` anywhere), checks that every file is a regular file inside the
folder (no symbolic link out of it, no device) with the recorded SHA-256, compares what the
files declare (counts, ``.npz`` headers, the network the extractor's parameters describe, built
on the meta device) with :class:`aurora.solution.limits.SolutionLimits` and this machine's
memory before anything of that size is allocated, reads the arrays with ``allow_pickle=False``
and the weights with safetensors, and rebuilds the extractor from an allow-list of aurora's own
classes. The hashes
detect a damaged or partly copied folder; they do not make a folder trustworthy (whoever edits a
file can rewrite its hash): what keeps a foreign folder harmless is that nothing in it is run.
A format-1 folder (pickled reducer, extractor built from a ``_target_``) is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.neighbors import NearestNeighbors

from aurora.fusion import FusedNeighbours, FusionError
from aurora.grid.scoring import n_groups
from aurora.preprocess import PreprocessConfig
from aurora.reduction import LINEAR_FILE, LinearMap
from aurora.solution.declared import check_array_headers, check_declared, check_files, check_network
from aurora.solution.errors import SolutionError, SolutionIntegrityError, SolutionVersionError
from aurora.solution.extractor import SolutionExtractor, rebuild_extractor
from aurora.solution.layout import MANIFEST, NEIGHBOURS, REFERENCE
from aurora.solution.limits import SolutionLimits, read_limited, solution_file, strict_json
from aurora.solution.schema import FORMAT_VERSION, validate_manifest

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


def _read_manifest(path: Path, limits: SolutionLimits) -> dict[str, Any]:
    if not path.is_dir():
        raise SolutionError(f"solution folder {path} does not exist")
    try:
        mpath = solution_file(path, MANIFEST)
    except SolutionIntegrityError:
        raise SolutionIntegrityError(
            f"solution {path} is incomplete: missing {MANIFEST} (is this a run's solution/ folder?)"
        ) from None
    data = read_limited(mpath, limits.max_manifest_bytes, str(mpath), "max_manifest_bytes")
    manifest = strict_json(data, str(mpath), limits.max_json_depth)
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


def _read_neighbours(path: Path, n_assigned: int) -> FusedNeighbours:
    """The nearest-group model, its scalars checked before it is built."""
    file = path / NEIGHBOURS
    try:
        with np.load(file, allow_pickle=False) as z:
            k = int(z["n_neighbors"])
            max_distance = float(z["max_distance"])
    except (OSError, KeyError, ValueError) as err:
        raise SolutionError(f"cannot read {file}: {err}") from err
    if not 1 <= k <= n_assigned:
        raise SolutionError(
            f"{NEIGHBOURS}: n_neighbors is {k}; it must be 1..{n_assigned} (the assigned "
            "reference images that can vote)"
        )
    if not (np.isnan(max_distance) or 0 <= max_distance < np.inf):
        raise SolutionError(
            f"{NEIGHBOURS}: max_distance is {max_distance}; it must be >= 0 and finite (NaN: none)"
        )
    try:
        return FusedNeighbours.load(file)
    except (FusionError, ValueError) as err:
        raise SolutionError(" ".join(str(err).split())) from err


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
    found = {"n_groups": n_groups(labels), "n_unassigned": int((~assigned).sum())}
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


def load_solution(path: str | Path, limits: SolutionLimits | None = None) -> Solution:
    """Read and verify a solution folder written by :func:`save_solution`.

    Nothing read from the folder is executed: JSON validated against the schema, arrays
    without pickle, weights with safetensors into an allow-listed class. Nothing is allocated
    from what the folder merely declares: counts, array headers and the network its parameters
    describe are checked against ``limits`` (and this machine's memory) first, and every file
    must be a regular file inside the folder.

    Args:
        path: the solution folder.
        limits: the largest solution to read (default :class:`SolutionLimits`).

    Returns:
        The verified :class:`Solution`.

    Raises:
        SolutionIntegrityError: a file is missing or changed.
        SolutionVersionError: another format version or aurora major version.
        SolutionError: anything else that makes the folder unusable (a manifest value out of
            its range, a declared size above a limit, a link out of the folder, an extractor
            outside the allow-list, ...).
    """
    limits = limits or SolutionLimits()
    path = Path(path).expanduser()
    manifest = _read_manifest(path, limits)
    _check_versions(manifest, path)
    validate_manifest(manifest, path / MANIFEST)
    check_declared(manifest, path, limits)
    check_files(manifest, path, limits)
    files = manifest["files"]
    if NEIGHBOURS not in files:
        raise SolutionError(f"solution {path} has no assigned image: it cannot label anything")
    ext = manifest["extractor"]
    if ext["weights"] not in files:
        raise SolutionIntegrityError(f"solution {path}: the manifest lists no {ext['weights']}")
    if manifest["reducer"]["transform"] == "linear" and LINEAR_FILE not in files:
        raise SolutionIntegrityError(f"solution {path}: the manifest lists no {LINEAR_FILE}")
    declared = check_array_headers(manifest, path, limits)
    check_network(manifest, path, limits)
    n_groups = int(manifest["n_groups"])
    ids, features, embedding, labels, distances = _read_arrays(path, declared.n, n_groups)
    _check_counts(manifest, labels, distances, path)
    neighbours = _read_neighbours(path, declared.n_assigned)
    linear = None
    if manifest["reducer"]["transform"] == "linear":
        try:
            linear = LinearMap.load(path / LINEAR_FILE)
        except (OSError, ValueError) as err:
            raise SolutionError(f"cannot read {path / LINEAR_FILE}: {err}") from err
    try:
        preprocess = PreprocessConfig(**manifest["preprocess"])
    except (TypeError, ValueError) as err:
        raise SolutionError(f"solution {path}: bad preprocessing config: {err}") from err
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
