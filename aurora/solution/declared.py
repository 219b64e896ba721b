"""What a solution folder declares, checked before anything of that size is loaded or built.

The manifest's counts and image sizes, every listed file (inside the folder, regular, within
its size limit, with its recorded SHA-256), the shapes and dtypes of the ``.npz`` arrays from
their headers, the memory they take once loaded, and the network the extractor's parameters
describe (built on the meta device) are compared with
:class:`aurora.solution.limits.SolutionLimits` and this machine's memory;
:func:`aurora.solution.store.load_solution` calls them in that order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aurora.infra.cache import file_sha256
from aurora.infra.errors import format_size
from aurora.reduction import LINEAR_FILE
from aurora.solution.errors import SolutionError, SolutionExtractorError, SolutionIntegrityError
from aurora.solution.extractor import ALLOWED_EXTRACTORS
from aurora.solution.headers import (
    ArrayHeader,
    check_stored,
    expect_array,
    npz_headers,
    safetensors_tensors,
)
from aurora.solution.layout import MANIFEST, NEIGHBOURS, REFERENCE
from aurora.solution.limits import MiB, SolutionLimits, over_limit, solution_file


def check_declared(manifest: Mapping[str, Any], path: Path, limits: SolutionLimits) -> None:
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


def check_files(manifest: Mapping[str, Any], path: Path, limits: SolutionLimits) -> None:
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
class Declared:
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


def check_array_headers(
    manifest: Mapping[str, Any], path: Path, limits: SolutionLimits
) -> Declared:
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
    return Declared(n, n_features, n_dims, n_assigned, _check_memory(arrays, path, limits))


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


def check_network(manifest: Mapping[str, Any], path: Path, limits: SolutionLimits) -> None:
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
