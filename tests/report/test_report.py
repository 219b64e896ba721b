"""The HTML report: files, tables, timeline, rebuild from the run folder, TensorBoard, Chromium."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import adjusted_mutual_info_score

from aurora.grid.scoring import nuisance_dependence
from aurora.preprocess import PreprocessConfig
from aurora.report import ReportDataError, confusion_table, rebuild_report, write_report
from aurora.report.data import MONTAGE_SIZE, montage_picks
from aurora.report.record import RunRecord
from aurora.report.tables import moon_ami

N = 60
K = 4
N_CELLS = 30  # more than the 25 rows the table shows


def _ranking(run_dir: Path, rng: np.random.Generator) -> list[dict]:
    rows = []
    for r in range(1, N_CELLS + 1):
        ext = ("simclr", "autoencoder", "resnet50")[r % 3]
        rows.append(
            {
                "rank": r,
                "cell": f"{ext}__pca__kmeans__k{r}",
                "extractor": ext,
                "reducer": "pca",
                "clusterer": "kmeans",
                "n_clusters": r,
                "seed": 0,
                "silhouette": rng.uniform(0, 0.5),
                "calinski_harabasz": rng.uniform(10, 500),
                "davies_bouldin": rng.uniform(0.5, 2),
                "stability_ari": rng.uniform(0, 1),
                "stability_ami": rng.uniform(0, 1),
                "borda": 4 * r,
                "labels_path": f"cells/{r}/labels.npy",
            }
        )
    with open(run_dir / "ranking.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows


def make_record(run_dir: Path, *, timestamps: bool = True, truth: bool = True) -> RunRecord:
    """A fake finished run: K groups of synthetic skies, some unassigned, a ranking, a summary."""
    from aurora.data.sources import scan
    from aurora.data.synth import generate
    from aurora.preprocess import build_preprocessed

    run_dir.mkdir(parents=True, exist_ok=True)
    data = run_dir.parent / "sky"
    if not data.is_dir():
        generate(data, n=N, seed=5, size=64, moon_prob=0.3, jobs=1)
    store = build_preprocessed(
        scan(data), PreprocessConfig(size=48), run_dir.parent / "cache", jobs=1, progress=False
    )
    with open(data / "labels.csv", newline="") as f:
        table = {r["path"]: r for r in csv.DictReader(f)}
    n = len(store)  # a few synthetic skies are rejected as too dark
    morph = np.array([table[i]["morphology"] for i in store.ids], dtype=object)
    classes = sorted(set(morph))
    rng = np.random.default_rng(0)
    true_idx = np.array([classes.index(m) for m in morph])
    labels = (true_idx % K).astype(np.int64)
    labels[rng.random(n) < 0.1] = -1
    embedding = np.eye(len(classes))[true_idx] * 3 + rng.normal(0, 0.4, (n, len(classes)))
    ranking = _ranking(run_dir, rng)
    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(run_dir / "fusion_landscape_all.png")
    summary = {
        "data_root": str(data),
        "n_inputs": n + 2,
        "n_accepted": n,
        "n_rejected": 2,
        "rejected_by_reason": {"too dark": 1, "truncated": 1},
        "n_groups": K,
        "n_unassigned": int((labels < 0).sum()),
        "fusion": {
            "group": "all",
            "n_partitions": 5,
            "threshold": 0.5,
            "min_cluster_size": 3,
            "loss": 1.25,
            "per_group": {
                "all": {
                    "n_partitions": 5,
                    "threshold": 0.5,
                    "min_cluster_size": 3,
                    "n_groups": K,
                    "unassigned": 6,
                    "loss": 1.25,
                },
            },  # fmt: skip
        },
        "best_cell": ranking[0]["cell"],
        "skipped_extractors": {"resnet50": "Pretrained weights for timm model 'resnet50' ..."},
        "random_init_extractors": ["mobilenet_v2"],
        "best_cell_external": {
            "ari": 0.4,
            "ami": 0.5,
            "homogeneity": 0.6,
            "completeness": 0.5,
            "purity": 0.7,
        },  # fmt: skip
        "fused_external": {
            "ari": 0.5,
            "ami": 0.6,
            "homogeneity": 0.7,
            "completeness": 0.6,
            "purity": 0.8,
        },  # fmt: skip
        "fused_ami_moon": 0.02,
        "seconds": 754.2,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    t0 = datetime(2024, 12, 1, 15, 0)
    return RunRecord(
        run_dir=run_dir,
        ids=list(store.ids),
        paths=list(store.paths),
        timestamps=[t0 + timedelta(minutes=3 * i) for i in range(n)] if timestamps else [None] * n,
        labels=labels,
        features=embedding,
        embedding=embedding,
        thumbnails=store.images,
        moon=np.asarray(store.moon),
        truth=morph if truth else None,
        nuisances={"moon": np.array([table[i]["moon"] for i in store.ids])} if truth else {},
        rejected=[],
        ranking=ranking,
        summary=summary,
        solution_cell={"cell": ranking[2]["cell"]},
        extractor_name="simclr",
        extractor_cfg={},
        extractor_identity={},
        preprocess_cfg=PreprocessConfig(size=48),
        reducer_cfg={},
        reducer_entry=run_dir,
        features_key="x",
        seed=0,
        config={},
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunRecord, Path]:
    record = make_record(tmp_path_factory.mktemp("report") / "run")
    return record, write_report(record, record.run_dir / "report")


def _sources(index: Path) -> list[str]:
    return re.findall(r'<img[^>]+src="([^"]+)"', index.read_text())


def _table_rows(index: Path, table_id: str) -> int:
    html = index.read_text()
    body = html[html.index(f'id="{table_id}"') :]
    body = body[: body.index("</table>")]
    return body.count("<tr") - 1  # minus the header


def test_report_files_and_tables(report: tuple[RunRecord, Path]) -> None:
    record, index = report
    assert index == record.run_dir / "report" / "index.html"
    srcs = _sources(index)
    assert srcs and all((index.parent / s).is_file() for s in srcs)
    assert all(not s.startswith(("/", "http")) for s in srcs)  # relative: opens from disk
    n_groups = int(record.labels.max() + 1)
    montages = [s for s in srcs if "montage_" in s]
    assert len(montages) == n_groups + 1  # and one for the unassigned
    assert "figures/montage_unassigned.png" in montages
    assert {"figures/map.png", "figures/timeline.png", "figures/ranking.png"} <= set(srcs)
    assert "figures/fusion_landscape_all.png" in srcs
    assert _table_rows(index, "ranking-table") == 25
    assert _table_rows(index, "confusion") == n_groups + 1
    assert _table_rows(index, "groups-table") == n_groups + 1
    html = index.read_text()
    assert "RANDOM weights" in html and "mobilenet_v2" in html and "resnet50" in html
    assert "12.6 min" in html  # run time
    assert (index.parent / "report_data.npz").is_file()


def test_montage_size_and_spread() -> None:
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(100, 3))
    labels = np.repeat([0, 1, -1], [70, 25, 5])
    g, idx = montage_picks(emb, labels)
    assert [int((g == k).sum()) for k in (0, 1, -1)] == [MONTAGE_SIZE, MONTAGE_SIZE, 5]
    assert all(labels[i] == k for k, i in zip(g, idx, strict=True))
    first = idx[g == 0]
    d = np.linalg.norm(emb[labels == 0] - emb[labels == 0].mean(0), axis=1)
    own = np.flatnonzero(labels == 0)
    assert first[0] == own[np.argmin(d)] and first[-1] == own[np.argmax(d)]


def test_confusion_table_known_case() -> None:
    labels = np.array([0, 0, 1, 1, 1, -1, 2])
    truth = np.array(["arc", "arc", "diffuse", "arc", "", "diffuse", "patchy"])
    t = confusion_table(labels, truth)
    assert t.rows == ["0", "1", "2", "unassigned"]
    assert t.cols == ["arc", "diffuse", "patchy", "(not in table)"]
    expected = [[2, 0, 0, 0], [1, 1, 0, 1], [0, 0, 1, 0], [0, 1, 0, 0]]
    np.testing.assert_array_equal(t.counts, expected)


def test_no_timeline_or_truth_sections_without_them(tmp_path: Path) -> None:
    record = make_record(tmp_path / "run", timestamps=False, truth=False)
    index = write_report(record, record.run_dir / "report")
    html = index.read_text()
    assert not (index.parent / "figures" / "timeline.png").exists()
    assert 'id="timeline"' not in html and 'id="confusion"' not in html
    assert all((index.parent / s).is_file() for s in _sources(index))


def test_reference_images_are_marked(tmp_path: Path) -> None:
    record = make_record(tmp_path / "run")
    plain = write_report(record, record.run_dir / "report").read_text()
    assert 'id="references"' not in plain
    classes: list[str | None] = [None] * len(record.ids)
    classes[-3:] = ["arc", "arc", "corona"]
    record = dataclasses.replace(record, reference_classes=classes)
    index = write_report(record, record.run_dir / "report")
    # one row per group holding a reference image
    assert _table_rows(index, "references") == len({int(g) for g in record.labels[-3:]})
    assert "labelled reference images" in index.read_text()


def test_rebuild_from_run_folder(report: tuple[RunRecord, Path], tmp_path: Path) -> None:
    record, index = report
    run = Path(shutil.copytree(record.run_dir, tmp_path / "run"))
    shutil.rmtree(run / "report" / "figures")
    (run / "report" / "index.html").unlink()
    proc = subprocess.run(
        [sys.executable, "-m", "aurora.report", str(run)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    new = run / "report" / "index.html"
    assert proc.stdout.strip() == str(new)
    assert sorted(_sources(new)) == sorted(_sources(index))
    assert all((new.parent / s).is_file() for s in _sources(new))
    before = np.asarray(Image.open(index.parent / "figures" / "montage_000.png"))
    after = np.asarray(Image.open(new.parent / "figures" / "montage_000.png"))
    np.testing.assert_array_equal(before, after)
    (run / "report" / "report_data.npz").unlink()
    with pytest.raises(ReportDataError, match="report_data.npz"):
        rebuild_report(run)


def test_tensorboard_figures_and_projector(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from aurora.extractors import read_metadata

    record = make_record(tmp_path / "run")
    record = dataclasses.replace(record, tensorboard_dir=tmp_path / "run" / "tb")
    write_report(record, record.run_dir / "report")
    tb = tmp_path / "run" / "tb"
    assert list(tb.glob("events.out.tfevents.*"))
    assert (tb / "projector_config.pbtxt").is_file()
    meta = read_metadata(tb / "fused_groups" / "metadata.tsv")
    assert [int(v) for v in meta["group"]] == record.labels.tolist()


def _chromium() -> str | None:
    """A headless browser if one is installed (tests never install software themselves)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


