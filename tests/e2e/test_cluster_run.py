"""End-to-end tests of the main job on a tiny synthetic sky (tiny images, tiny networks)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, TINY_GRID, compose_cfg
from hydra.types import RunMode

from aurora.infra.errors import RunError
from aurora.run import (
    finalize_sweep,
    run_cluster,
    run_sweep_cell,
)
from aurora.run.cli import main


@pytest.fixture(scope="module")
def sky(tiny_sky: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's 24 synthetic images plus deliberately broken files (a copy of its images:
    the session's cache serves it)."""
    root = tmp_path_factory.mktemp("sky")
    shutil.copytree(tiny_sky, root, dirs_exist_ok=True)
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.jpg").write_text("not an image")
    good = next(root.glob("LYR-*.jpg")).read_bytes()
    (root / "cut.jpg").write_bytes(good[: len(good) // 2])
    (root / "zz_copy.jpg").write_bytes(good)  # same content as an image: clustered once
    return root


def _overrides(sky: Path, cache: Path) -> list[str]:
    return [
        "data=folder",
        f"data.root={sky}",
        f"data.truth={sky / 'labels.csv'}",
        f"paths.cache_dir={cache}",
        *TINY_GRID,
    ]


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_run_writes_the_contract_files_and_accounts_for_every_input(
    sky: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    cfg = compose_cfg("cluster", _overrides(sky, tiny_cache))
    run_dir = tmp_path / "run"
    summary = run_cluster(cfg, run_dir)

    labels = _read(run_dir / "labels.csv")
    rejected = _read(run_dir / "rejected.csv")
    inputs = {p.name for p in sky.iterdir() if p.suffix == ".jpg"}
    got = [r["path"] for r in labels] + [r["path"] for r in rejected]
    assert sorted(got) == sorted(inputs)  # each input exactly once
    reasons = {r["path"]: r["reason"] for r in rejected}
    assert reasons["empty.jpg"] == "empty file"
    assert reasons["notes.jpg"] == "unsupported format"
    assert reasons["cut.jpg"] == "truncated"
    n = summary["n_accepted"] + summary["n_duplicates"] + summary["n_rejected"]
    assert summary["n_inputs"] == len(inputs) == n and summary["n_duplicates"] == 1
    by_path = {r["path"]: r["label"] for r in labels}
    original = next(sky.glob("LYR-*.jpg")).name
    assert by_path["zz_copy.jpg"] == by_path[original]

    ranking = _read(run_dir / "ranking.csv")
    results = _read(run_dir / "results.csv")
    cells = {(r["reducer"], r["clusterer"], r["n_clusters"]) for r in ranking}
    assert cells == {
        (r, c, str(k)) for r in ("pca", "none") for c in ("kmeans", "agglomerative") for k in (3, 4)
    }
    assert len(ranking) == len(results) == 8  # 2 reducers x 2 clusterers x 2 k
    assert [int(r["rank"]) for r in ranking] == sorted(int(r["rank"]) for r in ranking)
    for row in ranking:  # the grid clusters each content once
        assert len(np.load(run_dir / row["labels_path"])) == summary["n_accepted"]
    fused = np.array([int(r["label"]) for r in labels])
    assert fused.min() >= -1
    assert (run_dir / "report" / "index.html").is_file()
    assert (run_dir / "solution" / "manifest.json").is_file()
    saved = json.loads((run_dir / "summary.json").read_text())
    assert "fused_external" in saved and "best_cell_external" in saved
    assert set(saved["skipped_extractors"]) == set()  # only the autoencoder was asked for


def test_second_run_reuses_the_cache(sky: Path, tmp_path: Path) -> None:
    cfg = compose_cfg("cluster", _overrides(sky, tmp_path / "cache"))  # a cold cache of its own
    run_cluster(cfg, tmp_path / "a")
    ckpts = sorted((tmp_path / "cache" / "train").iterdir())
    feats = sorted((tmp_path / "cache" / "features").iterdir())
    run_cluster(cfg, tmp_path / "b")
    assert sorted((tmp_path / "cache" / "train").iterdir()) == ckpts
    assert sorted((tmp_path / "cache" / "features").iterdir()) == feats
    a = (tmp_path / "a" / "labels.csv").read_text()
    assert a == (tmp_path / "b" / "labels.csv").read_text()


def test_sweep_cells_then_finalize(sky: Path, tiny_cache: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    base = _overrides(sky, tiny_cache)
    for job, k in enumerate((3, 4)):
        cell = ["extractor=autoencoder", "reducer=pca", "clusterer=kmeans"]
        cfg = compose_cfg("cluster", [*base, *cell, f"clusterer.n_clusters={k}"])
        choices = {"extractor": "autoencoder", "reducer": "pca", "clusterer": "kmeans"}
        row = run_sweep_cell(cfg, sweep / str(job), choices)
        assert row["n_clusters"] == k
    summary = finalize_sweep(compose_cfg("cluster", base), sweep)
    assert len(_read(sweep / "ranking.csv")) == 2
    n = summary["n_accepted"] + summary["n_duplicates"] + summary["n_rejected"]
    assert (
        n
        == summary["n_inputs"]
        == len(_read(sweep / "labels.csv")) + len(_read(sweep / "rejected.csv"))
    )


def test_sweep_job_needs_its_cell_groups(sky: Path, tiny_cache: Path, tmp_path: Path) -> None:
    cfg = compose_cfg("cluster", _overrides(sky, tiny_cache))
    with pytest.raises(RunError, match="reducer"):
        run_sweep_cell(cfg, tmp_path / "job", {"extractor": "autoencoder", "clusterer": "kmeans"})


def test_unknown_grid_name_is_a_clear_error(sky: Path, tiny_cache: Path, tmp_path: Path) -> None:
    cfg = compose_cfg("cluster", [*_overrides(sky, tiny_cache), "grid.reducers=[pcaa]"])
    with pytest.raises(RunError, match="pcaa"):
        run_cluster(cfg, tmp_path / "run")


def test_missing_folder_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "nowhere"
    cfg = compose_cfg("cluster", ["data=folder", f"data.root={missing}", *TINY_GRID])
    assert main(cfg, tmp_path / "run", {}, RunMode.RUN) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and str(missing) in out[0] and out[0].startswith("error:")


def test_cli_multirun_ranks_and_fuses_at_the_end(
    sky: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    sweep = tmp_path / "multirun"
    cmd = [
        sys.executable,
        str(ROOT / "cluster.py"),
        "-m",
        *_overrides(sky, tiny_cache),
        "extractor=autoencoder",
        "reducer=pca",
        "clusterer=kmeans,agglomerative",
        "clusterer.n_clusters=3",
        f"hydra.sweep.dir={sweep}",
    ]
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True, timeout=600)
    assert len(_read(sweep / "ranking.csv")) == 2
    assert (sweep / "labels.csv").is_file()
    assert (sweep / "report" / "index.html").is_file()


def test_reference_images_constrain_cop_kmeans(sky: Path, tiny_cache: Path, tmp_path: Path) -> None:
    import shutil

    from aurora.data.synth import read_labels

    refs = tmp_path / "refs"
    rows = read_labels(sky / "labels.csv")
    for cls in ("corona", "single_arc"):
        (refs / cls).mkdir(parents=True)
        for r in [r for r in rows if r["morphology"] == cls][:2]:
            shutil.copy(sky / r["path"], refs / cls / r["path"])
    (refs / "corona" / "broken.jpg").write_bytes(b"")
    over = [
        *_overrides(sky, tiny_cache),
        f"constraints.reference_dir={refs}",
        "grid.clusterers=[cop_kmeans]",
        "grid.n_clusters=[3]",
    ]
    run_dir = tmp_path / "run"
    run_cluster(compose_cfg("cluster", over), run_dir)
    labels = {r["path"]: int(r["label"]) for r in _read(run_dir / "labels.csv")}
    rejected = {r["path"]: r["reason"] for r in _read(run_dir / "rejected.csv")}
    assert rejected["reference/corona/broken.jpg"] == "empty file"
    ref = sorted(p for p in labels if p.startswith("reference/"))
    assert len(ref) == 4
    cell = np.load(next((run_dir / "cells").glob("*cop_kmeans*")) / "labels.npy")
    order = [r["path"] for r in _read(run_dir / "labels.csv")]
    by_class: dict[str, set[int]] = {}
    for p in ref:
        by_class.setdefault(p.split("/")[1], set()).add(int(cell[order.index(p)]))
    assert all(len(v) == 1 for v in by_class.values())  # must-link inside a class
    assert by_class["corona"] != by_class["single_arc"]  # cannot-link across classes


def test_unset_data_root_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = compose_cfg("cluster", ["data=folder", *TINY_GRID])
    assert main(cfg, tmp_path / "run", {}, RunMode.RUN) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["error: data.root is not set (add data.root=... to the command)"]
