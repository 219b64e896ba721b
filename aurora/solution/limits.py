"""Reading a folder aurora did not write without trusting it: limits on what its files declare,
checked before anything is allocated, and file access that never leaves the folder.

A solution folder (and a run folder) is data from someone else. What it *declares* (a count in
``manifest.json``, an array's shape in an ``.npz`` member's header, a tensor's shape in the
safetensors header, a network's size in its constructor arguments) is compared with
:class:`SolutionLimits` and with the memory this machine has before any array of that size is
made; what it *is* (every file, and every folder on the way to it) must be a regular file inside
the folder, not a symbolic link out of it or a device.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

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


# --------------------------------------------------------------------------- array headers


@dataclass(frozen=True)
class ArrayHeader:
    """What an ``.npz`` member declares, read from its header only.

    Attributes:
        shape: the array's shape.
        dtype: its dtype.
        stored: bytes of data its zip entry holds (after the header), per the zip directory.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    stored: int

    @property
    def nbytes(self) -> int:
        """Bytes the array takes once loaded (Python ints: no overflow)."""
        return math.prod(self.shape) * self.dtype.itemsize


def _member_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> ArrayHeader:
    """Read one member's ``.npy`` header (decompressing only its first bytes)."""
    fmt = np.lib.format
    with zf.open(info) as fp:
        try:
            version = fmt.read_magic(fp)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(fp)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = fmt.read_array_header_2_0(fp)
            else:
                raise ValueError(f"unknown .npy format version {version}")
            offset = fp.tell()
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            raise SolutionError(f"{where}: not a NumPy array ({err})") from err
    header = ArrayHeader(tuple(int(s) for s in shape), np.dtype(dtype), info.file_size - offset)
    if header.dtype.hasobject:
        raise SolutionError(
            f"{where} holds Python objects (dtype {header.dtype}), which only a pickle can load; "
            "a solution holds plain arrays: refusing it"
        )
    return header


def check_stored(headers: dict[str, ArrayHeader], what: str) -> None:
    """Each array's data in the zip directory is the size its header declares.

    (Called after the declared shapes passed their limits, so that a refusal names the limit.)

    Raises:
        SolutionError: a member that holds less or more than its header declares.
    """
    for name, header in headers.items():
        if header.stored != header.nbytes:
            raise SolutionError(
                f"{what} array {name} declares {header.shape} {header.dtype} "
                f"({format_size(header.nbytes)}) but its zip entry holds "
                f"{format_size(max(header.stored, 0))} of data: the file is damaged or forged"
            )


def npz_headers(path: Path, what: str, max_members: int = 32) -> dict[str, ArrayHeader]:
    """Shape and dtype of every array of an ``.npz``, from the zip directory and the arrays'
    headers: nothing is decompressed beyond each header.

    Args:
        path: the ``.npz`` file (checked: regular, inside its folder).
        what: its name for messages (``reference.npz``).
        max_members: most arrays the file may hold.

    Returns:
        Array name (without ``.npy``) -> :class:`ArrayHeader`.

    Raises:
        SolutionError: not a zip of ``.npy`` arrays, an object array, or too many members
            (:func:`check_stored` compares each member's size with its header).
    """
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > max_members:
                raise SolutionError(f"{what} holds {len(infos)} arrays; at most {max_members}")
            out: dict[str, ArrayHeader] = {}
            for info in infos:
                name = info.filename.removesuffix(".npy")
                if not info.filename.endswith(".npy") or name in out:
                    raise SolutionError(f"{what}: unexpected or repeated member {info.filename!r}")
                out[name] = _member_header(zf, info, f"{what} array {name}")
            return out
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise SolutionError(f"cannot read {what}: {err}") from err


def expect_array(
    headers: dict[str, ArrayHeader], what: str, name: str, shape: tuple[int | None, ...], kind: str
) -> ArrayHeader:
    """The header of array ``name``, checked for its shape (None = any) and dtype kind.

    Args:
        headers: from :func:`npz_headers`.
        what: the file, for messages.
        name: the array.
        shape: expected shape; None where any length is allowed.
        kind: allowed ``dtype.kind`` letters (``"f"`` float, ``"iu"`` integer, ``"b"`` bool,
            ``"U"`` text).

    Raises:
        SolutionError: missing array, another number of dimensions, length or dtype.
    """
    header = headers.get(name)
    if header is None:
        raise SolutionError(f"{what} has no array {name!r}")
    ok = len(header.shape) == len(shape) and all(
        want is None or want == got for want, got in zip(shape, header.shape, strict=True)
    )
    if not ok or header.dtype.kind not in kind:
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise SolutionError(
            f"{what} array {name} is {header.shape} {header.dtype}; expected shape {want} of "
            f"dtype kind {kind!r}"
        )
    return header


# ------------------------------------------------------------------------ safetensors header

_SAFETENSORS_ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip


def safetensors_tensors(
    path: Path, what: str, max_header_bytes: int, max_depth: int
) -> dict[str, tuple[tuple[int, ...], int]]:
    """Name -> (shape, bytes) of every tensor of a safetensors file, from its header only.

    Checks that each tensor's shape and dtype give exactly the bytes its offsets span and that
    the offsets lie inside the file.

    Raises:
        SolutionError: a header that is too large, not JSON, or inconsistent with the file.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise SolutionError(f"{what} is not a safetensors file (shorter than its header)")
        (n,) = struct.unpack("<Q", raw)
        if n > min(max_header_bytes, size - 8):
            raise SolutionError(
                f"{what}: its header declares {n} bytes; the file has {size} and the limit is "
                f"{max_header_bytes}"
            )
        header = strict_json(f.read(n), f"{what} header", max_depth)
    if not isinstance(header, dict):
        raise SolutionError(f"{what}: its header is not a JSON object")
    data_bytes = size - 8 - n
    out: dict[str, tuple[tuple[int, ...], int]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            itemsize = _SAFETENSORS_ITEMSIZE[entry["dtype"]]
            shape = tuple(int(s) for s in entry["shape"])
            begin, end = (int(v) for v in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as err:
            raise SolutionError(f"{what}: tensor {name!r} has a malformed header entry") from err
        nbytes = math.prod(shape) * itemsize
        if (
            min(shape, default=0) < 0
            or not 0 <= begin <= end <= data_bytes
            or end - begin != nbytes
        ):
            raise SolutionError(
                f"{what}: tensor {name!r} declares shape {list(shape)} {entry['dtype']} "
                f"({nbytes} bytes) at offsets {begin}..{end} of {data_bytes} data bytes"
            )
        out[str(name)] = (shape, nbytes)
    return out
