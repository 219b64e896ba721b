"""How much of what the features know the clustering finds, on a labelled real folder.

Usage:
    python bench/bench_real.py DIR TRUTH [--out OUT] [--pixels raw|store] [--seed 0]
        [OVERRIDE ...]

e.g. on the Yellow River Station day of ``../shared/REAL_DATA.md``, with the MobileNet-v2 of
``../shared/weights`` (``W=../shared/weights``)::

    python bench/bench_real.py /tmp/yrs/images /tmp/yrs/truth.csv \\
        grid.extractors=[mobilenet_v2] grid.reducers=[pca,umap] \\
        grid.clusterers=[kmeans,agglomerative] grid.n_clusters=[4,8] \\
        extractors.mobilenet_v2.weights=$W/mobilenetv2_100.tf_quant_in1k_dequant.safetensors \\
        'extractors.mobilenet_v2.model_kwargs={pad_type:same}' \\
        'extractors.mobilenet_v2.pretrained_cfg_overlay={mean:[0.5,0.5,0.5],std:[0.5,0.5,0.5]}'

Composes the ``cluster`` config (``conf/``) with ``data=folder data.root=DIR data.truth=TRUTH``
and the overrides, runs the whole chain (:func:`aurora.run.run_cluster`) into OUT, then
prints one table, every figure from this one run:

- the cell the internal (Borda) ranking chose and the fused groups (``labels.csv``): AMI, NMI,
  homogeneity, purity (scored on the assigned images), unassigned share, number of groups;
- the pixel baseline: 32x32 grey pixels -> PCA-20 -> K-means with k = number of true classes
  (``--pixels raw``: the decoded frames, no preprocessing; ``store``: the preprocessed images
  of the first extractor);
- for every feature set of the run (features read back from the cache by
  :func:`aurora.run.load_context`, no recomputation) and for the pixels: K-means with
  k = number of classes on PCA-20 (AMI), and a supervised reference: 10-NN and a linear probe
  (standardised features, logistic regression) trained on the frames of even UTC hours and
  tested on the frames of odd hours. Labels follow the time of day and neighbouring frames are
  near duplicates, so a random split would measure memory, not knowledge. Times come from the
  truth table's ``time`` column, else from the frames (file names, headers).

Then, per extractor: its best cell by AMI and the rank the internal ranking gave it, and the AMI
of the cell the ranking put first. The figures also go to ``OUT/bench_real.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from aurora.infra.errors import AuroraError

ROOT = Path(__file__).resolve().parent.parent
PIXEL_SIDE = 32
PCA_DIM = 20
KNN_K = 10


class BenchError(AuroraError):
    """The labelled folder cannot be benchmarked (no truth, no times, one-sided split)."""


# --- the figures --------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table. Clustering scores are on the assigned images with known truth.

    Attributes:
        name: what the row measures.
        ami, nmi, homogeneity, purity: external scores (NaN when not applicable).
        unassigned: share of images with label -1.
        groups: number of groups (labels >= 0).
        knn, probe: test accuracy of 10-NN / the linear probe (odd hours); NaN if not applicable.
        knn_balanced, probe_balanced: the same as balanced accuracy (mean recall per class).
        knn_ami: AMI of the 10-NN's predictions with the truth on the test frames: what a
            grouping as good as a supervised classifier on these features would score.
    """

    name: str
    ami: float = float("nan")
    nmi: float = float("nan")
    homogeneity: float = float("nan")
    purity: float = float("nan")
    unassigned: float = float("nan")
    groups: int | None = None
    knn: float = float("nan")
    probe: float = float("nan")
    knn_balanced: float = float("nan")
    probe_balanced: float = float("nan")
    knn_ami: float = float("nan")


def known_mask(truth: Sequence[Any]) -> np.ndarray:
    """(N,) bool: truth value present (not None, NaN or empty)."""
    return np.array(
        [not (t is None or t == "" or (isinstance(t, float) and np.isnan(t))) for t in truth],
        dtype=bool,
    )


