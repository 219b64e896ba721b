"""What the report shows, reduced to small arrays that are saved next to it.

``report_data.npz`` (no pickle) holds everything needed to redraw the report from the run
folder alone (``python -m aurora.report RUN_DIR``): labels, the 2-D map, ids, timestamps,
truth, Moon flags, the montage picks and their thumbnails.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aurora.grid.scoring import n_groups
from aurora.infra.atomic import atomic_save_npz
from aurora.infra.errors import AuroraError

if TYPE_CHECKING:
    from aurora.report.record import RunRecord

DATA_FILE = "report_data.npz"
FORMAT = "aurora-report-data/1"
#: Thumbnails per montage and their side in pixels.
MONTAGE_SIZE = 16
THUMB_PX = 64


class ReportDataError(AuroraError):
    """``report_data.npz`` is missing or unreadable."""


@dataclass
class ReportData:
    """Per-image columns and montage picks of a run.

    Attributes:
        ids: (N,) image ids.
        labels: (N,) int64 fused labels, -1 unassigned.
        map2d: (N, 2) float32 2-D map of the embedding.
        map_method: how ``map2d`` was made (e.g. ``"PCA of the 10-D embedding"``).
        timestamps: (N,) ISO-8601 strings, ``""`` when unknown.
        moon: (N,) bool, Moon detected by preprocessing.
        truth: (N,) str true class (``""`` = not in the table), or None without a truth table.
        moon_truth: (N,) str Moon flag of the truth table, or None.
        montage_labels: (M,) int64 group of each montage pick (-1 = unassigned), grouped and
            in display order (nearest the group centre first).
        montage_index: (M,) int64 image index of each pick.
        thumbs: (M, THUMB_PX, THUMB_PX, 3) uint8 the picks' thumbnails.
        reference: (N,) str class of each labelled reference image (``""`` = ordinary image).
    """

    ids: np.ndarray
    labels: np.ndarray
    map2d: np.ndarray
    map_method: str
    timestamps: np.ndarray
    moon: np.ndarray
    truth: np.ndarray | None
    moon_truth: np.ndarray | None
    montage_labels: np.ndarray
    montage_index: np.ndarray
    thumbs: np.ndarray
    reference: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.reference is None:
            self.reference = np.full(len(self.labels), "", dtype=str)

    @property
    def n_groups(self) -> int:
        """Number of fused groups (labels 0..K-1)."""
        return n_groups(self.labels)

    def times(self) -> list[datetime | None]:
        """Timestamps as datetimes (None when unknown)."""
        return [datetime.fromisoformat(t) if t else None for t in self.timestamps]

    def save(self, path: str | Path) -> None:
        """Write ``report_data.npz`` (no pickled objects)."""
        extra: dict[str, np.ndarray] = {}
        if self.truth is not None:
            extra["truth"] = self.truth.astype(str)
        if self.moon_truth is not None:
            extra["moon_truth"] = self.moon_truth.astype(str)
        atomic_save_npz(
            path,
            format=np.array(FORMAT),
            ids=self.ids.astype(str),
            labels=self.labels.astype(np.int64),
            map2d=self.map2d.astype(np.float32),
            map_method=np.array(self.map_method),
            timestamps=self.timestamps.astype(str),
            moon=self.moon.astype(bool),
            montage_labels=self.montage_labels.astype(np.int64),
            montage_index=self.montage_index.astype(np.int64),
            thumbs=self.thumbs.astype(np.uint8),
            reference=np.asarray(self.reference).astype(str),
            **extra,
        )

    @classmethod
    def load(cls, path: str | Path) -> ReportData:
        """Read a file written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise ReportDataError(
                f"{path} not found: the report can only be rebuilt from a run whose report was "
                "written by this aurora version (run `python cluster.py` again)"
            )
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["format"]) != FORMAT:
                    raise ReportDataError(f"{path}: unknown report data format {z['format']}")
                return cls(
                    ids=z["ids"],
                    labels=z["labels"],
                    map2d=z["map2d"],
                    map_method=str(z["map_method"]),
                    timestamps=z["timestamps"],
                    moon=z["moon"],
                    truth=z["truth"] if "truth" in z.files else None,
                    moon_truth=z["moon_truth"] if "moon_truth" in z.files else None,
                    montage_labels=z["montage_labels"],
                    montage_index=z["montage_index"],
                    thumbs=z["thumbs"],
                    reference=z["reference"] if "reference" in z.files else None,
                )
        except (OSError, KeyError, ValueError) as err:
            raise ReportDataError(f"cannot read {path}: {err}") from err


