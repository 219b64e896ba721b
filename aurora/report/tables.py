"""The numbers of a report page, from the run's per-image columns: groups by class, per-group
statistics and the dependence of the groups on the Moon (no figure, no template: :mod:`.build`
draws and fills the page).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from aurora.grid.scoring import n_groups, nuisance_dependence
from aurora.report.data import ReportData

UNKNOWN_CLASS = "(not in table)"


@dataclass
class Table:
    """A labelled count table: ``counts[i, j]`` for row ``rows[i]`` and column ``cols[j]``."""

    rows: list[str]
    cols: list[str]
    counts: np.ndarray

    def view(self) -> list[dict[str, Any]]:
        """Rows for the template: name, ``cells`` as (count, row share) pairs, total."""
        out = []
        for name, row in zip(self.rows, self.counts, strict=True):
            total = int(row.sum())
            cells = [(int(c), float(c / total) if total else 0.0) for c in row]
            out.append({"name": name, "cells": cells, "total": total})
        return out


def group_names(labels: np.ndarray) -> list[tuple[int, str]]:
    """(label, display name) of groups 0..K-1, then unassigned when present."""
    k = n_groups(labels)
    out = [(g, str(g)) for g in range(k)]
    if (labels < 0).any():
        out.append((-1, "unassigned"))
    return out


def confusion_table(labels: np.ndarray, truth: np.ndarray) -> Table:
    """Counts of group × true class (rows: groups 0..K-1 then unassigned; columns sorted).

    Images without a true class (``""``) get the column :data:`UNKNOWN_CLASS`.
    """
    labels = np.asarray(labels)
    truth = np.asarray(truth, dtype=str)
    classes = sorted({c for c in truth if c})
    if (truth == "").any():
        classes.append(UNKNOWN_CLASS)
    col = {c: j for j, c in enumerate(classes)}
    rows = group_names(labels)
    row = {g: i for i, (g, _) in enumerate(rows)}
    counts = np.zeros((len(rows), len(classes)), np.int64)
    for g, c in zip(labels, truth, strict=True):
        counts[row[int(g) if g >= 0 else -1], col[c or UNKNOWN_CLASS]] += 1
    return Table([name for _, name in rows], classes, counts)


def _share(mask: np.ndarray) -> float:
    return float(mask.mean()) if len(mask) else math.nan


def group_stats(data: ReportData) -> list[dict[str, Any]]:
    """One row per group (and unassigned): size, share, Moon share, majority class, time span."""
    n = len(data.labels)
    times = data.timestamps
    out = []
    for g, name in group_names(data.labels):
        m = data.labels == g if g >= 0 else data.labels < 0
        row: dict[str, Any] = {
            "label": g,
            "name": name,
            "n": int(m.sum()),
            "share": float(m.sum() / n) if n else 0.0,
            "moon": _share(data.moon[m]),
        }
        if data.moon_truth is not None:
            row["moon_truth"] = _share(np.isin(data.moon_truth[m], ["1", "True", "true"]))
        if data.truth is not None:
            vals, counts = np.unique(data.truth[m], return_counts=True)
            best = int(np.argmax(counts))
            row["majority"] = str(vals[best]) or UNKNOWN_CLASS
            row["majority_share"] = float(counts[best] / counts.sum())
        ts = sorted(t for t in times[m] if t)
        if ts:
            row["first"], row["last"] = _span(ts[0], ts[-1])
        out.append(row)
    return out


def _span(first: str, last: str) -> tuple[str, str]:
    """ISO times shortened to minutes; the date of ``last`` dropped when it is ``first``'s."""
    a, b = first[:16].replace("T", " "), last[:16].replace("T", " ")
    return a, (b[11:] if a[:10] == b[:10] else b)


def moon_ami(labels: np.ndarray, flag: np.ndarray) -> float:
    """:func:`~aurora.grid.scoring.nuisance_dependence` of the assigned images' groups on a
    Moon flag.

    Args:
        labels: (N,) fused labels, -1 = unassigned (left out).
        flag: (N,) str Moon flag, ``""`` = unknown (left out).

    Returns:
        The AMI, or NaN when the known flag takes fewer than two values among the assigned
        images (a Moon that is never, or always, in the sky cannot have split the groups).
    """
    m = labels >= 0
    f = np.asarray(flag)[m]
    if np.unique(f[f != ""]).size < 2:
        return math.nan
    return nuisance_dependence(labels[m], f)