def test_headless_chromium_screenshot_is_not_blank(
    report: tuple[RunRecord, Path], tmp_path: Path
) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("no headless browser installed (apt-get install chromium)")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--screenshot={shot}", "--window-size=1280,2000", report[1].as_uri()],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert shot.is_file()
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert img.std() > 20  # not a blank page


def test_moon_ami_is_the_scoring_nuisance_dependence() -> None:
    def before(labels: np.ndarray, flag: np.ndarray) -> float:  # the report's own, until issue 20
        m = labels >= 0
        if m.sum() < 2 or len(np.unique(flag[m])) < 2:
            return float("nan")
        return float(adjusted_mutual_info_score(np.asarray(flag[m]).astype(str), labels[m]))

    rng = np.random.default_rng(4)
    for _ in range(20):
        labels = rng.integers(-1, 4, 60)
        moon = ((labels == 1) | (rng.random(60) < 0.3)).astype(str)
        got, old = moon_ami(labels, moon), before(labels, moon)
        assert got == old  # the same float, bit for bit
        m = labels >= 0
        assert got == nuisance_dependence(labels[m], moon[m])
    # Undefined when the flag does not vary (no Moon at all), or nothing is assigned.
    assert np.isnan(moon_ami(labels, np.full(60, "False")))
    assert np.isnan(moon_ami(np.full(60, -1), moon))
    # A truth table's unknown flags ("") are left out, as everywhere in aurora.grid.scoring.
    flag = moon.copy()
    flag[:10] = ""
    m = labels >= 0
    m[:10] = False
    assert moon_ami(labels, flag) == nuisance_dependence(labels[m], flag[m])
