"""THEMIS L1 CDF files (read with cdflib).

L1 CDF (``thg_l1_asf_<site>_YYYYMMDDHH_vNN.cdf``): one CDF holds an hour of frames; the
image variable ``thg_asf_<site>`` has shape (n_frames, 256, 256) uint16 and
``thg_asf_<site>_epoch`` gives each frame's time.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from pathlib import Path

import cdflib
import numpy as np

from aurora.infra.errors import AuroraError

_IMAGE_VAR = re.compile(r"^thg_as[fi]_([a-z0-9]{4})$")


class CdfError(AuroraError):
    """A CDF that cannot be read (``unreadable``) or holds no THEMIS image (``unsupported``)."""

    def __init__(self, message: str, unsupported: bool = False) -> None:
        super().__init__(message)
        self.unsupported = unsupported


_local = threading.local()


def _open(path: str) -> cdflib.CDF:
    """Open a CDF, reusing this thread's last handle when it is the same unchanged file.

    Consecutive frames of one file are read by the same worker most of the time, and a
    whole-file-compressed CDF is decompressed to a temporary file on every open.
    """
    st = Path(path).stat()
    key = (path, st.st_mtime_ns, st.st_size)
    cached = getattr(_local, "cdf", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    cdf = cdflib.CDF(path)
    _local.cdf = (key, cdf)  # the previous handle closes when garbage-collected
    return cdf


def _image_variable(cdf: cdflib.CDF, path: str) -> str:
    """Name of the THEMIS image variable of an open CDF."""
    names = cdf.cdf_info().zVariables
    for name in names:
        if _IMAGE_VAR.match(name):
            return name
    raise CdfError(f"{path}: no THEMIS image variable 'thg_asf_<site>' in CDF", unsupported=True)


def _epochs_to_datetimes(epochs: np.ndarray) -> list[datetime | None]:
    """Convert CDF epochs (any CDF epoch type) to UTC datetimes; fill values become None."""
    try:
        converted = cdflib.cdfepoch.to_datetime(epochs)
    except Exception:  # cdflib raises a variety of errors on odd epoch types
        return [None] * len(epochs)
    out: list[datetime | None] = []
    for value in np.asarray(converted).astype("datetime64[us]"):
        if np.isnat(value):
            out.append(None)
            continue
        dt = value.astype(datetime)
        # Fill values (e.g. -1e31) convert to year 0 or similar nonsense: not a time.
        out.append(dt.replace(tzinfo=UTC) if isinstance(dt, datetime) and dt.year > 1900 else None)
    return out


def cdf_frames(path: str | Path) -> list[datetime | None]:
    """List the frames of a THEMIS ASI CDF.

    Args:
        path: the CDF file.

    Returns:
        One entry per frame: its UTC time, or None when the epoch is missing or invalid.

    Raises:
        CdfError: the file is not a readable CDF or holds no THEMIS image variable.
    """
    path = str(path)
    try:
        cdf = _open(path)
        var = _image_variable(cdf, path)
        info = cdf.varinq(var)
        if len(info.Dim_Sizes) != 2:
            raise CdfError(
                f"{path}: variable {var} has dimensions {info.Dim_Sizes}, expected 2-D frames",
                unsupported=True,
            )
        n = int(info.Last_Rec) + 1
        epoch_var = f"{var}_epoch"
        if epoch_var in cdf.cdf_info().zVariables:
            epochs = np.atleast_1d(np.asarray(cdf.varget(epoch_var)))
            times = _epochs_to_datetimes(epochs)
        else:
            times = []
    except CdfError:
        raise
    except Exception as e:  # cdflib fails with ValueError, OSError, struct.error, ...
        raise CdfError(f"{path}: cannot read CDF: {type(e).__name__}: {e}") from e
    times = (times + [None] * n)[:n]
    return times


def cdf_frame_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) of the frames of a THEMIS ASI CDF, as its image variable declares.

    Returns:
        The sides, or None when the variable does not declare two (:func:`cdf_frames` says why).
    """
    path = str(path)
    try:
        cdf = _open(path)
        dims = [int(d) for d in cdf.varinq(_image_variable(cdf, path)).Dim_Sizes]
    except Exception:  # the reasons are given by cdf_frames
        return None
    return (dims[1], dims[0]) if len(dims) == 2 else None


def read_cdf_frame(path: str | Path, frame: int) -> np.ndarray:
    """Read one frame of a THEMIS ASI CDF.

    Args:
        path: the CDF file.
        frame: frame index, 0-based.

    Returns:
        The frame as a (H, W) uint16 array (256 x 256 for THEMIS full-resolution images).

    Raises:
        CdfError: the file or that frame cannot be read.
    """
    path = str(path)
    try:
        cdf = _open(path)
        var = _image_variable(cdf, path)
        data = cdf.varget(var, startrec=frame, endrec=frame)
    except CdfError:
        raise
    except Exception as e:
        raise CdfError(f"{path}: cannot read frame {frame}: {type(e).__name__}: {e}") from e
    arr = np.asarray(data)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or arr.size == 0:
        raise CdfError(f"{path}: frame {frame} has shape {arr.shape}, expected (H, W)")
    if arr.dtype != np.uint16:
        if arr.dtype.kind not in "ui" or arr.min() < 0 or arr.max() > np.iinfo(np.uint16).max:
            raise CdfError(f"{path}: frame {frame} has dtype {arr.dtype}, expected uint16")
        arr = arr.astype(np.uint16)
    return np.ascontiguousarray(arr)
