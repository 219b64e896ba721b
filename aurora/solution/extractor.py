"""A solution's extractor as data: plain constructor arguments and a safetensors weights file.

Saving asks the run's extractor for :meth:`export_params` (JSON) and writes its
``state_dict`` with safetensors. Loading builds the network only from a class of
:data:`ALLOWED_EXTRACTORS` (chosen by the identity's ``kind``, never by a name read from the
folder), loads the weights, and checks that the rebuilt network matches the stored identity and
the weights' hash. The result answers ``identity()`` with the stored identity, so the features of
new images share the reference's cache key space.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from aurora.cache import stable_hash
from aurora.extractors.checkpoint_extractor import CheckpointExtractor
from aurora.extractors.timm_extractor import TimmExtractor, state_dict_sha256
from aurora.solution.errors import SolutionExtractorError

#: The extractor classes a solution may rebuild, by the ``kind`` of their identity. An allow-list
#: on purpose: a solution folder comes from someone else, so it may only pick among aurora's own
#: networks and give them plain arguments.
ALLOWED_EXTRACTORS: dict[str, type[nn.Module]] = {
    "timm": TimmExtractor,
    "checkpoint": CheckpointExtractor,
}
WEIGHTS_FILE = "extractor/weights.safetensors"


def _json_plain(value: Any, where: str) -> Any:
    """``value`` as JSON types only (tuples become lists); anything else is an error."""
    if isinstance(value, Mapping):
        return {str(k): _json_plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise SolutionExtractorError(
        f"extractor argument {where} is a {type(value).__name__}, not a plain JSON value: "
        "the solution could not rebuild it"
    )


def export_extractor(extractor: nn.Module, folder: Path) -> dict[str, Any]:
    """Write the extractor's weights into ``folder`` and describe it for the manifest.

    Args:
        extractor: the run's extractor (an instance of an :data:`ALLOWED_EXTRACTORS` class).
        folder: the solution folder being written.

    Returns:
        The manifest's ``extractor`` entry (without ``name``): ``kind``, ``params``,
        ``identity``, ``weights`` (relative path) and ``state_sha256``.

    Raises:
        SolutionExtractorError: the extractor's class is not allowed or cannot be exported.
    """
    identity = _json_plain(extractor.identity(), "identity")
    kind = str(identity.get("kind"))
    cls = ALLOWED_EXTRACTORS.get(kind)
    if cls is None or type(extractor) is not cls:
        raise SolutionExtractorError(
            f"cannot save a solution for extractor {type(extractor).__name__} (kind {kind!r}): "
            f"a solution can carry only {sorted(ALLOWED_EXTRACTORS)} extractors"
        )
    params = _json_plain(extractor.export_params(), "params")
    path = folder / WEIGHTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(extractor, str(path))
    return {
        "kind": kind,
        "params": params,
        "identity": identity,
        "weights": WEIGHTS_FILE,
        "state_sha256": state_dict_sha256(extractor.state_dict()),
    }


class SolutionExtractor(nn.Module):
    """An extractor rebuilt from a solution; ``identity()`` is the stored one.

    Args:
        inner: the rebuilt network with the solution's weights.
        identity: the identity recorded when the solution was saved.
    """

    def __init__(self, inner: nn.Module, identity: Mapping[str, Any]) -> None:
        super().__init__()
        self.inner = inner.eval().requires_grad_(False)
        self._identity = dict(identity)
        self.input_size = int(inner.input_size)
        self.num_features = int(inner.num_features)

    def identity(self) -> dict[str, Any]:
        """The identity of the extractor that made the reference features."""
        return dict(self._identity)

    def provenance(self) -> dict[str, Any]:
        """Where the weights came from."""
        return {"weights_source": "solution", "random_init": False}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images in [0, 1] -> (B, num_features) features."""
        return self.inner(x)


def rebuild_extractor(entry: Mapping[str, Any], folder: Path) -> SolutionExtractor:
    """Build the manifest's extractor from the allow-list and load its weights.

    Args:
        entry: the manifest's ``extractor`` entry (schema-checked).
        folder: the solution folder (its files' hashes already checked).

    Returns:
        The extractor, in eval mode.

    Raises:
        SolutionExtractorError: unknown kind, arguments that do not build the class, weights
            that do not fit it, or a network that differs from the stored identity.
    """
    kind = str(entry["kind"])
    cls = ALLOWED_EXTRACTORS.get(kind)
    if cls is None:
        raise SolutionExtractorError(
            f"solution {folder}: extractor kind {kind!r} is not one of {sorted(ALLOWED_EXTRACTORS)}"
        )
    try:
        inner = cls.from_export(dict(entry["params"]))
    except Exception as err:  # the arguments came from a file: any failure is the file's
        raise SolutionExtractorError(
            f"solution {folder}: cannot build the {kind} extractor from its parameters: {err}"
        ) from err
    try:
        load_model(inner, str(folder / str(entry["weights"])), strict=True)
    except (SafetensorError, RuntimeError, OSError) as err:
        raise SolutionExtractorError(
            f"solution {folder}: weights {entry['weights']} do not fit the {kind} extractor: "
            f"{str(err).splitlines()[0]}"
        ) from err
    if state_dict_sha256(inner.state_dict()) != entry["state_sha256"]:
        raise SolutionExtractorError(
            f"solution {folder}: the loaded weights differ from the ones the solution recorded"
        )
    stored = dict(entry["identity"])
    skip = set(getattr(cls, "WEIGHT_SOURCE_KEYS", ()))
    rebuilt = inner.identity()
    diff = [
        k
        for k in sorted(set(stored) | set(rebuilt))
        if k not in skip and stable_hash(stored.get(k)) != stable_hash(rebuilt.get(k))
    ]
    if diff:
        raise SolutionExtractorError(
            f"the extractor rebuilt from solution {folder} differs from the one that made the "
            f"reference features (fields {diff})"
        )
    return SolutionExtractor(inner, stored)
