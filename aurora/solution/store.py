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
from aurora.infra.cache import file_sha256
from aurora.infra.errors import format_size
from aurora.preprocess import PreprocessConfig
from aurora.reduction import LINEAR_FILE, LinearMap
from aurora.solution.errors import (
    SolutionError,
    SolutionExtractorError,
    SolutionIntegrityError,
    SolutionVersionError,
)
from aurora.solution.extractor import ALLOWED_EXTRACTORS, SolutionExtractor, rebuild_extractor
from aurora.solution.headers import (
    ArrayHeader,
    check_stored,
    expect_array,
    npz_headers,
    safetensors_tensors,
)
from aurora.solution.limits import (
    MiB,
    SolutionLimits,
    over_limit,
    read_limited,
    solution_file,
    strict_json,
)
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


def _check_declared(manifest: Mapping[str, Any], path: Path, limits: SolutionLimits) -> None:
    """The manifest's counts and image sizes against the limits (before anything is read)."""
    where = path / MANIFEST
    if manifest["n_reference"] > limits.max_reference:
        raise over_limit(
            f"{where}: n_reference", manifest["n_reference"], limits.max_reference, "max_reference"
        )
    ext = manifest["extractor"]
    sizes = {"preprocess.size": manifest["preprocess"].get("size")}
    sizes["extractor.params.input_size"] = ext["params"].get("input_size")  # timm, checkpoint
    if ext["kind"] == "checkpoint":
        sizes["extractor.params.hparams.image_size"] = ext["params"]["hparams"].get("image_size")
    for field, size in sizes.items():
        if isinstance(size, int | float) and size > limits.max_image_size:
            raise over_limit(f"{where}: {field}", size, limits.max_image_size, "max_image_size")


def _check_files(manifest: Mapping[str, Any], path: Path, limits: SolutionLimits) -> None:
    """Every listed file: inside the folder (no link out of it), regular, within its size
    limit, and with the recorded SHA-256."""
    files = manifest.get("files")
    if not isinstance(files, Mapping) or REFERENCE not in files:
        raise SolutionIntegrityError(f"{path / MANIFEST} lists no files (or no {REFERENCE})")
    weights = manifest["extractor"]["weights"]
    for rel, expected in files.items():
        f = solution_file(path, rel)
        size = f.stat().st_size
        if rel == weights and size > limits.max_weights_bytes:
            raise over_limit(
                f"the size of {f}", size, limits.max_weights_bytes, "max_weights_bytes"
            )
        actual = file_sha256(f)
        if actual != expected:
            raise SolutionIntegrityError(
                f"solution file {f} has SHA-256 {actual}, but the manifest records {expected}: "
                "the file was changed after the solution was saved; refusing to use it"
            )


@dataclass(frozen=True)
class _Declared:
    """What the solution's arrays declare, from their headers (nothing loaded yet)."""

    n: int
    n_features: int
    n_dims: int
    n_assigned: int
    nbytes: int


def _check_memory(
    arrays: Mapping[str, list[ArrayHeader]], path: Path, limits: SolutionLimits
) -> int:
    """The memory the arrays declared so far take once loaded, against what this machine has.

    Loading converts dtypes (a copy) and the neighbour searches index the arrays: twice what
    the files hold is what loading and applying take at most.

    Returns:
        That memory in bytes.
    """
    held = {name: sum(h.nbytes for h in headers) for name, headers in arrays.items()}
    need = 2 * sum(held.values())
    memory, source = limits.memory()
    if need > memory:
        parts = ", ".join(f"{name} {format_size(b)}" for name, b in held.items())
        raise SolutionError(
            f"solution {path}: its arrays take {format_size(need)} once loaded ({parts}, twice "
            f"for the copies loading makes), above the {format_size(memory)} this machine can "
            f"give ({source}); refusing it before allocating anything"
        )
    return need


