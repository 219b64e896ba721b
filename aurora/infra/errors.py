"""The base of the errors a user can cause; the command line prints them in one line.

Also the two resource errors every stage can meet, a full disk and exhausted memory, and the
helpers that recognise them in an exception chain raised from inside a library (Lightning,
torch, numpy), so that :func:`aurora.infra.guard.run_guarded` can say what ran out and what to
change.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import traceback
from collections.abc import Iterator
from pathlib import Path

DISK_FULL_ERRNOS: frozenset[int] = frozenset({errno.ENOSPC, errno.EDQUOT})
"""``errno`` values of a write that failed for lack of space (device full, quota exceeded)."""


class AuroraError(RuntimeError):
    """A run cannot go on; the message says why and what to change.

    Every error a user can cause (a setting, an input file, a missing model or weights, a
    resource) derives from it, keeping its other bases (``class CheckpointError(AuroraError,
    ValueError)``) so that ``except ValueError`` still catches it. The command line prints
    these in one line (:func:`aurora.infra.guard.run_guarded`); any other exception is a bug and
    keeps its traceback.
    """


class RunError(AuroraError):
    """A run cannot go on with what it was given or what an earlier step left: a missing input,
    folder or model, an unfinished shard, a name the configuration lacks, no image or cell left
    to group. The message says which and what to change."""


class SettingsError(AuroraError, ValueError):
    """A setting that cannot work: the message names the key, the value and what is allowed."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        super().__init__(f"{key}={value!r} cannot work: {allowed}")
        self.key = key
        self.value = value
        self.allowed = allowed


