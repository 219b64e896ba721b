"""Which files of a data set are inputs: a folder walked, a list file read, or one image.

What counts as an input
    A scan walks a folder recursively (following folder links, each real folder once)
    and skips hidden files and folders (names starting with ``.``). A file is an input
    when its extension is an image or CDF extension (:data:`IMAGE_EXTENSIONS`, case
    ignored), or when its extension is not a known text/metadata one
    (:data:`IGNORED_EXTENSIONS`: ``.csv``, ``.md``, ``.txt``, ``.json``, ...) and its first
    bytes carry a supported image signature. So a data set's ``labels.csv`` and
    ``PROVENANCE.md`` are not inputs, a text file named ``.jpg`` is an input (and is
    rejected), and a JPEG named ``.png`` or with no extension is an input (and accepted).
    A compressed file (``.gz``, ``.bz2``) is an input when the name under the compression
    suffix is an image name (``x.pgm.gz``); other compressed files are ignored.
    With a list file every listed line is an input, whatever its extension; repeated
    lines naming the same file count once.

The ids and the data root of a list file are described in :mod:`aurora.data.sources`, which
scans what :func:`resolve_inputs` finds.
"""

from __future__ import annotations

import os
from pathlib import Path

from aurora.data.decode import path_problem
from aurora.data.formats import detect_format
from aurora.data.manifest import DataSourceError

__all__ = [
    "COMPRESSED_EXTENSIONS",
    "IGNORED_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "resolve_inputs",
]

_SUPPORTED_EXTENSIONS = ".jpg .jpeg .jpe .jfif .png .tif .tiff .bmp .dib .pgm .ppm .pnm .pbm .cdf"
# Image formats people point us at that we do not decode: inputs, rejected as unsupported.
_OTHER_IMAGE_EXTENSIONS = ".gif .webp .fits .fit .fts .jp2 .j2k .heic .heif .avif .dng .raw .exr"
IMAGE_EXTENSIONS = frozenset(f"{_SUPPORTED_EXTENSIONS} {_OTHER_IMAGE_EXTENSIONS}".split())
_TEXT_EXTENSIONS = ".csv .tsv .md .txt .json .yaml .yml .toml .ini .cfg .html .htm .xml .log .py"
_OTHER_EXTENSIONS = ".ipynb .pdf .zip .gz .tar .npz .npy .pt .ckpt .pkl .sha256 .md5"
IGNORED_EXTENSIONS = frozenset(f"{_TEXT_EXTENSIONS} {_OTHER_EXTENSIONS}".split())
# An input when what the compression wraps has an image extension (``x.pgm.gz``).
COMPRESSED_EXTENSIONS = frozenset({".gz", ".bz2"})


def _is_candidate(path: str, name: str) -> bool:
    """Whether a file found by walking a folder is an input (see module docstring)."""
    stem, ext = os.path.splitext(name.lower())
    if ext in COMPRESSED_EXTENSIONS:
        return os.path.splitext(stem)[1] in IMAGE_EXTENSIONS
    if ext in IMAGE_EXTENSIONS:
        return True
    if ext in IGNORED_EXTENSIONS or not os.path.isfile(path):
        return False  # (opening a FIFO would block)
    try:
        with open(path, "rb") as f:
            return detect_format(f.read(16)) is not None
    except OSError:
        return False


def _walk(root: str) -> list[str]:
    """All input files under ``root`` (absolute, normalised, sorted)."""
    out: list[str] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link loop or a folder reached twice through links
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            p = os.path.join(dirpath, name)
            if _is_candidate(p, name):
                out.append(p)
    return sorted(out)


def _read_list(list_file: Path) -> list[str]:
    """Paths named by a list file, resolved against its folder, duplicates removed.

    Names that are not UTF-8 are kept as the bytes they are (``surrogateescape``).

    Raises:
        DataSourceError: the file cannot be read, is not text, or names no existing path
            (then it is no list file: a file given where a folder was meant).
    """
    not_a_list = f"data.root={list_file} is a file, not a folder"
    hint = "point data.root at the folder of the images"
    try:
        data = list_file.read_bytes()
    except OSError as e:
        raise DataSourceError(f"cannot read list file {list_file}: {e}") from e
    if b"\0" in data:
        raise DataSourceError(f"{not_a_list} (nor an image, nor a text list of images): {hint}")
    text = data.decode("utf-8", "surrogateescape")
    base = list_file.parent
    out: dict[str, None] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line).expanduser()
        out[os.path.normpath(os.path.abspath(p if p.is_absolute() else base / p))] = None
    if out and not any(os.path.lexists(p) for p in out):
        lines = f"{len(out)} line" + ("s" if len(out) != 1 else "")
        raise DataSourceError(
            f"{not_a_list}: read as a list of images, none of its {lines} names an existing "
            f"file; {hint}"
        )
    return list(out)


def resolve_inputs(root: Path) -> tuple[Path, list[str]]:
    """Data root and the input files of a folder, a list file or a single image.

    Raises:
        DataSourceError: ``root`` is missing, no folder nor regular file (a device, a FIFO:
            reading it would never end), or a file that is no image nor list of images.
    """
    if not root.exists():
        raise DataSourceError(f"data source not found: {root}")
    if root.is_dir():
        return root, _walk(str(root))
    problem = path_problem(str(root))
    if problem is not None:
        raise DataSourceError(
            f"data.root={root} is not a folder: {str(problem).removeprefix(f'{root}: ')}"
        )
    if root.suffix.lower() in IMAGE_EXTENSIONS or _is_candidate(str(root), root.name):
        return root.parent, [str(root)]
    files = _read_list(root)
    if not files:
        return root.parent, []
    common = os.path.commonpath([str(root.parent), *(os.path.dirname(p) for p in files)])
    return Path(common), files
