"""A solution's extractor as data: plain constructor arguments and a safetensors weights file.

Saving asks the run's extractor for :meth:`export_params` (JSON) and writes its
``state_dict`` with safetensors. Loading builds the network only from a class of
:data:`ALLOWED_EXTRACTORS` (chosen by the identity's ``kind``, never by a name read from the
folder), checks the weights file's names and shapes against it, loads the weights, and checks
that the rebuilt network matches the stored identity and the weights' hash.

The result answers ``identity()`` with the stored identity, except for ``state_sha256``: that is
the hash aurora computes of the weights it loaded, whatever the folder says. The features of new
images are cached under it, so a solution whose weights are the run's shares the run's cache
entries, and one whose weights differ (however its hashes were rewritten) can neither read nor
write an entry of the network it claims to be.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from aurora.extractors.checkpoint_extractor import CheckpointExtractor
from aurora.extractors.feature_keys import LOADED_WEIGHTS_KEY
from aurora.extractors.timm_extractor import TimmExtractor
from aurora.infra.cache import stable_hash
from aurora.models.weights import state_dict_sha256
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
    # The loaded weights' hash is the entry's own state_sha256; loading hashes them again.
    identity.pop(LOADED_WEIGHTS_KEY, None)
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
    """An extractor rebuilt from a solution; ``identity()`` is the stored one with the hash of
    the weights actually loaded.

    Args:
        inner: the rebuilt network with the solution's weights.
        identity: the identity recorded when the solution was saved.
    """

    def __init__(self, inner: nn.Module, identity: Mapping[str, Any]) -> None:
        super().__init__()
        self.inner = inner.eval().requires_grad_(False)
        self._identity = {k: v for k, v in identity.items() if k != LOADED_WEIGHTS_KEY}
        # Hashed here, from the tensors in the network: the one part of the identity the feature
        # cache trusts (a network without weights is all in its parameters, which are checked).
        # Our extractors hash themselves again, so their own identity is of these weights too.
        rehash = getattr(inner, "rehash_weights", None)
        if not inner.state_dict():
            self.state_sha256: str | None = None
        elif rehash is not None:
            self.state_sha256 = str(rehash())
        else:
            self.state_sha256 = state_dict_sha256(inner.state_dict())
        self.input_size = int(inner.input_size)
        self.num_features = int(inner.num_features)

    def identity(self) -> dict[str, Any]:
        """The identity of the extractor that made the reference features, ``state_sha256``
        computed from the weights loaded here."""
        out = dict(self._identity)
        if self.state_sha256 is not None:
            out[LOADED_WEIGHTS_KEY] = self.state_sha256
        return out

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
    weights = folder / str(entry["weights"])
    where = f"solution {folder}: weights {entry['weights']} do not fit the {kind} extractor"
    _check_weights_fit(inner, weights, where)
    try:
        load_model(inner, str(weights), strict=True)
    except (SafetensorError, RuntimeError, OSError) as err:
        raise SolutionExtractorError(f"{where}: {_one_line(err)}") from err
    solution = SolutionExtractor(inner, entry["identity"])
    if (solution.state_sha256 or state_dict_sha256({})) != entry["state_sha256"]:
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
    return solution


def _one_line(err: BaseException) -> str:
    """An error's whole message on one line (torch's load errors span several)."""
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())


def _show(items: list[str], at_most: int = 4) -> str:
    more = f", ... (+{len(items) - at_most} more)" if len(items) > at_most else ""
    return "[" + ", ".join(items[:at_most]) + more + "]"


def _check_weights_fit(network: nn.Module, path: Path, where: str) -> None:
    """Compare the weights file's tensor names and shapes (its header only) with the network's.

    Args:
        network: the network rebuilt from the solution's parameters.
        path: its safetensors weights file.
        where: the start of the message (names the solution, the file and the kind).

    Raises:
        SolutionExtractorError: the file cannot be read, or names or shapes differ (another
            architecture than the one that saved the weights); the message lists them.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as err:
        raise SolutionExtractorError(f"{where}: cannot read it ({_one_line(err)})") from err
    own = network.state_dict()
    # safetensors stores a tensor shared under several names once: a name missing from the file
    # is fine when it shares memory with one the file has.
    stored = {own[k].data_ptr() for k in own if k in shapes and own[k].numel()}
    missing = [k for k in own if k not in shapes and own[k].data_ptr() not in stored]
    unexpected = [k for k in shapes if k not in own]
    mismatched = [
        f"{k}: file {list(shapes[k])} vs network {list(own[k].shape)}"
        for k in own
        if k in shapes and shapes[k] != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        parts = [
            f"{len(v)} {what} {_show(v)}"
            for what, v in (
                ("names the network has and the file lacks", missing),
                ("names the file has and the network lacks", unexpected),
                ("shapes that differ", mismatched),
            )
            if v
        ]
        raise SolutionExtractorError(
            f"{where} built from its parameters (they describe another architecture than "
            f"the weights): {'; '.join(parts)}"
        )