def map_2d(embedding: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """A 2-D map of an (N, d) embedding: itself when d <= 2, else its first two PCs.

    Returns:
        ((N, 2) float32, a short description for the caption).
    """
    x = np.asarray(embedding, dtype=np.float64)
    n, d = x.shape
    if d > 2 and n >= 3:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed).fit(x)
        share = float(pca.explained_variance_ratio_.sum())
        return pca.transform(x).astype(np.float32), (
            f"first two principal components of the {d}-D embedding ({share:.0%} of its variance)"
        )
    out = np.zeros((n, 2), np.float32)
    out[:, : min(d, 2)] = x[:, :2]
    return out, f"the {d}-D embedding itself"


def montage_picks(
    embedding: np.ndarray, labels: np.ndarray, per_group: int = MONTAGE_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Images shown for each group: evenly spaced along the distance-to-centre order.

    The first pick of a group is its image nearest the group's mean embedding, the last the
    farthest, so a montage shows both the typical member and the spread.

    Args:
        embedding: (N, d) embedding.
        labels: (N,) labels, -1 unassigned (picked the same way, as their own set).
        per_group: picks per group (fewer when the group is smaller).

    Returns:
        (group of each pick (M,), image index of each pick (M,)); groups 0..K-1, then -1.
    """
    x = np.asarray(embedding, dtype=np.float64)
    labels = np.asarray(labels)
    groups = list(range(int(labels.max()) + 1 if len(labels) else 0))
    if (labels < 0).any():
        groups.append(-1)
    out_g: list[int] = []
    out_i: list[int] = []
    for g in groups:
        idx = np.flatnonzero(labels == g) if g >= 0 else np.flatnonzero(labels < 0)
        if len(idx) == 0:
            continue
        dist = np.linalg.norm(x[idx] - x[idx].mean(axis=0), axis=1)
        order = idx[np.argsort(dist, kind="stable")]
        pos = np.unique(np.linspace(0, len(order) - 1, min(per_group, len(order))).round())
        out_i.extend(int(order[int(p)]) for p in pos)
        out_g.extend([g] * len(pos))
    return np.asarray(out_g, np.int64), np.asarray(out_i, np.int64)


def shrink(images: np.ndarray, px: int = THUMB_PX) -> np.ndarray:
    """(M, S, S, 3) uint8 -> (M, px, px, 3) uint8 (area-averaged)."""
    from PIL import Image

    out = np.zeros((len(images), px, px, 3), np.uint8)
    for k, img in enumerate(images):
        arr = np.asarray(img)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=-1)
        if arr.dtype != np.uint8:
            arr = (np.clip(arr.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
        out[k] = np.asarray(Image.fromarray(arr).resize((px, px), Image.BOX))
    return out


def _str_column(values: Any, n: int) -> np.ndarray:
    return np.array(["" if v is None else str(v) for v in list(values)[:n]], dtype=str)


def from_record(record: RunRecord) -> ReportData:
    """Reduce a run record to the report's data (reads only the montage thumbnails)."""
    labels = np.asarray(record.labels, dtype=np.int64)
    n = len(labels)
    map2d, method = map_2d(record.embedding, record.seed)
    mg, mi = montage_picks(record.embedding, labels)
    thumbs = (
        shrink(np.asarray(record.thumbnails[np.sort(mi)]))
        if len(mi)
        else np.zeros((0, THUMB_PX, THUMB_PX, 3), np.uint8)
    )
    if len(mi):  # rows were read in sorted order (fast on a memmap); put them back
        thumbs = thumbs[np.argsort(np.argsort(mi))]
    stamps = np.array(
        [
            t.isoformat() if isinstance(t, datetime) else (str(t) if t else "")
            for t in record.timestamps
        ],
        dtype=str,
    )
    moon_truth = record.nuisances.get("moon") if record.nuisances else None
    ref = list(getattr(record, "reference_classes", None) or [])
    return ReportData(
        ids=np.array([str(i) for i in record.ids], dtype=str),
        labels=labels,
        map2d=map2d,
        map_method=method,
        timestamps=stamps if len(stamps) == n else np.full(n, "", dtype=str),
        moon=np.asarray(record.moon, dtype=bool),
        truth=None if record.truth is None else _str_column(record.truth, n),
        moon_truth=None if moon_truth is None else _str_column(moon_truth, n),
        montage_labels=mg,
        montage_index=mi,
        thumbs=thumbs,
        reference=_str_column(ref, n) if len(ref) == n else None,
    )