def format_size(n_bytes: float) -> str:
    """Human-readable size in binary units, e.g. ``'41.0 MiB'``."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    size, i = float(n_bytes), 0
    while abs(size) >= 1024 and i < len(units) - 1:
        size /= 1024
        i += 1
    return f"{size:.0f} B" if i == 0 else f"{size:.1f} {units[i]}"


def free_bytes(path: str | Path) -> int | None:
    """Free bytes (for this user) on the file system holding ``path``, or None if unknown.

    ``path`` need not exist: its nearest existing parent is measured.
    """
    p = Path(path).absolute()
    for candidate in (p, *p.parents):
        if candidate.exists():
            try:
                return int(shutil.disk_usage(candidate).free)
            except OSError:
                return None
    return None


class DiskFullError(AuroraError):
    """A write failed, or would fail, for lack of disk space (or of quota).

    Attributes:
        path: the file or folder being written.
        free_bytes: free bytes on its file system when measured, else None.
        needed_bytes: bytes the write needed when known, else None.
        quota: True when the limit is the user's quota (EDQUOT), not the device.
    """

    def __init__(
        self,
        path: str | Path,
        free_bytes: int | None = None,
        needed_bytes: int | None = None,
        *,
        quota: bool = False,
    ) -> None:
        self.path = Path(path)
        self.free_bytes = free_bytes
        self.needed_bytes = needed_bytes
        self.quota = quota
        parts = []
        if quota:
            parts.append("disk quota exceeded")
        if free_bytes is not None:
            parts.append(f"{format_size(free_bytes)} free")
        if needed_bytes is not None:
            parts.append(f"{format_size(needed_bytes)} needed")
        what = ", ".join(parts) or "no space left on device"
        super().__init__(
            f"disk full writing {self.path}: {what}; free space on that disk or point the "
            "output (paths.cache_dir, hydra.run.dir) to another disk, then run again "
            "(finished stages are reused)"
        )


#: What to lower when memory ran out in each stage (the stage names of :func:`stage_of`).
MEMORY_HINTS: dict[str, str] = {
    "start-up": (
        "loading torch and the other libraries alone needs more than this process may use: "
        "raise its memory limit (ulimit -v, the job's memory request)"
    ),
    "the data scan": "lower jobs (each worker process reads images of its own)",
    "preprocessing": (
        "lower jobs (each worker process decodes and holds images of its own); a very large "
        "image file needs its whole size in memory"
    ),
    "extractor set-up": (
        "the network and its weights alone do not fit; batch sizes do not change that: free "
        "memory, or leave that extractor out (grid.extractors)"
    ),
    "training": ("lower the training batch size (train.loader.batch_size) or the image size"),
    "feature extraction": "lower extract.batch_size",
    "the grid": (
        "lower grid.fit_sample (the rows each cell fits on), or leave out the methods whose "
        "memory grows with the square of the images (kernel_pca, isomap, spectral)"
    ),
    "fusion": "use fewer images or fewer partitions (fusion.n_partitions)",
    "the report": "use fewer images",
    "solution loading": "free memory, or run where there is more",
    "solution saving": "use fewer images",
}


class OutOfMemoryError(AuroraError, MemoryError):
    """Memory (host or GPU) ran out; the message says where and which setting to lower.

    Attributes:
        device: ``"GPU"`` or ``"host"``.
        stage: the stage that ran out (a key of :data:`MEMORY_HINTS`: ``"preprocessing"``,
            ``"training"``, ``"feature extraction"``, ...) or ``""`` when unknown.
        detail: what the failing allocation asked for, when the library said so.
    """

    def __init__(self, device: str, stage: str = "", detail: str = "") -> None:
        self.device = device
        self.stage = stage
        self.detail = detail
        hint = MEMORY_HINTS.get(stage) or (
            "use fewer images, or lower train.loader.batch_size / extract.batch_size if it "
            "ran out while training or extracting features"
        )
        where = f" during {stage}" if stage else ""
        said = f" ({detail})" if detail else ""
        super().__init__(f"out of {device} memory{where}{said}: {hint}")


def exception_chain(err: BaseException) -> Iterator[BaseException]:
    """``err`` followed by its causes and contexts (``__cause__`` first), each once."""
    seen: set[int] = set()
    todo = [err]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo.extend(x for x in (e.__cause__, e.__context__) if x is not None)


def disk_full_error(err: BaseException, path: str | Path | None = None) -> DiskFullError | None:
    """The :class:`DiskFullError` that ``err`` (or an exception in its chain) amounts to.

    Args:
        err: any exception, e.g. one raised from inside Lightning or ``torch.save``.
        path: what the caller was writing; used when the ``OSError`` names no file.

    Returns:
        A :class:`DiskFullError` in the chain, one built from an ``ENOSPC`` / ``EDQUOT``
        ``OSError`` in the chain, or None when the chain has neither.
    """
    chain = list(exception_chain(err))
    for e in chain:
        if isinstance(e, DiskFullError):
            return e
    for e in chain:
        if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
            # A copy or rename names its destination second (shutil.copyfile names the source
            # first even when the destination's disk is the full one).
            target = e.filename2 or e.filename or path
            if target is None:
                return DiskFullError("an unnamed file", quota=e.errno == errno.EDQUOT)
            target = Path(os.fsdecode(target))
            return DiskFullError(target, free_bytes(target), quota=e.errno == errno.EDQUOT)
    return None


def _is_host_oom(e: BaseException) -> bool:
    """``MemoryError``, an ``OSError`` of ``ENOMEM`` (a fork, an mmap), or a shared library
    that could not be mapped for lack of address space (``import torch`` under ``ulimit -v``)."""
    if isinstance(e, MemoryError):
        return True
    if isinstance(e, OSError) and e.errno == errno.ENOMEM:
        return True
    text = str(e)
    return (
        isinstance(e, ImportError)
        and "failed to map segment from shared object" in text
        and "not permitted" not in text  # a noexec mount, not memory
    )


def _is_gpu_oom(e: BaseException) -> bool:
    import sys

    torch = sys.modules.get("torch")  # never import torch just to look
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if oom is not None and isinstance(e, oom):
        return True
    return isinstance(e, RuntimeError) and "CUDA out of memory" in str(e)


#: Functions of aurora that begin a stage: the innermost one on the stack names the stage that
#: was running when memory ran out (an orchestrator such as ``extract_all`` preprocesses, trains
#: and builds networks too, so its name says nothing).
_STAGE_OF_FUNCTION: dict[str, str] = {
    **dict.fromkeys(
        ("scan", "scan_cached", "scan_shard", "assemble_scan", "list_inputs", "ensure_dataset"),
        "the data scan",
    ),
    **dict.fromkeys(
        ("build_preprocessed", "assemble_preprocessed", "prepare_images"), "preprocessing"
    ),
    **dict.fromkeys(
        (
            "build_extractor",
            "build_extractors",
            "from_export",
            "load_encoder",
            "build_encoder",
            "load_timm_weights",
            "rebuild_extractor",
        ),
        "extractor set-up",
    ),
    **dict.fromkeys(("fit_model", "train_encoder_cached"), "training"),
    **dict.fromkeys(
        ("extract_features", "assemble_features", "load_feature_set"), "feature extraction"
    ),
    **dict.fromkeys(("run_grid", "run_cell", "fit_transform_cached"), "the grid"),
    "fuse": "fusion",
    "load_solution": "solution loading",
    "save_solution": "solution saving",
}
#: Folders of aurora whose every function belongs to one stage.
_STAGE_OF_FOLDER = {"/aurora/fusion/": "fusion", "/aurora/report/": "the report"}


def _frame_stage(filename: str, name: str) -> str:
    path = filename.replace(os.sep, "/")
    if "/lightning/pytorch/" in path:
        return "training"
    if "/aurora/" not in path:
        return ""
    if "/aurora/extractors/" in path and name == "__init__":
        return "extractor set-up"  # a network built by its constructor
    for folder, stage in _STAGE_OF_FOLDER.items():
        if folder in path:
            return stage
    return _STAGE_OF_FUNCTION.get(name, "")


def stage_of(*errors: BaseException) -> str:
    """The stage that was running when ``errors`` were raised, from the frames they passed
    through: the innermost frame that names a stage (see :data:`MEMORY_HINTS`), else ``""``.

    Args:
        errors: an exception and those it was raised from (outermost first); their tracebacks
            are read as one stack, the first's frames outermost.
    """
    frames = [f for e in errors for f in traceback.extract_tb(e.__traceback__)]
    for i in range(len(frames) - 1, -1, -1):
        frame = frames[i]
        # A module's body called from a function is an import (Python drops importlib's own
        # frames from the traceback); the script's and runpy's main module are not.
        if frame.name == "<module>" and i > 0 and not frames[i - 1].filename.endswith("runpy.py"):
            return "start-up"
        stage = _frame_stage(frame.filename, frame.name)
        if stage:
            return stage
    return ""


def out_of_memory_error(err: BaseException) -> OutOfMemoryError | None:
    """The :class:`OutOfMemoryError` that ``err`` (or an exception in its chain) amounts to.

    Recognises ``MemoryError`` (numpy's "Unable to allocate ..."), ``ENOMEM``, a library that
    could not be mapped into memory, and torch's ``OutOfMemoryError`` (CUDA); the message names
    the stage that was running (:func:`stage_of`) and what to lower there. aurora's own memory
    errors other than :class:`OutOfMemoryError` (e.g. the n² guard's ``MemoryLimitError``)
    carry their own advice and are not rewritten.
    """
    for e in exception_chain(err):
        if isinstance(e, OutOfMemoryError):
            return e
        if isinstance(e, AuroraError):
            continue
        gpu = _is_gpu_oom(e)
        if not gpu and not _is_host_oom(e):
            continue
        text = " ".join(str(e).split())
        m = re.search(r"[Tt]ried to allocate [\d.]+ ?\w+", text) or re.search(
            r"[Uu]nable to allocate [\d.]+ ?\w+", text
        )
        detail = m.group(0).replace("Unable", "tried").replace("unable", "tried") if m else ""
        m = re.search(r"of which ([\d.]+ ?\w+) is free", text)
        if m:
            detail = f"{detail}, {m.group(1)} free" if detail else f"{m.group(1)} free"
        stage = stage_of(err, e) if e is not err else stage_of(err)
        return OutOfMemoryError("GPU" if gpu else "host", stage, detail)
    return None
