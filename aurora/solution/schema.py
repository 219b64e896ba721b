"""The JSON Schema of a solution's ``manifest.json``, checked before any value in it is used.

A manifest is data: plain numbers, strings, lists and objects, each with its type and range.
No key ``_target_`` may appear anywhere in it (nothing in a solution names code to run), and the
extractor is one of an allow-list of aurora's own classes (:mod:`aurora.solution.extractor`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema

from aurora.solution.errors import ManifestError

#: Bump when the layout or the meaning of a stored file changes.
FORMAT_VERSION = 2

_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
# A file of the solution: relative, inside the folder, no "..".
_REL_PATH = {"type": "string", "pattern": r"^(?!/)(?!.*(^|/)\.\.(/|$))[A-Za-z0-9_./-]+$"}
_COUNT = {"type": "integer", "minimum": 0}

MANIFEST_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": [
        "format",
        "format_version",
        "aurora_version",
        "n_reference",
        "n_groups",
        "n_unassigned",
        "preprocess",
        "extractor",
        "reducer",
        "novelty",
        "files",
    ],
    "properties": {
        "format": {"const": "aurora-solution"},
        "format_version": {"const": FORMAT_VERSION},
        "aurora_version": {"type": "string", "maxLength": 64},
        "created": {"type": "string", "maxLength": 64},
        "versions": {"type": "object", "additionalProperties": {"type": "string"}},
        "seed": {"type": "integer"},
        "n_reference": {"type": "integer", "minimum": 1},
        "n_groups": _COUNT,
        "n_unassigned": _COUNT,
        "solution_cell": {"type": "string", "maxLength": 512},
        "features_key": {"type": "string", "maxLength": 128},
        "preprocess": {
            "type": "object",
            "additionalProperties": {"type": ["number", "string", "boolean", "null", "array"]},
        },
        "extractor": {
            "type": "object",
            "required": ["name", "kind", "params", "identity", "weights", "state_sha256"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "maxLength": 128},
                "kind": {"type": "string", "maxLength": 64},
                "params": {"type": "object"},
                "identity": {"type": "object"},
                "weights": _REL_PATH,
                "state_sha256": _SHA256,
            },
        },
        "reducer": {
            "type": "object",
            "required": ["name", "transform", "n_neighbors"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "maxLength": 128},
                "transform": {"enum": ["linear", "neighbours"]},
                "n_neighbors": {"type": "integer", "minimum": 1, "maximum": 1000},
            },
        },
        "novelty": {
            "type": "object",
            "required": ["space", "quantile", "threshold"],
            "additionalProperties": False,
            "properties": {
                "space": {"const": "features"},
                "quantile": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                "threshold": {"type": ["number", "null"], "minimum": 0},
            },
        },
        "files": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": _REL_PATH,
            "additionalProperties": _SHA256,
        },
    },
}


def target_keys(obj: Any, where: str = "") -> Iterator[str]:
    """Dotted paths of every ``_target_`` key in a JSON value (any depth)."""
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            here = f"{where}.{key}" if where else str(key)
            if key == "_target_":
                yield here
            yield from target_keys(value, here)
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from target_keys(value, f"{where}[{i}]")


def validate_manifest(manifest: Any, path: Path) -> None:
    """Check a parsed manifest against :data:`MANIFEST_SCHEMA` and for ``_target_`` keys.

    Args:
        manifest: the parsed JSON.
        path: the manifest file (for messages).

    Raises:
        ManifestError: the first violation, naming the field, the value and the rule.
    """
    targets = list(target_keys(manifest))
    if targets:
        raise ManifestError(
            f"{path} contains `_target_` at {', '.join(targets)}: a solution is data and never "
            "names code to run; refusing it"
        )
    validator = jsonschema.Draft202012Validator(MANIFEST_SCHEMA)
    error = jsonschema.exceptions.best_match(validator.iter_errors(manifest))
    if error is not None:
        field = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ManifestError(f"{path}: field {field}: {error.message}")
    if manifest["n_groups"] > manifest["n_reference"]:
        raise ManifestError(
            f"{path}: n_groups {manifest['n_groups']} exceeds n_reference {manifest['n_reference']}"
        )
