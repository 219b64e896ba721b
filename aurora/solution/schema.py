"""The JSON Schema of a solution's ``manifest.json``, checked before any value in it is used.

A manifest is data: plain numbers, strings, lists and objects. The schema is closed at every
level (no key it does not name, ``additionalProperties: false``) and types every field with its
range: the preprocessing settings field by field (from :class:`aurora.preprocess.PreprocessConfig`),
the extractor's constructor arguments per kind, and what stays free-form (the extractor's
identity, a model's hyper-parameters) as bounded plain JSON. NaN and Infinity never reach it
(:func:`aurora.solution.limits.strict_json` refuses them while parsing). No key ``_target_`` may
appear anywhere (nothing in a solution names code to run), and the extractor is one of an
allow-list of aurora's own classes (:mod:`aurora.solution.extractor`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema

from aurora.preprocess import PreprocessConfig
from aurora.solution.errors import ManifestError
from aurora.solution.limits import path_problem

#: Bump when the layout or the meaning of a stored file changes.
FORMAT_VERSION = 2

_SHA256_PATTERN = "^[0-9a-f]{64}$"
_REL_PATH_PATTERN = r"^(?!/)(?!.*(^|/)\.\.(/|$))[A-Za-z0-9_./-]{1,255}$"
_KEY_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$"
_MODEL_NAME_PATTERN = r"^[A-Za-z0-9_.\-]{1,128}$"
_MODEL_CLASS_PATTERN = r"^aurora\.models(\.[A-Za-z_][A-Za-z0-9_]*)+$"
#: What each pattern asks for, in words (a refusal never prints a regular expression).
_PATTERN_WORDS = {
    _SHA256_PATTERN: "a SHA-256 (64 lowercase hexadecimal digits)",
    _REL_PATH_PATTERN: "a relative file name inside the solution folder",
    _KEY_PATTERN: "a plain key (letters, digits, '_', '.', '-'; at most 128)",
    _MODEL_NAME_PATTERN: "a timm model name (letters, digits, '_', '.', '-')",
    _MODEL_CLASS_PATTERN: "a class of aurora.models",
}

_INT32 = 2**31 - 1
#: Largest magnitude of a number anywhere in a manifest (finite, far from float overflow).
_BIG = 1e15
_SHA256 = {"type": "string", "pattern": _SHA256_PATTERN}
_REL_PATH = {"type": "string", "pattern": _REL_PATH_PATTERN}
_COUNT = {"type": "integer", "minimum": 0, "maximum": _INT32}
_TEXT = {"type": "string", "maxLength": 512}

#: Plain JSON of bounded size: what a field free-form by nature holds (an identity, a model's
#: hyper-parameters). Each keyword applies to the values of its type only.
_VALUE: dict[str, Any] = {
    "type": ["null", "boolean", "number", "string", "array", "object"],
    "minimum": -_BIG,
    "maximum": _BIG,
    "maxLength": 1024,
    "maxItems": 256,
    "items": {"$ref": "#/$defs/value"},
    "maxProperties": 256,
    "propertyNames": {"pattern": _KEY_PATTERN},
    "additionalProperties": {"$ref": "#/$defs/value"},
}
_OBJECT_OF_VALUES = {
    "type": "object",
    "maxProperties": 256,
    "propertyNames": {"pattern": _KEY_PATTERN},
    "additionalProperties": {"$ref": "#/$defs/value"},
}
#: A timm constructor keyword: a scalar or a short list, numbers at most 4096 in size (a depth,
#: a width, a drop rate), so that no keyword can ask for an absurd network.
_TIMM_KWARG: dict[str, Any] = {
    "type": ["null", "boolean", "number", "string", "array"],
    "minimum": -4096,
    "maximum": 4096,
    "maxLength": 128,
    "maxItems": 16,
    "items": {"type": ["boolean", "number", "string"], "minimum": -4096, "maximum": 4096},
}

#: The constructor arguments (``params``) of each extractor kind a solution may carry.
EXTRACTOR_PARAMS: dict[str, dict[str, Any]] = {
    "timm": {
        "type": "object",
        "required": ["model_name"],
        "additionalProperties": False,
        "properties": {
            "model_name": {"type": "string", "pattern": _MODEL_NAME_PATTERN},
            "input_size": {"type": ["integer", "null"], "minimum": 8, "maximum": _INT32},
            "model_kwargs": {
                "type": ["object", "null"],
                "maxProperties": 32,
                "propertyNames": {"pattern": _KEY_PATTERN},
                "additionalProperties": _TIMM_KWARG,
            },
            "pretrained_cfg_overlay": {**_OBJECT_OF_VALUES, "type": ["object", "null"]},
        },
    },
    "checkpoint": {
        "type": "object",
        "required": ["model_class", "hparams", "feature_dim"],
        "additionalProperties": False,
        "properties": {
            "model_class": {"type": "string", "pattern": _MODEL_CLASS_PATTERN},
            "hparams": _OBJECT_OF_VALUES,
            "feature_dim": {"type": "integer", "minimum": 1, "maximum": _INT32},
            "dihedral": {"type": "boolean"},
            "input_size": {"type": "integer", "minimum": 8, "maximum": _INT32},
        },
    },
}

#: Ranges of the preprocessing settings beyond their types (the limits on sizes are in
#: :class:`aurora.solution.limits.SolutionLimits`).
_PREPROCESS_RANGES: dict[str, dict[str, Any]] = {
    "size": {"minimum": 8},
    "star_kernel": {"minimum": 0, "maximum": 255},
    "dark_threshold": {"minimum": 0, "maximum": 255},
    "twilight_level": {"minimum": 0, "maximum": 255},
    "background": {"minimum": 0, "maximum": 1},
    "max_gain": {"minimum": 1, "maximum": 1e6},
    "moon": {"enum": ["mask", "keep"]},
    "l_percentiles": {"items": {"type": "number", "minimum": 0, "maximum": 100}},
    "u16_percentiles": {"items": {"type": "number", "minimum": 0, "maximum": 100}},
    "circle": {"items": {"type": "number", "minimum": -1e6, "maximum": 1e6}},
}


def _type_schema(tp: Any) -> dict[str, Any]:
    """The JSON Schema of a dataclass field's annotation (int, float, bool, str, fixed tuples,
    Literal, and ``X | None``); anything else is bounded plain JSON."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        inner = _type_schema(rest[0]) if len(rest) == 1 else {"$ref": "#/$defs/value"}
        if "type" not in inner:
            return {"anyOf": [inner, {"type": "null"}]}
        kinds = inner["type"] if isinstance(inner["type"], list) else [inner["type"]]
        return {**inner, "type": [*kinds, "null"]}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer", "minimum": -_INT32, "maximum": _INT32}
    if tp is float:
        return {"type": "number", "minimum": -_BIG, "maximum": _BIG}
    if tp is str:
        return {"type": "string", "maxLength": 128}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin is tuple and args and Ellipsis not in args:
        items = _type_schema(args[0]) if len(set(args)) == 1 else {"$ref": "#/$defs/value"}
        return {"type": "array", "minItems": len(args), "maxItems": len(args), "items": items}
    return {"$ref": "#/$defs/value"}