def clustering_scores(labels: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """External scores of a partition, unassigned images (-1) left out and counted.

    Args:
        labels: (N,) int labels, -1 = unassigned.
        truth: (N,) true classes; None/empty = unknown (left out).

    Returns:
        ``ami``, ``nmi``, ``homogeneity``, ``purity`` (aurora.grid.scoring),
        ``unassigned`` (share of all N), ``groups``.
    """
    from aurora.grid.scoring import external_scores

    labels = np.asarray(labels)
    assigned = labels >= 0
    keep = assigned & known_mask(truth)
    ext = external_scores(labels[keep], truth[keep])
    return {
        "ami": ext["ami"],
        "nmi": ext["nmi"],
        "homogeneity": ext["homogeneity"],
        "purity": ext["purity"],
        "unassigned": float((~assigned).mean()) if len(labels) else float("nan"),
        "groups": int(len(np.unique(labels[assigned]))),
    }


def hour_split(times: Sequence[datetime | None]) -> tuple[np.ndarray, np.ndarray]:
    """Train on even UTC hours, test on odd ones (frames without a time are in neither).

    Times are taken as UTC when they carry no zone (as all-sky file names and truth tables do).

    Returns:
        (train, test): (N,) bool masks, disjoint.
    """
    hours = np.array(
        [-1 if t is None else (t if t.tzinfo is None else t.astimezone(UTC)).hour for t in times]
    )
    timed = hours >= 0
    return timed & (hours % 2 == 0), timed & (hours % 2 == 1)


def majority_accuracy(truth: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    """Test accuracy of always answering the most common class of the training side."""
    known = known_mask(truth)
    y = np.array([str(t) for t in truth], dtype=object)
    tr, te = train & known, test & known
    if not tr.any() or not te.any():
        return float("nan")
    return float(np.mean(y[te] == Counter(y[tr]).most_common(1)[0][0]))


def pca_kmeans(features: np.ndarray, k: int, seed: int, dim: int = PCA_DIM) -> np.ndarray:
    """K-means (k clusters, 10 inits) on the first ``dim`` principal components; (N,) labels."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    x = np.asarray(features, dtype=np.float64)
    dim = max(1, min(dim, x.shape[0] - 1, x.shape[1]))
    z = PCA(n_components=dim, random_state=seed).fit_transform(x)
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(z)


def supervised_reference(
    features: np.ndarray, truth: np.ndarray, train: np.ndarray, test: np.ndarray
) -> dict[str, float]:
    """Test accuracy of 10-NN and of a linear probe trained on ``train``, scored on ``test``.

    Args:
        features: (N, D) features.
        truth: (N,) classes (unknown entries are left out of both sides).
        train, test: (N,) bool masks.

    Returns:
        ``knn``, ``probe`` (accuracy), ``knn_balanced``, ``probe_balanced`` (balanced
        accuracy), ``knn_ami`` (AMI of the 10-NN's test predictions with the truth).

    Raises:
        BenchError: a side is empty, or the training side holds a single class.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, adjusted_mutual_info_score, balanced_accuracy_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    known = known_mask(truth)
    tr, te = train & known, test & known
    y = np.array([str(t) for t in truth], dtype=object)
    if not te.any() or not tr.any():
        raise BenchError(
            f"the time split leaves {int(tr.sum())} labelled training frames (even hours) and "
            f"{int(te.sum())} test frames (odd hours): both must be non-empty"
        )
    if len(set(y[tr])) < 2:
        raise BenchError(f"the training frames (even hours) hold a single class {set(y[tr])}")
    x = np.asarray(features, dtype=np.float64)
    knn = KNeighborsClassifier(n_neighbors=min(KNN_K, int(tr.sum()))).fit(x[tr], y[tr])
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x[tr], y[tr])
    pk, pp = knn.predict(x[te]), probe.predict(x[te])
    return {
        "knn": float(accuracy_score(y[te], pk)),
        "probe": float(accuracy_score(y[te], pp)),
        "knn_balanced": float(balanced_accuracy_score(y[te], pk)),
        "probe_balanced": float(balanced_accuracy_score(y[te], pp)),
        "knn_ami": float(adjusted_mutual_info_score(y[te], pk)),
    }


def feature_rows(
    name: str,
    features: np.ndarray,
    truth: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    seed: int,
) -> Row:
    """The row of one feature set: K-means k = n classes on PCA-20 plus the supervised reference."""
    known = known_mask(truth)
    k = len({str(t) for t in truth[known]})
    labels = np.full(len(truth), -1, dtype=np.int64)
    labels[known] = pca_kmeans(np.asarray(features)[known], k, seed)
    scores = clustering_scores(labels[known], truth[known])
    sup = supervised_reference(features, truth, train, test)
    return Row(f"{name} -> PCA-{PCA_DIM} -> K-means k={k}", **scores, **sup)


def grey_pixels(images: Any, side: int = PIXEL_SIDE, chunk: int = 256) -> np.ndarray:
    """(N, side*side) float32 grey pixels in [0, 1] of (N, H, W[, 3]) images (any indexable).

    Args:
        images: uint8/uint16 images, RGB or grey; read ``chunk`` at a time (memory maps).
    """
    import cv2

    from aurora.preprocess import to_uint8

    out = np.empty((len(images), side * side), dtype=np.float32)
    for start in range(0, len(images), chunk):
        block = images[start : start + chunk]
        for j, img in enumerate(block):
            rgb = to_uint8(np.asarray(img))
            grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            small = cv2.resize(grey, (side, side), interpolation=cv2.INTER_AREA)
            out[start + j] = small.reshape(-1).astype(np.float32) / 255.0
    return out


def raw_images(manifest: Any, ids: Sequence[str], jobs: int | None) -> list[np.ndarray]:
    """The decoded frames of ``ids`` (no preprocessing), in order."""
    from aurora.data.sources import Rejection, load_images

    by_id = {r.id: r for r in manifest.records}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise BenchError(f"{len(missing)} images are not in the scanned folder, e.g. {missing[0]}")
    out = []
    for rec, pix in load_images([by_id[i] for i in ids], jobs=jobs):
        if isinstance(pix, Rejection):
            raise BenchError(f"{rec.path} cannot be decoded again: {pix.reason}")
        out.append(pix)
    return out


def ranked_by_extractor(
    ranking: Sequence[Mapping[str, Any]], cell_ami: Mapping[str, float]
) -> list[dict[str, Any]]:
    """Per extractor: best cell by AMI and its rank; the AMI of its best-ranked cell.

    Args:
        ranking: ranking.csv rows (``rank``, ``cell``, ``extractor``), best first.
        cell_ami: cell name -> AMI with the truth.
    """
    out = []
    for ext in dict.fromkeys(str(r["extractor"]) for r in ranking):
        rows = [r for r in ranking if str(r["extractor"]) == ext]
        best = max(rows, key=lambda r: cell_ami[str(r["cell"])])
        top = min(rows, key=lambda r: int(r["rank"]))
        out.append(
            {
                "extractor": ext,
                "cells": len(rows),
                "best_cell": str(best["cell"]),
                "best_ami": cell_ami[str(best["cell"])],
                "best_rank": int(best["rank"]),
                "top_cell": str(top["cell"]),
                "top_rank": int(top["rank"]),
                "top_ami": cell_ami[str(top["cell"])],
            }
        )
    return out


# --- the table ----------------------------------------------------------------------------


def _f(v: Any, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    if pct:
        return f"{100 * v:.1f}%"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def format_table(rows: Sequence[Row], majority: float | None = None) -> str:
    """The main table as text: one line per row, blank cells where a figure does not apply."""
    head = [
        "",
        "AMI",
        "NMI",
        "homog",
        "purity",
        "unassig",
        "groups",
        "10-NN",
        "linear",
        "10-NN AMI",
    ]
    body = [
        [
            r.name,
            _f(r.ami),
            _f(r.nmi),
            _f(r.homogeneity),
            _f(r.purity),
            _f(r.unassigned, pct=True),
            _f(r.groups),
            _f(r.knn) + (f" ({_f(r.knn_balanced)})" if not np.isnan(r.knn_balanced) else ""),
            _f(r.probe) + (f" ({_f(r.probe_balanced)})" if not np.isnan(r.probe_balanced) else ""),
            _f(r.knn_ami),
        ]
        for r in rows
    ]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(x, widths, strict=True))
        )
        for x in [head, *body]
    ]
    lines.insert(1, "-" * len(lines[0]))
    note = (
        "10-NN / linear: test accuracy on odd UTC hours (balanced accuracy), trained on even; "
        "10-NN AMI: AMI of those 10-NN predictions with the truth (a supervised reference)"
    )
    if majority is not None:
        note += f"; majority class {majority:.3f}"
    return "\n".join([*lines, note])