def _check_array_headers(
    manifest: Mapping[str, Any], path: Path, limits: SolutionLimits
) -> _Declared:
    """Shapes, dtypes and sizes of every array, from the ``.npz`` headers, against the manifest,
    the limits and the memory this machine has.

    Raises:
        SolutionError: an array of another shape or dtype, a dimension above its limit, or
            arrays that would not fit in memory; the message names the file, the array, the
            declared value and the limit.
    """
    n = int(manifest["n_reference"])
    files = manifest["files"]
    ref = npz_headers(path / REFERENCE, REFERENCE)
    features = expect_array(ref, REFERENCE, "features", (n, None), "f")
    embedding = expect_array(ref, REFERENCE, "embedding", (n, None), "f")
    n_features, n_dims = features.shape[1], embedding.shape[1]
    if n_features > limits.max_features:
        raise over_limit(
            f"{REFERENCE}: features per image", n_features, limits.max_features, "max_features"
        )
    if n_dims > limits.max_embedding:
        raise over_limit(
            f"{REFERENCE}: embedding dimensions", n_dims, limits.max_embedding, "max_embedding"
        )
    ids = expect_array(ref, REFERENCE, "ids", (n,), "U")
    if ids.dtype.itemsize > 4 * limits.max_id_chars:
        raise over_limit(
            f"{REFERENCE}: the length of an image id",
            ids.dtype.itemsize // 4,
            limits.max_id_chars,
            "max_id_chars",
        )
    expect_array(ref, REFERENCE, "labels", (n,), "iu")
    expect_array(ref, REFERENCE, "neighbour_distance", (n,), "f")
    if "moon" in ref:
        expect_array(ref, REFERENCE, "moon", (n,), "b")
    arrays: dict[str, list[ArrayHeader]] = {REFERENCE: list(ref.values())}
    _check_memory(arrays, path, limits)
    check_stored(ref, REFERENCE)
    n_assigned = 0
    if NEIGHBOURS in files:
        nb = npz_headers(path / NEIGHBOURS, NEIGHBOURS)
        emb = expect_array(nb, NEIGHBOURS, "embedding", (None, n_dims), "f")
        n_assigned = emb.shape[0]
        if not 1 <= n_assigned <= n:
            raise SolutionError(
                f"{NEIGHBOURS}: {n_assigned} assigned images; the reference has {n} images"
            )
        expect_array(nb, NEIGHBOURS, "labels", (n_assigned,), "iu")
        expect_array(nb, NEIGHBOURS, "n_neighbors", (), "iu")
        expect_array(nb, NEIGHBOURS, "max_distance", (), "f")
        fmt = expect_array(nb, NEIGHBOURS, "format", (), "U")
        if fmt.dtype.itemsize > 4 * 64:
            raise SolutionError(f"{NEIGHBOURS}: its format name is {fmt.dtype}, not a short text")
        arrays[NEIGHBOURS] = list(nb.values())
        _check_memory(arrays, path, limits)
        check_stored(nb, NEIGHBOURS)
    if manifest["reducer"]["transform"] == "linear" and LINEAR_FILE in files:
        lin = npz_headers(path / LINEAR_FILE, LINEAR_FILE)
        expect_array(lin, LINEAR_FILE, "mean", (n_features,), "f")
        expect_array(lin, LINEAR_FILE, "components", (n_dims, n_features), "f")
        expect_array(lin, LINEAR_FILE, "scale", (n_dims,), "f")
        arrays[LINEAR_FILE] = list(lin.values())
        check_stored(lin, LINEAR_FILE)
    return _Declared(n, n_features, n_dims, n_assigned, _check_memory(arrays, path, limits))


def _declared_network(kind: str, params: Mapping[str, Any], path: Path) -> Any:
    """The network ``params`` declare, built on the meta device: shapes without memory."""
    import torch

    try:
        with torch.device("meta"):
            if kind == "timm":
                import timm

                from aurora.models.timm_config import check_model_kwargs

                name = str(params["model_name"])
                if not timm.is_model(name):
                    raise SolutionError(f"timm has no model named {name!r}")
                kwargs = check_model_kwargs(name, params.get("model_kwargs") or {})
                kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
                return timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
            if kind == "checkpoint":
                from aurora.models.checkpoint import build_encoder

                hparams = dict(params["hparams"])
                return build_encoder(str(params["model_class"]), hparams, source=f"solution {path}")
            return ALLOWED_EXTRACTORS[kind].from_export(dict(params))
    except Exception as err:  # the arguments came from a file: any failure is the file's
        raise SolutionExtractorError(
            f"solution {path}: cannot build the {kind} extractor from its parameters: "
            f"{' '.join(str(err).split())}"
        ) from err


def _check_network(manifest: Mapping[str, Any], path: Path, limits: SolutionLimits) -> None:
    """The size of the network the extractor's parameters declare, against the weights file and
    :attr:`SolutionLimits.max_weights_bytes`, before the network is built for real.

    Raises:
        SolutionError: the declared network is larger than the limit, or than what its weights
            file holds (it could not be loaded; building it first would take that memory).
    """
    ext = manifest["extractor"]
    if ext["kind"] not in ALLOWED_EXTRACTORS:
        return  # rebuild_extractor refuses it, naming the allow-list
    weights = path / str(ext["weights"])
    tensors = safetensors_tensors(
        weights, str(ext["weights"]), 16 * MiB, max_depth=limits.max_json_depth
    )
    in_file = sum(nbytes for _, nbytes in tensors.values())
    network = _declared_network(str(ext["kind"]), ext["params"], path)
    unique = {id(t): t for t in [*network.parameters(), *network.buffers()]}.values()
    n_values = sum(t.numel() for t in unique)
    declared = sum(t.numel() * t.element_size() for t in unique)
    what = f"{path / MANIFEST}: the network that extractor.params describe"
    size = f"{n_values:,} values ({format_size(declared)})"
    if declared > limits.max_weights_bytes:
        raise over_limit(what, size, format_size(limits.max_weights_bytes), "max_weights_bytes")
    # 1 MiB of slack: buffers that are not saved (a normalisation's mean and std).
    if declared > in_file + MiB:
        raise SolutionExtractorError(
            f"{what} has {size}, but its weights file {ext['weights']} holds "
            f"{format_size(in_file)}: the parameters do not describe these weights; refusing "
            "to build the network"
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
    _check_declared(manifest, path, limits)
    _check_files(manifest, path, limits)
    files = manifest["files"]
    if NEIGHBOURS not in files:
        raise SolutionError(f"solution {path} has no assigned image: it cannot label anything")
    ext = manifest["extractor"]
    if ext["weights"] not in files:
        raise SolutionIntegrityError(f"solution {path}: the manifest lists no {ext['weights']}")
    if manifest["reducer"]["transform"] == "linear" and LINEAR_FILE not in files:
        raise SolutionIntegrityError(f"solution {path}: the manifest lists no {LINEAR_FILE}")
    declared = _check_array_headers(manifest, path, limits)
    _check_network(manifest, path, limits)
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
