"""Every command of the README, run as written (plus ``debug=tiny``) on real camera folders.

The real sample folders are in ``../shared/data``; these tests skip when it is absent. Each run
checks the contract files and that the data folder is byte-for-byte what it was before.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

SHARED = ROOT.parent / "shared" / "data"
NIPR = SHARED / "nipr_lyr_allsky_2014"
KHO = SHARED / "kho_sony_samples"
THEMIS = SHARED / "themis_asi_samples"

pytestmark = pytest.mark.skipif(not NIPR.is_dir(), reason="../shared/data is absent")

# Tiny networks, images and grid (conf/debug/tiny.yaml, a documented option); everything else
# as the README writes it.
TINY = ["debug=tiny"]


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder`` (links included by name)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command of the README from ``cwd``; return its output (fails the test on rc != 0)."""
    full_env = {**os.environ, "AURORA_CACHE_DIR": str(cwd / "cache"), **(env or {})}
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=full_env
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def accounting(run_dir: Path) -> tuple[int, int]:
    """(labelled, rejected) rows of a run folder."""
    return len(read_csv(run_dir / "labels.csv")), len(read_csv(run_dir / "rejected.csv"))


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of the runs that may share one cache (the same tiny encoder is trained once
    for all of them); a test that checks what a run put in its cache keeps its own."""
    return {"AURORA_CACHE_DIR": str(tmp_path_factory.mktemp("readme_cache"))}


@pytest.fixture(scope="module")
def nipr_run(tmp_path_factory: pytest.TempPathFactory, shared_cache: dict[str, str]) -> Path:
    """README: ``python cluster.py data=folder data.root=/path/to/season`` on 16 NIPR frames."""
    tmp = tmp_path_factory.mktemp("nipr")
    before = snapshot(NIPR)
    out = run(
        [
            str(ROOT / "cluster.py"),
            "data=folder",
            f"data.root={NIPR}",
            *TINY,
            f"hydra.run.dir={tmp / 'run'}",
        ],
        tmp,
        shared_cache,
    )
    assert snapshot(NIPR) == before, "the run wrote inside the data folder"
    assert "aurora summary" in out
    return tmp / "run"


def test_cluster_on_a_small_real_folder(nipr_run: Path) -> None:
    labelled, rejected = accounting(nipr_run)
    assert labelled + rejected == 16 and labelled >= 2
    summary = json.loads((nipr_run / "summary.json").read_text())
    # Defaults (k = 30, 100; minimum group 20) on 16 frames: lowered to what the data allows.
    assert summary["n_groups"] > 0 or "unassigned" in summary["notice"]
    assert (nipr_run / "report" / "index.html").is_file()
    assert (nipr_run / "solution").is_dir()


def test_apply_a_solution_to_another_camera(tmp_path: Path, shared_cache: dict[str, str]) -> None:
    """README: ``python cluster.py mode=apply solution=RUN/solution data=folder data.root=NEW``."""
    run(
        [
            str(ROOT / "cluster.py"),
            "data=folder",
            f"data.root={NIPR}",
            *TINY,
            "grid.n_clusters=[3]",
            "fusion.min_cluster_size=2",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        tmp_path,
        shared_cache,
    )
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["n_groups"] > 0
    before = snapshot(KHO)
    out_dir = tmp_path / "applied"
    run(
        [
            str(ROOT / "cluster.py"),
            "mode=apply",
            f"solution={tmp_path / 'run' / 'solution'}",
            "data=folder",
            f"data.root={KHO}",
            "jobs=1",
            f"hydra.run.dir={out_dir}",
        ],
        tmp_path,
    )
    assert snapshot(KHO) == before
    labelled, rejected = accounting(out_dir)
    assert labelled + rejected == 3

    # README "Sharing a solution": an old-format solution is refused in one line, and
    # ``python -m aurora.solution export RUN`` rewrites it from the run's own command line.
    manifest_path = tmp_path / "run" / "solution" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "format_version": 1}))
    apply_args = [
        str(ROOT / "cluster.py"),
        "mode=apply",
        f"solution={tmp_path / 'run' / 'solution'}",
        "data=folder",
        f"data.root={KHO}",
        "jobs=1",
        f"hydra.run.dir={tmp_path / 'applied2'}",
    ]
    env = {**os.environ, "AURORA_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, *apply_args], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr
    assert "error: solution" in proc.stdout and "python -m aurora.solution export" in proc.stdout
    run(["-m", "aurora.solution", "export", str(tmp_path / "run")], tmp_path)
    assert json.loads(manifest_path.read_text())["format_version"] == 2
    run(apply_args, tmp_path)
    assert read_csv(tmp_path / "applied2" / "labels.csv") == read_csv(out_dir / "labels.csv")


def test_multirun_sweep_on_a_real_folder(tmp_path: Path, shared_cache: dict[str, str]) -> None:
    """README: ``python cluster.py -m data=folder data.root=... extractor=... reducer=...``."""
    sweep = tmp_path / "multirun"
    before = snapshot(NIPR)
    run(
        [
            str(ROOT / "cluster.py"),
            "-m",
            "data=folder",
            f"data.root={NIPR}",
            "extractor=autoencoder",
            "reducer=pca,none",
            "clusterer=kmeans",
            "clusterer.n_clusters=3,4",
            *TINY,
            "fusion.min_cluster_size=2",
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path,
        shared_cache,
    )
    assert snapshot(NIPR) == before
    assert len(read_csv(sweep / "ranking.csv")) == 4
    labelled, rejected = accounting(sweep)
    assert labelled + rejected == 16


def test_train_simclr_on_a_real_folder(tmp_path: Path) -> None:
    """README: ``python train.py model=simclr data=folder data.root=... trainer=gpu`` (CPU here).

    16 frames: 5 % validation would be one image, whose batch of one logs no loss.
    """
    before = snapshot(NIPR)
    out = run(
        [
            str(ROOT / "train.py"),
            "model=simclr",
            "data=folder",
            f"data.root={NIPR}",
            "trainer=cpu",
            "debug=tiny_train",
            f"out_dir={tmp_path / 'run'}",
        ],
        tmp_path,
    )
    assert snapshot(NIPR) == before
    assert list((tmp_path / "run").rglob("*.ckpt")), out[-2000:]


@pytest.mark.parametrize(
    ("experiment", "folder", "n_inputs"),
    [("thesis", THEMIS, 25), ("demo", KHO, 3)],  # THEMIS: 2 PGM + a CDF of 23 frames
)
def test_experiments_compose_with_a_real_folder(
    experiment: str, folder: Path, n_inputs: int, tmp_path: Path
) -> None:
    """README: ``python cluster.py experiment=thesis data=folder data.root=...``.

    An experiment sets the synthetic sky's size; with data=folder it must generate nothing.
    """
    before = snapshot(folder)
    run(
        [
            str(ROOT / "cluster.py"),
            f"experiment={experiment}",
            "data=folder",
            f"data.root={folder}",
            *TINY,
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        tmp_path,
    )
    assert snapshot(folder) == before, "the run wrote inside the data folder"
    assert not (tmp_path / "data").exists(), "a synthetic sky was generated"
    labelled, rejected = accounting(tmp_path / "run")
    assert labelled + rejected == n_inputs


WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenetv2_100.tf_quant_in1k_dequant.safetensors"


@pytest.mark.skipif(not WEIGHTS.is_file(), reason="../shared/weights is absent")
def test_first_real_run_with_converted_imagenet_weights(tmp_path: Path) -> None:
    """README: ``python cluster.py experiment=real data=folder data.root=...`` with the
    TensorFlow-trained MobileNet-v2 weights given as a file through ``mobilenet_v2_tf``."""
    before = snapshot(NIPR)
    out = run(
        [
            str(ROOT / "cluster.py"),
            "experiment=real",
            "data=folder",
            f"data.root={NIPR}",
            "extractor@extractors.mobilenet_v2=mobilenet_v2_tf",
            f"extractors.mobilenet_v2.weights={WEIGHTS}",
            "extractors.mobilenet_v2.input_size=64",
            "extract.num_workers=0",
            "grid.stability_splits=2",
            "logger=none",
            "jobs=1",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        tmp_path,
    )
    assert snapshot(NIPR) == before
    assert "RANDOM" not in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["best_cell"].startswith("mobilenet_v2/")
    labelled, rejected = accounting(tmp_path / "run")
    assert labelled + rejected == 16


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("grid.n_clusters=[0]", "grid.n_clusters"),
        ("grid.n_clusters=[two]", "grid.n_clusters"),
        ("fusion.threshold=2", "fusion.threshold"),
        ("train.loader.batch_size=1", "train.loader.batch_size"),
    ],
)
def test_impossible_settings_stop_before_any_work(override: str, key: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "cluster.py"),
            "data=folder",
            f"data.root={NIPR}",
            *TINY,
            override,
            f"paths.cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("error:") and key in last, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "cache").exists(), "work started before the settings were checked"


def test_missing_weights_stop_names_the_key(tmp_path: Path) -> None:
    """README: without ImageNet weights the run stops before any work (the default)."""
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "cluster.py"),
            "data=folder",
            f"data.root={NIPR}",
            *TINY,
            "grid.extractors=[autoencoder,resnet50]",
            f"paths.cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "extractors.resnet50.weights" in proc.stdout
    assert not (tmp_path / "cache" / "train").exists(), "training started before the stop"


def test_synth_and_preprocess_show_commands(tmp_path: Path) -> None:
    """README: ``python -m aurora.data.synth OUT --n ...`` and ``python -m aurora.preprocess
    show IMAGES... --out grid.png`` on one frame of each real camera."""
    run(["-m", "aurora.data.synth", str(tmp_path / "sky"), "--n", "3", "--size", "64"], tmp_path)
    assert len(list((tmp_path / "sky").glob("*.jpg"))) == 3
    frames = [
        next(NIPR.glob("*.jpg")),
        next(KHO.glob("*.jpg")),
        next(THEMIS.glob("*.pgm")),
        next(THEMIS.glob("*.cdf")),
        next((SHARED / "themis_stream0_gill").glob("*.pgm.gz")),  # 20 frames: the first is drawn
    ]
    before = {f: f.read_bytes() for f in frames}
    out = run(
        ["-m", "aurora.preprocess", "show", *map(str, frames), "--out", str(tmp_path / "g.png")],
        tmp_path,
    )
    assert "not drawn" not in out
    assert (tmp_path / "g.png").stat().st_size > 1000
    assert all(f.read_bytes() == b for f, b in before.items())
