"""Reading a folder aurora did not write without trusting it: limits on what its files declare,
checked before anything is allocated, and file access that never leaves the folder.

A solution folder (and a run folder) is data from someone else. What it *declares* (a count in
``manifest.json``, an array's shape in an ``.npz`` member's header, a tensor's shape in the
safetensors header, a network's size in its constructor arguments) is compared with
:class:`SolutionLimits` and with the memory this machine has before any array of that size is
made; what it *is* (every file, and every folder on the way to it) must be a regular file inside
the folder, not a symbolic link out of it or a device. The headers of the arrays and weights
are read by :mod:`aurora.solution.headers`.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from aurora.infra.errors import format_size
from aurora.solution.errors import SolutionError, SolutionIntegrityError

MiB = 2**20
GiB = 2**30


@dataclass(frozen=True)
class SolutionLimits:
    """The largest solution :func:`aurora.solution.load_solution` reads.

    Each limit is checked against what the folder declares (manifest numbers, array headers,
    file sizes) before anything of that size is allocated; a refusal names the field, the
    declared value and the limit.

    Attributes:
        max_manifest_bytes: size of ``manifest.json``.
        max_json_depth: nesting of JSON objects and arrays (``manifest.json``, the weights
            file's header).
        max_reference: reference images (``n_reference`` and the arrays' rows).
        max_features: features per image (the reference features' columns).
        max_embedding: dimensions of the embedding.
        max_id_chars: characters of one image id.
        max_image_size: side in pixels of a preprocessed image and of a network's input.
        max_weights_bytes: the extractor's weights file, and the network its parameters declare.
        memory_bytes: memory the solution's arrays may take once loaded; None = what this
            machine or job has (its cgroup or SLURM memory limit, and the memory available now).
        memory_key: the setting ``memory_bytes`` came from, for the refusal (``budget.memory_gb``
            in ``mode=apply``).
    """

    max_manifest_bytes: int = 4 * MiB
    max_json_depth: int = 32
    max_reference: int = 10_000_000
    max_features: int = 65_536
    max_embedding: int = 4_096
    max_id_chars: int = 4_096
    max_image_size: int = 4_096
    max_weights_bytes: int = 4 * GiB
    memory_bytes: int | None = None
    memory_key: str = "SolutionLimits.memory_bytes"

    def memory(self) -> tuple[int, str]:
        """The memory the arrays may take, in bytes, and where the figure comes from."""
        if self.memory_bytes is not None:
            return int(self.memory_bytes), self.memory_key
        from aurora.infra.machine import available_memory, cgroup_memory_limit, slurm_memory

        known = {
            "the memory available now": available_memory(),
            "the cgroup's memory limit": cgroup_memory_limit(),
            "the SLURM job's memory": slurm_memory(),
        }
        name, value = min(((k, v) for k, v in known.items() if v), key=lambda kv: kv[1])
        return int(value), name


def over_limit(what: str, declared: object, limit: object, name: str) -> SolutionError:
    """The one-line refusal of a declared value above a limit."""
    return SolutionError(
        f"{what} is {declared}, above the limit {limit} (SolutionLimits.{name}); refusing it "
        "before allocating anything"
    )


# ------------------------------------------------------------------------------- file access


def path_problem(name: str) -> str | None:
    """What makes ``name`` unusable as a file name inside a solution, in words, or None.

    A file name of a solution is relative, uses ``/`` between folders, never ``..``, and holds
    only letters, digits and ``_ . / -``.
    """
    if not isinstance(name, str) or not name:
        return "is empty"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or "\\" in name:
        return "is an absolute path, outside the solution folder"
    parts = name.split("/")
    if ".." in parts:
        return "goes up a folder ('..') and leaves the solution folder"
    if any(p in ("", ".") for p in parts):
        return "has an empty or '.' folder component"
    if not re.fullmatch(r"[A-Za-z0-9_.\-/]+", name):
        return "has characters other than letters, digits, '_', '.', '-' and '/'"
    if len(name) > 255:
        return "is longer than 255 characters"
    return None


def solution_file(folder: Path, name: str, what: str = "solution") -> Path:
    """The regular file ``name`` inside ``folder``, checked without following it out.

    Every component on the way (folders and the file) may be a symbolic link only to a place
    inside ``folder``; the file must be a regular file (not a device such as ``/dev/zero``, a
    pipe or a folder).

    Args:
        folder: the solution (or run) folder.
        name: a relative file name (``/`` between folders).
        what: the kind of folder, for messages.

    Returns:
        The path (inside ``folder``).

    Raises:
        SolutionIntegrityError: the file is missing.
        SolutionError: the name leaves the folder, a link points out of it, or the file is not
            a regular file.
    """
    problem = path_problem(name)
    if problem is not None:
        raise SolutionError(f"file name {name!r} in {folder}: {problem}")
    root = folder.resolve()
    here = folder
    for part in PurePosixPath(name).parts:
        here = here / part
        if here.is_symlink():
            target = here.resolve()
            if not target.is_relative_to(root):
                raise SolutionError(
                    f"{what} file {name}: {here} is a symbolic link to {target}, outside the "
                    f"{what} folder {root}; refusing to follow it"
                )
    try:
        mode = os.stat(here).st_mode
    except FileNotFoundError:
        raise SolutionIntegrityError(
            f"{what} {folder} is incomplete: missing file {name}"
        ) from None
    except OSError as err:
        raise SolutionError(f"{what} file {name}: cannot read {here}: {err.strerror}") from err
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a device, pipe or socket"
        raise SolutionError(
            f"{what} file {name}: {here} is {kind}, not a regular file; refusing to read it"
        )
    return here


def read_limited(path: Path, limit: int, what: str, limit_name: str) -> bytes:
    """The bytes of a (checked, regular) file of at most ``limit`` bytes."""
    size = path.stat().st_size
    if size > limit:
        raise over_limit(f"the size of {what}", format_size(size), format_size(limit), limit_name)
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:  # grew since the stat
        raise over_limit(f"the size of {what}", f"over {format_size(limit)}", limit, limit_name)
    return data


# ------------------------------------------------------------------------------- strict JSON


def json_depth(text: str) -> int:
    """The deepest nesting of objects and arrays in a JSON text (strings skipped; no parsing).

    One pass over the brackets, quotes and backslashes: linear in the text's length whatever
    it holds.
    """
    depth = deepest = 0
    in_string = False
    escaped_at = -1
    for match in re.finditer(r'[\[\]{}"\\]', text):
        i, char = match.start(), match.group()
        if i == escaped_at:
            continue
        if in_string:
            if char == "\\":
                escaped_at = i + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number (JSON has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a number")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def strict_json(data: bytes, what: str, max_depth: int) -> Any:
    """Parse JSON refusing NaN, Infinity, numbers out of range, repeated keys and nesting deeper
    than ``max_depth`` (measured before parsing, so no ``RecursionError`` can arise).

    Raises:
        SolutionIntegrityError: not UTF-8 or not JSON.
        SolutionError: a value JSON should not hold, or nesting too deep.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SolutionIntegrityError(f"{what} is not UTF-8 text: {err}") from err
    # (fewer brackets than the limit cannot nest deeper: no scan needed)
    depth = json_depth(text) if text.count("[") + text.count("{") > max_depth else 0
    if depth > max_depth:
        raise over_limit(f"the JSON nesting depth of {what}", depth, max_depth, "max_json_depth")
    try:
        return json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            object_pairs_hook=_no_duplicates,
        )
    except json.JSONDecodeError as err:
        raise SolutionIntegrityError(f"{what} is not valid JSON: {err}") from err
    except (ValueError, RecursionError) as err:  # int too long, NaN, inf, a repeated key
        raise SolutionError(f"{what}: {err}") from err
