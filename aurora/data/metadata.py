"""Per-image metadata given by the user as a CSV table (``path,...,time``).

The table names images by their id, the path relative to the data root in POSIX form as in
the manifest (``N20031221G030001.bmp``, ``night1/img.jpg``, ``file.pgm.gz#0003`` for one
frame of a multi-frame file). Its ``time`` column holds ISO 8601 times: with ``Z`` or a UTC
offset (converted to UTC), or naive (taken as UTC); a trailing `` UTC`` is accepted too.
"""

from __future__ import annotations

import csv
import posixpath
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from aurora.infra.errors import AuroraError

__all__ = ["MetadataError", "parse_time", "read_time_column"]


class MetadataError(AuroraError):
    """A metadata table that cannot be used; the message names the file, line and value."""


def parse_time(text: str) -> datetime | None:
    """Parse one ISO 8601 time as an aware UTC datetime.

    Args:
        text: e.g. ``2003-12-21T03:00:01``, ``2003-12-21 03:00:01.5Z``,
            ``2003-12-21T11:00:01+08:00`` or ``2014-03-10 06:00:00.063119 UTC``.

    Returns:
        The time in UTC (naive input is UTC), or None when ``text`` is not such a time.
    """
    text = text.strip()
    if text.endswith(" UTC"):
        text = text[:-4].rstrip()
    if len(text) < 10:  # fromisoformat also takes "2003" or "20031221" alone: too loose
        return None
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _normalise_id(path: str) -> str:
    """A table's path cell in the manifest's id form (``./a/b.bmp`` -> ``a/b.bmp``)."""
    path = path.strip().replace("\\", "/")
    frame = ""
    if "#" in path:
        path, frame = path.split("#", 1)
        frame = "#" + frame
    return posixpath.normpath(path) + frame if path else frame


def read_time_column(
    csv_path: str | Path,
    ids: Sequence[str],
    column: str = "time",
    missing_ok: bool = False,
) -> list[datetime | None]:
    """Times of the given images from a metadata CSV.

    Rows whose path is not among ``ids`` are ignored; an image without a row, or with an
    empty cell, gets None. A path given twice must give the same time both times.

    Args:
        csv_path: the table; needs a ``path`` column and the ``column`` column.
        ids: (N,) image ids (paths relative to the data root, ``#NNNN`` for frames).
        column: the name of the time column.
        missing_ok: when the table has no ``column``, return N Nones instead of raising
            (for a truth table that may or may not carry times).

    Returns:
        (N,) aware UTC datetimes or None, in the order of ``ids``.

    Raises:
        MetadataError: the file cannot be read, lacks a ``path`` column (or the time column,
            unless ``missing_ok``), holds a time that is not ISO 8601, or gives one path two
            different times.
    """
    csv_path = Path(csv_path)
    wanted = set(ids)
    found: dict[str, tuple[datetime | None, int, str]] = {}
    try:
        with open(csv_path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
            reader = csv.DictReader(f)
            fields = [name.strip() for name in reader.fieldnames or []]
            if "path" not in fields:
                raise MetadataError(
                    f"metadata table {csv_path} needs a 'path' column (it has: "
                    f"{', '.join(fields) or 'no header'})"
                )
            if column not in fields:
                if missing_ok:
                    return [None] * len(ids)
                raise MetadataError(
                    f"metadata table {csv_path} has no '{column}' column (it has: "
                    f"{', '.join(fields)})"
                )
            reader.fieldnames = fields  # tolerate " time" style headers
            for row in reader:
                line = reader.line_num
                if any("\x00" in (v or "") for v in row.values() if isinstance(v, str)):
                    # Undecodable bytes are kept (file names need not be UTF-8); a NUL is not.
                    raise MetadataError(
                        f"{csv_path} line {line}: a NUL byte: not a text table of path,{column}"
                    )
                rid = _normalise_id(row.get("path") or "")
                if rid not in wanted:
                    continue
                raw = (row.get(column) or "").strip()
                when = parse_time(raw) if raw else None
                if raw and when is None:
                    raise MetadataError(
                        f"{csv_path} line {line}: {column} {raw!r} of {rid} is not an ISO 8601 "
                        "time (e.g. 2003-12-21T03:00:01, with or without Z or +HH:MM)"
                    )
                if rid in found and found[rid][0] != when:
                    _, first_line, first_raw = found[rid]
                    raise MetadataError(
                        f"{csv_path} line {line}: {rid} is listed again with {column} {raw!r}; "
                        f"line {first_line} gave {first_raw!r}"
                    )
                found.setdefault(rid, (when, line, raw))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise MetadataError(f"cannot read metadata table {csv_path}: {e}") from e
    return [found[i][0] if i in found else None for i in ids]
