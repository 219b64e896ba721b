"""What a scan produces: image records, rejections with their reasons, and the manifest.

The rules that decide what is an input, a duplicate or a rejection are in
:mod:`aurora.data.sources`; decoding is in :mod:`aurora.data.decode`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from aurora.infra.atomic import atomic_write_text
from aurora.infra.cache import stable_hash
from aurora.infra.errors import AuroraError

UNREADABLE = "unreadable"
EMPTY_FILE = "empty file"
TRUNCATED = "truncated"
UNSUPPORTED_FORMAT = "unsupported format"
MISSING = "missing"
DANGLING_LINK = "dangling link"
SYMLINK_LOOP = "symlink loop"
NOT_A_FILE = "not a file"
TOO_LARGE = "too large"
REASONS: tuple[str, ...] = (
    UNREADABLE,
    EMPTY_FILE,
    TRUNCATED,
    UNSUPPORTED_FORMAT,
    MISSING,
    DANGLING_LINK,
    SYMLINK_LOOP,
    NOT_A_FILE,
    TOO_LARGE,
)
#: Code of an input whose content repeats an earlier one (not a rejection: see ``duplicates``).
DUPLICATE = "duplicate"


class DataSourceError(AuroraError):
    """A data source that cannot be used at all: missing path, no images, unreadable list."""


class ImageReadError(AuroraError):
    """One input that cannot become an image; ``reason`` is one of :data:`REASONS`.

    Args:
        reason: the rejection reason.
        message: a clear one-line message naming the file.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ImageRecord:
    """One image of a data set (a file, or one frame of a multi-frame file)."""

    id: str
    path: str
    frame: int | None
    timestamp: datetime | None
    content_hash: str


@dataclass(frozen=True)
class Rejection:
    """One input that did not become an image.

    Attributes:
        path: its id (path relative to the data root, ``#NNNN`` for a frame).
        reason: a short code (:data:`REASONS`, or a preprocessing reason).
        detail: one line saying what exactly is wrong (not compared: two rejections of the
            same input for the same reason are equal).
    """

    path: str
    reason: str
    detail: str = field(default="", compare=False)