def format_extractors(per: Sequence[Mapping[str, Any]], n_cells: int) -> str:
    """Per extractor: best cell by AMI, its rank, and the ranking's first cell of it."""
    lines = [f"per extractor (ranks among {n_cells} cells, 1 = chosen by the internal ranking):"]
    for p in per:
        lines.append(
            f"  {p['extractor']}: best cell {p['best_cell']} AMI {p['best_ami']:.3f} "
            f"(rank {p['best_rank']}); best-ranked cell {p['top_cell']} (rank {p['top_rank']}) "
            f"AMI {p['top_ami']:.3f}"
        )
    return "\n".join(lines)


# --- the run ------------------------------------------------------------------------------


def compose_config(data_dir: str, truth: str, overrides: Sequence[str]) -> Any:
    """The ``cluster`` config for ``DIR``/``TRUTH`` with the user's overrides (last wins)."""
    from hydra import compose, initialize_config_dir

    base = ["data=folder", f"data.root={data_dir}", f"data.truth={truth}"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("cluster", overrides=[*base, *overrides])


def _read_labels_csv(path: Path) -> tuple[list[str], np.ndarray]:
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["path"] for r in rows], np.array([int(r["label"]) for r in rows], dtype=np.int64)


def frame_times(truth: str | Path, ctx: Any) -> list[datetime | None]:
    """Per image: the truth table's ``time`` column where it has one, else the frame's time."""
    from aurora.data.metadata import read_time_column

    table = read_time_column(Path(str(truth)), ctx.ids, missing_ok=True)
    return [t if t is not None else f for t, f in zip(table, ctx.timestamps, strict=True)]


