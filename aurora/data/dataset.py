"""A data set as a run sees it: the folder (generated first for the synthetic sky), its
preprocessed images, the ground-truth table and the time of every frame.

Used by both ``cluster.py`` (:mod:`aurora.run`) and ``train.py`` (:func:`aurora.run.train.train`);
every function takes plain values, not a config.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from aurora.data.metadata import read_time_column
from aurora.data.synth import generate
from aurora.infra.errors import RunError

log = logging.getLogger("aurora")


def ensure_dataset(root: str | Path, synth: Mapping[str, Any] | None, jobs: int | None) -> Path:
    """Return the data folder, generating the synthetic sky there first when asked to.

    Args:
        root: image folder or list file.
        synth: ``{n, seed, size, moon_prob}`` for the built-in synthetic sky, or None.
        jobs: generator processes.
    """
    root = Path(root)
    if synth is not None and not (root / "labels.csv").is_file():
        # Never write into a folder that holds anything: it may be a user's images.
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise RunError(
                f"data.root={root} is not empty and has no labels.csv: the synthetic sky is "
                "generated only into a new or empty folder (for your own images use data=folder)"
            )

        log.info("generating the synthetic sky (%d images) in %s", synth["n"], root)
        root.parent.mkdir(parents=True, exist_ok=True)
        # Generated beside the folder and renamed into place: jobs of a sweep that start
        # together never see (or write into) a half-made sky; the first to finish wins.
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
        try:
            generate(
                tmp,
                n=int(synth["n"]),
                seed=int(synth["seed"]),
                size=int(synth["size"]),
                moon_prob=float(synth["moon_prob"]),
                jobs=jobs,
            )
            with contextlib.suppress(OSError):  # an empty folder, or another job's sky
                root.rmdir()
            with contextlib.suppress(OSError):
                os.rename(tmp, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if not (root / "labels.csv").is_file():
            raise RunError(f"the synthetic sky could not be moved into {root}")
    return root


class Truth(NamedTuple):
    """The ground truth of the accepted images, from the truth table.

    Attributes:
        classes: (N,) object array of true classes (None where the table has no row), or None
            without a truth table.
        nuisances: column name -> (N,) object array, for each nuisance column the table has.
    """

    classes: np.ndarray | None
    nuisances: dict[str, np.ndarray]


def read_truth(
    truth_csv: str | Path | None,
    ids: Sequence[str],
    column: str = "morphology",
    nuisance_columns: Sequence[str] = ("moon",),
) -> Truth:
    """Ground-truth classes and nuisance values per image, read once from the truth table.

    Args:
        truth_csv: CSV with a ``path`` column (ids relative to the data root), or None.
        ids: (N,) image ids.
        column: the column of the true class.
        nuisance_columns: columns to measure the clusters' dependence on; the ones the table
            lacks are left out (a real camera's table seldom has a ``moon`` column: the Moon
            detected by preprocessing is used then).

    Returns:
        The :class:`Truth`; images missing from the table get None (ignored by the scores).

    Raises:
        RunError: the table does not exist or has no ``path`` column.
    """
    if not truth_csv:
        return Truth(None, {})
    path = Path(truth_csv)
    if not path.is_file():
        raise RunError(f"ground-truth table {path} does not exist")
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        rows = list(csv.DictReader(f))
    if not rows or "path" not in rows[0]:
        raise RunError(f"ground-truth table {path} needs a 'path' column")
    table = {r["path"]: r for r in rows}
    classes = np.array([table.get(i, {}).get(column) for i in ids], dtype=object)
    header = rows[0]
    nuisances = {
        name: np.array([table.get(i, {}).get(name) for i in ids], dtype=object)
        for name in nuisance_columns
        if name in header
    }
    return Truth(classes, nuisances)


def frame_times(
    found: Sequence[Any],
    ids: Sequence[str],
    metadata_csv: str | Path | None,
    truth_csv: str | Path | None,
) -> list[Any]:
    """The UTC time of every image: the user's metadata table first, then file names and
    frame headers, then a ``time`` column of the truth table where nothing else gave one.

    Args:
        found: (N,) times from file names / frame headers (None where there was none).
        ids: (N,) image ids.
        metadata_csv: a CSV with ``path`` and ``time`` columns (``data.metadata``), or None.
        truth_csv: the truth table (``data.truth``), whose ``time`` column is optional.

    Returns:
        (N,) datetimes or None.
    """
    times = list(found)
    if metadata_csv:
        given = read_time_column(Path(str(metadata_csv)), ids)
        times = [g if g is not None else t for g, t in zip(given, times, strict=True)]
    if truth_csv and any(t is None for t in times) and Path(str(truth_csv)).is_file():
        given = read_time_column(Path(str(truth_csv)), ids, missing_ok=True)
        times = [t if t is not None else g for g, t in zip(given, times, strict=True)]
    return times