@dataclass
class Manifest:
    """The images of a data set, their duplicates and the inputs rejected while scanning it.

    Attributes:
        root: the data root (ids are relative to it).
        records: the accepted images, originals only, sorted by id.
        rejected: the inputs rejected while scanning, sorted by path.
        duplicates: duplicate id -> original id (an id in ``records``), for inputs whose
            content repeats an earlier input's.
    """

    root: Path
    records: list[ImageRecord]
    rejected: list[Rejection] = field(default_factory=list)
    duplicates: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Stable hash of the (id, content hash) pairs: identifies the data set for caching.

        The root folder is not part of the key, so a moved data set keeps its cache; nor are
        the duplicates and rejections, so a new copy or a new broken file re-uses it.
        """
        return stable_hash("aurora-manifest-v1", [(r.id, r.content_hash) for r in self.records])

    @property
    def n_inputs(self) -> int:
        """Number of inputs: accepted records plus duplicates plus rejections."""
        return len(self.records) + len(self.duplicates) + len(self.rejected)

    def write(self, path: str | Path) -> None:
        """Write the records as CSV (``id,path,frame,timestamp,content_hash``).

        The rejections go to a sibling ``<stem>.rejected.csv`` (``path,reason,detail``), the
        duplicates to ``<stem>.duplicates.csv`` (``id,original``).
        """
        path = Path(path)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["id", "path", "frame", "timestamp", "content_hash"])
        for r in self.records:
            writer.writerow(
                [
                    r.id,
                    r.path,
                    "" if r.frame is None else r.frame,
                    "" if r.timestamp is None else r.timestamp.isoformat(),
                    r.content_hash,
                ]
            )
        atomic_write_text(path, buf.getvalue())
        write_rejected_csv(self.rejected, _sibling(path, "rejected"))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["id", "original"])
        writer.writerows(sorted(self.duplicates.items()))
        atomic_write_text(_sibling(path, "duplicates"), buf.getvalue())

    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        """Read a manifest written by :meth:`write`.

        Raises:
            DataSourceError: the file is missing or is not a manifest CSV.
        """
        path = Path(path)
        try:
            with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
                rows = list(csv.DictReader(f))
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise DataSourceError(f"cannot read manifest {path}: {e}") from e
        records: list[ImageRecord] = []
        try:
            for row in rows:
                records.append(
                    ImageRecord(
                        id=row["id"],
                        path=row["path"],
                        frame=int(row["frame"]) if row["frame"] else None,
                        timestamp=datetime.fromisoformat(row["timestamp"])
                        if row["timestamp"]
                        else None,
                        content_hash=row["content_hash"],
                    )
                )
        except (KeyError, TypeError, ValueError) as e:
            raise DataSourceError(f"{path} is not a manifest CSV: {e}") from e
        rejected: list[Rejection] = []
        duplicates: dict[str, str] = {}
        try:
            sibling = _sibling(path, "rejected")
            if sibling.is_file():
                with open(sibling, newline="", encoding="utf-8", errors="surrogateescape") as f:
                    rejected = [
                        Rejection(r["path"], r["reason"], r.get("detail") or "")
                        for r in csv.DictReader(f)
                    ]
            sibling = _sibling(path, "duplicates")
            if sibling.is_file():
                with open(sibling, newline="", encoding="utf-8", errors="surrogateescape") as f:
                    duplicates = {r["id"]: r["original"] for r in csv.DictReader(f)}
        except (OSError, UnicodeDecodeError, csv.Error, KeyError) as e:
            raise DataSourceError(f"cannot read the sidecar files of manifest {path}: {e}") from e
        root = _root_from_record(records[0]) if records else path.parent
        return cls(root=root, records=records, rejected=rejected, duplicates=duplicates)


def _sibling(path: Path, what: str) -> Path:
    return path.with_name(f"{path.stem}.{what}.csv")


def duplicate_detail(original: str) -> str:
    """The detail text of a duplicate: ``duplicate of <original id>``."""
    return f"{DUPLICATE} of {original}"


def expand_duplicates(
    ids: Sequence[str], duplicates: Mapping[str, str]
) -> tuple[list[str], np.ndarray]:
    """Every input id, originals and duplicates, with the row whose result each one takes.

    Args:
        ids: (N,) ids of the rows of a result (e.g. the accepted images, one label each).
        duplicates: duplicate id -> original id (:attr:`Manifest.duplicates`).

    Returns:
        ``(all_ids, rows)``: the N + D ids sorted, and (N + D,) int64 indices into ``ids``:
        the row itself for an original, its original's row for a duplicate.

    Raises:
        ValueError: a duplicate is also in ``ids``, or its original is not.
    """
    row = {rid: i for i, rid in enumerate(ids)}
    if len(row) != len(ids):
        raise ValueError("ids are not unique")
    for dup, orig in duplicates.items():
        if dup in row:
            raise ValueError(f"{dup} is both a duplicate (of {orig}) and a row of its own")
        if orig not in row:
            raise ValueError(f"{dup} is a duplicate of {orig}, which has no row")
    all_ids = sorted([*ids, *duplicates])
    rows = np.fromiter(
        (row[rid] if rid in row else row[duplicates[rid]] for rid in all_ids),
        dtype=np.int64,
        count=len(all_ids),
    )
    return all_ids, rows


def _root_from_record(record: ImageRecord) -> Path:
    """Recover the data root from ``path == root / id`` (frame suffix stripped)."""
    rel = record.id.split("#", 1)[0] if record.frame is not None else record.id
    parts = len(Path(rel).parts)
    root = Path(record.path)
    for _ in range(parts):
        root = root.parent
    return root


def write_rejected_csv(rejections: Iterable[Rejection], path: str | Path) -> None:
    """Write rejections as CSV with columns ``path,reason,detail`` (atomically)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "reason", "detail"])
    for r in rejections:
        writer.writerow([r.path, r.reason, " ".join(r.detail.split())])
    atomic_write_text(path, buf.getvalue())


def write_labels_csv(
    path: str | Path,
    ids: Sequence[str],
    columns: Mapping[str, Sequence[Any]],
    duplicates: Mapping[str, str] | None = None,
) -> None:
    """The ``labels.csv`` of a run or of an apply, atomically: ``path`` and then ``columns``.

    One line per input: a duplicate (same content as an image in ``ids``) gets its original's
    values under its own path, so the accounting stays one line per input.

    Args:
        path: the CSV file.
        ids: (N,) image ids, one per row of every column.
        columns: name -> (N,) values (written with ``str``; format floats before).
        duplicates: copy id -> original id (in ``ids``).

    Raises:
        ValueError: a column's length differs from ``ids``.
    """
    for name, values in columns.items():
        if len(values) != len(ids):
            raise ValueError(f"labels.csv column {name!r} has {len(values)} values, {len(ids)} ids")
    all_ids, rows = expand_duplicates(ids, duplicates or {})
    cols = list(columns.values())
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", *columns])
    for rid, r in zip(all_ids, rows, strict=True):
        w.writerow([rid, *(c[r] for c in cols)])
    atomic_write_text(path, buf.getvalue())
