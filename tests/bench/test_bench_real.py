"""bench/bench_real.py: the table's figures on known answers, and one tiny run end to end."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from conftest import ROOT
from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_real", ROOT / "bench" / "bench_real.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_real"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


br = _load_bench()


def test_time_split_is_even_against_odd_hours() -> None:
    start = datetime(2003, 12, 21, 3, 0, 1)
    times = [start + timedelta(seconds=600 * i) for i in range(70)]  # 03:00 .. 14:30
    times += [None, datetime(2003, 12, 21, 5, 59, 59, tzinfo=timezone(timedelta(hours=8)))]
    train, test = br.hour_split(times)
    hours = [t.hour for t in times[:70]]
    assert not (train & test).any()
    assert all(hours[i] % 2 == 0 for i in np.flatnonzero(train[:70]))
    assert all(hours[i] % 2 == 1 for i in np.flatnonzero(test[:70]))
    assert (train | test)[:70].all() and train.sum() + test.sum() == 71
    assert not train[70] and not test[70]  # no time: in neither side
    assert test[71]  # 05:59 at UTC+8 is 21:59 UTC: odd
    assert br.hour_split([datetime(2024, 1, 1, 4, tzinfo=UTC)])[0].all()


def test_frame_times_prefer_the_truth_table_and_refuse_a_bad_time(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from aurora.data.metadata import MetadataError

    truth = tmp_path / "truth.csv"
    truth.write_text("path,morphology,time\na.bmp,arc,2003-12-21T03:00:01\nb.bmp,arc,\n")
    named = datetime(2003, 12, 21, 9, tzinfo=UTC)
    ctx = SimpleNamespace(ids=["a.bmp", "b.bmp", "c.bmp"], timestamps=[named, named, None])
    # a: the table wins over the name; b: empty cell, the name's time; c: nobody knows.
    assert br.frame_times(truth, ctx) == [datetime(2003, 12, 21, 3, 0, 1, tzinfo=UTC), named, None]
    truth.write_text("path,morphology,time\na.bmp,arc,noon\n")
    with pytest.raises(MetadataError, match="noon"):
        br.frame_times(truth, ctx)


def test_supervised_reference_knows_what_the_features_encode() -> None:
    rng = np.random.default_rng(0)
    n = 120
    truth = np.array(["arc", "corona", "hot-spot"] * (n // 3), dtype=object)
    hours = np.repeat(np.arange(12), n // 12)
    train, test = hours % 2 == 0, hours % 2 == 1
    onehot = (truth[:, None] == np.array(["arc", "corona", "hot-spot"])).astype(float)
    perfect = np.hstack([5 * onehot, 0.1 * rng.normal(size=(n, 7))])
    ref = br.supervised_reference(perfect, truth, train, test)
    assert ref == {
        "knn": 1.0,
        "probe": 1.0,
        "knn_balanced": 1.0,
        "probe_balanced": 1.0,
        "knn_ami": 1.0,
    }
    noise = rng.normal(size=(n, 10))
    chance = br.supervised_reference(noise, truth, train, test)
    assert chance["knn"] < 0.6 and chance["probe"] < 0.6 and chance["knn_ami"] < 0.1
    # K-means on PCA of the perfect features finds the classes exactly.
    row = br.feature_rows("perfect", perfect, truth, train, test, seed=0)
    assert row.ami == pytest.approx(1.0) and row.purity == 1.0 and row.groups == 3
    assert row.knn == 1.0 and row.probe == 1.0
    # Unknown truth is left out of both sides; a one-sided split is a clear error.
    truth_gaps = truth.copy()
    truth_gaps[::5] = None
    assert br.supervised_reference(perfect, truth_gaps, train, test)["knn"] == 1.0
    with pytest.raises(br.BenchError, match="0 test frames"):
        br.supervised_reference(perfect, truth, train, np.zeros(n, bool))
    with pytest.raises(br.BenchError, match="single class"):
        br.supervised_reference(perfect, np.array(["arc"] * n, dtype=object), train, test)
    assert br.majority_accuracy(truth, train, test) == pytest.approx(1 / 3)


def test_clustering_scores_leave_out_unassigned_and_unknown() -> None:
    rng = np.random.default_rng(1)
    truth = rng.choice(np.array(["a", "b", "c"], dtype=object), 200)
    labels = rng.integers(-1, 5, 200)
    truth[:10] = None
    s = br.clustering_scores(labels, truth)
    keep = (labels >= 0) & np.array([t is not None for t in truth])
    t, lab = truth[keep].astype(str), labels[keep]
    assert s["ami"] == pytest.approx(adjusted_mutual_info_score(t, lab))
    assert s["nmi"] == pytest.approx(normalized_mutual_info_score(t, lab))
    by_hand = sum(max((t[lab == g] == c).sum() for c in "abc") for g in set(lab)) / keep.sum()
    assert s["purity"] == pytest.approx(by_hand)
    assert s["unassigned"] == pytest.approx((labels < 0).mean()) and s["groups"] == 5
    text = br.format_table([br.Row("cell", **s), br.Row("feat", knn=1.0, probe=0.5)], 0.25)
    assert "cell" in text and "1.000" in text and "majority class 0.250" in text


def test_tiny_synthetic_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from aurora.data.synth import generate

    sky = tmp_path / "sky"
    generate(sky, n=30, size=64, seed=0, jobs=1)
    with open(sky / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    truth_csv = tmp_path / "truth.csv"  # the user's table, outside the data folder
    with open(truth_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "morphology", "time"])
        for i, r in enumerate(rows):
            w.writerow([r["path"], r["morphology"], f"2024-01-01T{i % 5:02d}:30:00"])
    out = tmp_path / "run"
    before = sorted(p.name for p in sky.iterdir())
    code = br.main(
        [
            str(sky),
            str(truth_csv),
            "--out",
            str(out),
            "grid.extractors=[mobilenet_v2]",
            "extractors.mobilenet_v2.pretrained=false",
            "extractors.mobilenet_v2.input_size=32",
            "extractors.mobilenet_v2.model_kwargs={pad_type:same}",
            "grid.reducers=[pca]",
            "grid.clusterers=[kmeans]",
            "grid.n_clusters=[3,5]",
            "grid.stability_splits=2",
            "fusion.min_cluster_size=2",
            f"paths.cache_dir={tmp_path / 'cache'}",
            "logger=none",
            "jobs=1",
            "extract.num_workers=0",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    fig = json.loads((out / "bench_real.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    names = [r["name"] for r in fig["rows"]]
    assert names[0] == f"chosen cell {summary['best_cell']}" and names[1].startswith("fused")
    assert names[2].startswith("pixels 32x32") and names[3].startswith("mobilenet_v2 -> PCA-20")
    chosen, fused, pixels, mnv2 = fig["rows"]
    # The same figures as the run's own summary, and as the ranking's first cell.
    assert chosen["ami"] == pytest.approx(summary["best_cell_external"]["ami"])
    assert fused["ami"] == pytest.approx(summary["fused_external"]["ami"])
    assert fused["unassigned"] == pytest.approx(summary["fused_unassigned_fraction"])
    assert fused["groups"] == summary["n_groups"]
    assert chosen["ami"] == pytest.approx(fig["cell_ami"][summary["best_cell"]])
    # Even hours 00, 02, 04 train; odd 01, 03 test (frame i at hour i % 5).
    n = fig["n_labelled"]
    assert fig["n_train"] + fig["n_test"] == n and 0 < fig["n_test"] < fig["n_train"]
    for row in (pixels, mnv2):
        assert 0.0 <= row["knn"] <= 1.0 and 0.0 <= row["probe"] <= 1.0
        assert row["groups"] == len(fig["classes"])
    (per,) = fig["per_extractor"]
    assert per["best_ami"] == pytest.approx(max(fig["cell_ami"].values()))
    assert per["top_rank"] == 1 and per["best_ami"] >= per["top_ami"]
    assert (
        "10-NN" in printed and "per extractor" in printed and "mobilenet_v2: best cell" in printed
    )
    assert sorted(p.name for p in sky.iterdir()) == before  # nothing written into the data