def bench(
    data_dir: str,
    truth_csv: str,
    overrides: Sequence[str],
    out: Path,
    pixels: str = "raw",
    seed: int = 0,
) -> dict[str, Any]:
    """Run the chain on a labelled folder and print the table; returns the figures.

    Raises:
        BenchError: no truth for any image, no times, or a one-sided time split.
    """
    from aurora.grid.cell_files import collect_cells
    from aurora.run import RunSettings, load_context, run_cluster

    cfg = compose_config(data_dir, truth_csv, overrides)
    t0 = time.perf_counter()
    summary = run_cluster(cfg, out)
    run_s = time.perf_counter() - t0

    import csv

    with open(out / "ranking.csv", newline="") as f:
        ranking = list(csv.DictReader(f))
    names = list(dict.fromkeys(str(r["extractor"]) for r in ranking))
    settings = RunSettings.from_cfg(cfg)
    ctx = load_context(settings, out, names)  # cache hits: nothing is recomputed
    truth = ctx.truth.classes
    if truth is None or not known_mask(truth).any():
        raise BenchError(f"no image of {data_dir} has a class in {truth_csv}")
    known = known_mask(truth)
    times = frame_times(truth_csv, ctx)
    train, test = hour_split(times)

    ids, fused = _read_labels_csv(out / "labels.csv")
    if ids != list(ctx.ids):
        raise BenchError("labels.csv and the reloaded features list different images")
    cells = {str(c["cell"]): c for c in collect_cells(out / "cells")}
    cell_ami = {
        name: clustering_scores(np.load(c["labels_path"]), truth)["ami"]
        for name, c in cells.items()
    }
    chosen = str(ranking[0]["cell"])
    fusion = summary.get("fusion", {})
    rows = [
        Row(
            f"chosen cell {chosen}",
            **clustering_scores(np.load(cells[chosen]["labels_path"]), truth),
        ),
        Row(
            f"fused groups ({fusion.get('group')}, P={fusion.get('n_partitions')}, "
            f"t={fusion.get('threshold')}, min {fusion.get('min_cluster_size')})",
            **clustering_scores(fused, truth),
        ),
    ]
    # Same figures as the run's own summary (a check that both score the same images).
    for key, row in (("best_cell_external", rows[0]), ("fused_external", rows[1])):
        theirs = summary.get(key, {}).get("ami")
        if theirs is not None and abs(theirs - row.ami) > 1e-9:
            print(f"note: {key} AMI in summary.json is {theirs:.4f}, here {row.ami:.4f}")

    first = next(iter(ctx.features.values()))
    if pixels == "raw":
        pix = grey_pixels(raw_images(ctx.stores.manifest, ctx.ids, settings.jobs))
        pix_name = f"pixels {PIXEL_SIDE}x{PIXEL_SIDE} grey (decoded frames)"
    else:
        pix = grey_pixels(first.images)
        pix_name = (
            f"pixels {PIXEL_SIDE}x{PIXEL_SIDE} grey "
            f"({first.store.config.size} px store of {first.name})"
        )
    rows.append(feature_rows(pix_name, pix, truth, train, test, seed))
    for name, f in ctx.features.items():
        rows.append(feature_rows(name, np.asarray(f.features), truth, train, test, seed))
    majority = majority_accuracy(truth, train, test)
    per = ranked_by_extractor(ranking, cell_ami)

    counts = Counter(str(t) for t in truth[known])
    header = (
        f"bench_real: {data_dir}: {len(ctx.ids)} images, {int(known.sum())} labelled, "
        f"{len(counts)} classes ({', '.join(f'{k} {v}' for k, v in counts.most_common())}); "
        f"time split: {int((train & known).sum())} train (even UTC hours), "
        f"{int((test & known).sum())} test (odd); chain {run_s:.0f} s"
    )
    text = "\n".join(["", header, format_table(rows, majority), format_extractors(per, len(cells))])
    print(text, flush=True)
    figures = {
        "data_root": data_dir,
        "truth": truth_csv,
        "overrides": list(overrides),
        "n_images": len(ctx.ids),
        "n_labelled": int(known.sum()),
        "classes": dict(counts),
        "n_train": int((train & known).sum()),
        "n_test": int((test & known).sum()),
        "majority_test_accuracy": majority,
        "chain_seconds": round(run_s, 1),
        "rows": [asdict(r) for r in rows],
        "per_extractor": per,
        "cell_ami": cell_ami,
    }
    (out / "bench_real.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; returns the exit code (known errors: one line, code 2)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data_dir", help="labelled image folder")
    ap.add_argument("truth", help="truth CSV: path (relative to DIR), morphology, [time]")
    ap.add_argument("--out", type=Path, default=None, help="run folder (default outputs/...)")
    ap.add_argument("--pixels", choices=("raw", "store"), default="raw")
    ap.add_argument("--seed", type=int, default=0, help="seed of the reference K-means/PCA")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of the cluster config")
    args = ap.parse_intermixed_args(argv)
    out = args.out or ROOT / "outputs" / "bench_real" / time.strftime("%Y-%m-%d_%H-%M-%S")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from aurora.infra.guard import run_guarded

    return run_guarded(
        bench, args.data_dir, args.truth, args.overrides, Path(out), args.pixels, args.seed
    )


if __name__ == "__main__":
    sys.exit(main())
