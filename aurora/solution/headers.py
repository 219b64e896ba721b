"""What a solution's binary files declare, read from their headers only: the arrays of an
``.npz`` (shape, dtype, bytes stored) and the tensors of a safetensors file.

Nothing is decompressed or loaded beyond the headers, so a declared size can be compared with
:class:`aurora.solution.limits.SolutionLimits` and this machine's memory before anything of that
size is allocated.
"""

from __future__ import annotations

import math
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aurora.infra.errors import format_size
from aurora.solution.errors import SolutionError
from aurora.solution.limits import strict_json


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