def _preprocess_schema() -> dict[str, Any]:
    """Every field of :class:`PreprocessConfig`, typed from its annotation, and nothing else."""
    hints = typing.get_type_hints(PreprocessConfig)
    properties = {}
    for f in dataclasses.fields(PreprocessConfig):
        schema = _type_schema(hints[f.name])
        extra = _PREPROCESS_RANGES.get(f.name, {})
        if "items" in extra and "items" in schema:
            extra = {**extra, "items": {**schema["items"], **extra["items"]}}
        properties[f.name] = {**schema, **extra}
    return {"type": "object", "additionalProperties": False, "properties": properties}


MANIFEST_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$defs": {"value": _VALUE},
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
    "additionalProperties": False,
    "properties": {
        "format": {"const": "aurora-solution"},
        "format_version": {"const": FORMAT_VERSION},
        "aurora_version": {"type": "string", "maxLength": 64},
        "created": {"type": "string", "maxLength": 64},
        "versions": {
            "type": "object",
            "maxProperties": 64,
            "propertyNames": {"pattern": _KEY_PATTERN},
            "additionalProperties": {"type": "string", "maxLength": 64},
        },
        "seed": {"type": "integer", "minimum": -(2**63), "maximum": 2**64 - 1},
        "n_reference": {**_COUNT, "minimum": 1},
        "n_groups": _COUNT,
        "n_unassigned": _COUNT,
        "solution_cell": _TEXT,
        "features_key": {"type": "string", "maxLength": 128},
        "preprocess": _preprocess_schema(),
        "extractor": {
            "type": "object",
            "required": ["name", "kind", "params", "identity", "weights", "state_sha256"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "maxLength": 128},
                "kind": {"type": "string", "pattern": _KEY_PATTERN},
                "params": _OBJECT_OF_VALUES,
                "identity": {**_OBJECT_OF_VALUES, "required": ["kind"]},
                "weights": _REL_PATH,
                "state_sha256": _SHA256,
            },
            "allOf": [
                {
                    "if": {"properties": {"kind": {"const": kind}}},
                    "then": {"properties": {"params": schema}},
                }
                for kind, schema in EXTRACTOR_PARAMS.items()
            ],
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
                "threshold": {"type": ["number", "null"], "minimum": 0, "maximum": _BIG},
            },
        },
        "files": {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 64,
            "propertyNames": _REL_PATH,
            "additionalProperties": _SHA256,
        },
    },
}


def _is_int(_checker: Any, instance: Any) -> bool:
    """JSON integers only: ``3.0`` is a number, not a count (and ``True`` is not 1)."""
    return isinstance(instance, int) and not isinstance(instance, bool)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_int),
)


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


def _short(text: str, at_most: int = 200) -> str:
    return text if len(text) <= at_most else text[: at_most - 3] + "..."


def _describe(error: jsonschema.ValidationError) -> str:
    """A schema violation in words: patterns are named by what they ask for, values cut short."""
    if error.validator == "pattern":
        words = _PATTERN_WORDS.get(str(error.validator_value), "of the allowed form")
        return f"{_short(repr(error.instance), 80)} is not {words}"
    # jsonschema's messages start with the value's repr: cut that short, keep the rule.
    text = error.message.replace(repr(error.instance), _short(repr(error.instance), 60), 1)
    return _short(" ".join(text.split()), 300)


def _check_file_names(manifest: Mapping[str, Any], path: Path) -> None:
    """Every file name the manifest gives is a relative name inside the folder (said in words)."""
    names: list[Any] = []
    files = manifest.get("files")
    if isinstance(files, Mapping):
        names += list(files)
    extractor = manifest.get("extractor")
    if isinstance(extractor, Mapping) and "weights" in extractor:
        names.append(extractor["weights"])
    for name in names:
        problem = path_problem(name) if isinstance(name, str) else "is not a string"
        if problem is not None:
            raise ManifestError(f"file name {_short(repr(name), 80)} in {path} {problem}")


def validate_manifest(manifest: Any, path: Path) -> None:
    """Check a parsed manifest against :data:`MANIFEST_SCHEMA` and for ``_target_`` keys.

    Args:
        manifest: the parsed JSON (nesting already bounded by the parser).
        path: the manifest file (for messages).

    Raises:
        ManifestError: the first violation, naming the field, the value and the rule.
    """
    targets = list(target_keys(manifest))
    if targets:
        raise ManifestError(
            f"{path} contains `_target_` at {', '.join(targets[:4])}: a solution is data and never "
            "names code to run; refusing it"
        )
    if not isinstance(manifest, Mapping):
        raise ManifestError(f"{path} is not a JSON object")
    _check_file_names(manifest, path)
    error = jsonschema.exceptions.best_match(_Validator(MANIFEST_SCHEMA).iter_errors(manifest))
    if error is not None:
        field = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ManifestError(f"{path}: field {field}: {_describe(error)}")
    if manifest["n_groups"] > manifest["n_reference"]:
        raise ManifestError(
            f"{path}: n_groups {manifest['n_groups']} exceeds n_reference {manifest['n_reference']}"
        )
