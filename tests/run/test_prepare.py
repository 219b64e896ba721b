"""``cluster.py mode=prepare``: a data set scanned, preprocessed and extracted in shards, then
joined into exactly the cache entries of a one-process run, with every input accounted for."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, compose_cfg

from aurora.data import scan_cache
from aurora.data.scan_cache import list_inputs, scan_cached
from aurora.data.sources import scan
from aurora.infra.cache import Cache
from aurora.infra.errors import RunError, SettingsError
from aurora.run.__main__ import main as finalize_main
from aurora.run.prepare import Shards, finalize_prepare, run_prepare

# Our tiny encoder (store only: it trains in the run) and a random-weight timm network at 32 px
# (features): both kinds of extractor, in seconds.
EXTRACTORS = [
    "debug=tiny",
    "grid.extractors=[autoencoder,mobilenet_v2]",
    "extractors.mobilenet_v2.pretrained=false",
    "extractors.mobilenet_v2.input_size=32",
]


@pytest.fixture(scope="module")
def messy_sky(tiny_sky: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny sky plus a copy of its first and last frames under later names (duplicates
    that land in other blocks than their originals) and an empty file (a scan rejection)."""
    root = tmp_path_factory.mktemp("messy_sky")
    shutil.copytree(tiny_sky, root, dirs_exist_ok=True)
    frames = sorted(p for p in root.iterdir() if p.suffix == ".jpg")
    shutil.copy(frames[0], root / "zz_copy_of_first.jpg")
    shutil.copy(frames[-1], root / "aa_copy_of_last.jpg")
    (root / "m_empty.jpg").write_bytes(b"")
    return root


def _cfg(sky: Path, cache: Path, *extra: str):
    return compose_cfg(
        "cluster",
        [*EXTRACTORS, "data=folder", f"data.root={sky}", f"paths.cache_dir={cache}", *extra],
    )


def _entries(cache: Path) -> dict[str, str]:
    """Every file of the cache's joined entries (relative path -> sha256), provenance aside
    (it records when and how the features were computed)."""
    out = {}
    for stage in ("scan", "preprocess", "features"):
        for p in sorted((cache / stage).rglob("*")):
            if p.is_file() and p.name != "provenance.json":
                out[str(p.relative_to(cache))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_shards_join_into_the_one_process_entries(messy_sky: Path, tmp_path: Path) -> None:
    """Byte for byte, with one image per forward pass on both sides (a network's float
    rounding depends on what else is in its batch: see the two-process test)."""
    one, sharded = tmp_path / "one", tmp_path / "sharded"
    run_prepare(_cfg(messy_sky, one, "extract.batch_size=1"), tmp_path / "job_one")
    docs = []
    for shard in (2, 0, 1):  # any order: the last block done joins them
        cfg = _cfg(
            messy_sky, sharded, "extract.batch_size=1", "prepare.shards=3", f"prepare.shard={shard}"
        )
        docs.append(run_prepare(cfg, tmp_path / f"job{shard}"))
    assert [d["joined"] for d in docs] == [False, False, True]
    assert _entries(sharded) == _entries(one)
    assert len(_entries(one)) == 4 + 4 + 3 + 2  # 2 stores, 1 features entry, 1 scan
    # The blocks' entries are gone once joined; the joined data accounts for every input.
    assert not any((sharded / "scan_parts").iterdir())
    assert len(list((sharded / "preprocess").iterdir())) == 2
    doc = docs[-1]
    n_inputs = len(list(messy_sky.glob("*.jpg")))
    assert doc["n_inputs"] == n_inputs
    for store in doc["stores"].values():
        assert store["accepted"] + store["duplicates"] + store["rejected"] == n_inputs
        assert store["duplicates"] == 2
    rejected = (tmp_path / "job1" / "rejected.csv").read_text()
    assert "m_empty.jpg,empty file" in rejected
    features = np.load(next((sharded / "features").glob("*/features.npy")))
    assert features.shape == (doc["stores"]["mobilenet_v2"]["accepted"], 1280)


def test_a_missing_shard_is_named_then_redone(messy_sky: Path, tmp_path: Path) -> None:
    cache, sweep = tmp_path / "cache", tmp_path / "sweep"
    sweep.mkdir()
    run_prepare(_cfg(messy_sky, cache, "prepare.shards=2", "prepare.shard=0"), tmp_path / "j0")
    cfg = _cfg(messy_sky, cache, "prepare.shards=2")
    with pytest.raises(RunError, match=r"shards 1 of 2 are not prepared.*prepare.shard=1"):
        finalize_prepare(cfg, sweep)
    assert json.loads((sweep / "status.json").read_text())["state"] == "failed"
    run_prepare(_cfg(messy_sky, cache, "prepare.shards=2", "prepare.shard=1"), tmp_path / "j1")
    doc = finalize_prepare(cfg, sweep)  # joined by the last job; the finalisation reads it
    assert doc["n_inputs"] == len(list(messy_sky.glob("*.jpg")))
    assert json.loads((sweep / "status.json").read_text())["state"] == "finished"
    assert (sweep / "rejected.csv").is_file()


def test_rerun_of_a_joined_shard_does_no_work(
    messy_sky: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    for shard in (0, 1):
        run_prepare(_cfg(messy_sky, cache, "prepare.shards=2", f"prepare.shard={shard}"), tmp_path)

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("a joined shard was scanned or preprocessed again")

    monkeypatch.setattr(scan_cache, "inspect_inputs", no_work)
    monkeypatch.setattr("aurora.preprocess.store._results", no_work)
    doc = run_prepare(_cfg(messy_sky, cache, "prepare.shards=2", "prepare.shard=0"), tmp_path)
    assert doc["joined"] and set(doc["block"]["stores"].values()) == {"joined already"}


@pytest.mark.parametrize(
    ("node", "key"),
    [({"shards": 0}, "prepare.shards"), ({"shards": 2, "shard": 2}, "prepare.shard")],
)
def test_bad_shard_settings_name_the_key(node: dict, key: str) -> None:
    with pytest.raises(SettingsError, match=key):
        Shards.from_cfg(node)


def test_scan_is_cached_until_a_file_changes(
    messy_sky: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sky = tmp_path / "sky"
    shutil.copytree(messy_sky, sky)
    cache = tmp_path / "cache"
    first = scan_cached(sky, cache)
    fresh = scan(sky)
    assert (first.records, first.rejected, first.duplicates) == (
        fresh.records,
        fresh.rejected,
        fresh.duplicates,
    )
    read: list[int] = []
    real = scan_cache.inspect_inputs
    monkeypatch.setattr(
        scan_cache, "inspect_inputs", lambda files, *a: read.append(len(files)) or real(files, *a)
    )
    again = scan_cached(sky, cache)
    assert read == [] and again.key == first.key  # stat only: no file was read
    (sky / "m_empty.jpg").write_bytes((sky / "zz_copy_of_first.jpg").read_bytes())
    changed = scan_cached(sky, cache)
    assert read == [len(list(sky.glob("*.jpg")))]
    assert "m_empty.jpg" in changed.duplicates  # no longer empty: now a third copy
    assert Cache(cache).exists("scan", list_inputs(sky).key)


def test_unknown_mode_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "cluster.py"), "mode=prepar", f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 2
    assert "mode='prepar'" in proc.stdout and "one of run, apply, prepare" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_prepare_sweep_of_two_processes_then_run_reads_it(messy_sky: Path, tmp_path: Path) -> None:
    """Two shards as two real processes (submitit_local: the SLURM launcher's path minus
    sbatch); the sweep's end joins them; a run on the same cache then scans, preprocesses and
    extracts nothing."""
    cache, sweep = tmp_path / "cache", tmp_path / "sweep"
    common = [*EXTRACTORS, "data=folder", f"data.root={messy_sky}", f"paths.cache_dir={cache}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable,
        str(ROOT / "cluster.py"),
        "-m",
        "mode=prepare",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        "prepare.shards=2",
        "prepare.shard=range(0,2)",
        f"hydra.sweep.dir={sweep}",
        *common,
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((sweep / "prepared.json").read_text())
    assert doc["shards"] == 2 and doc["n_inputs"] == len(list(messy_sky.glob("*.jpg")))
    jobs = {json.loads(p.read_text())["shard"] for p in sweep.glob("*/prepared.json")}
    assert jobs == {0, 1}
    # README: python -m aurora.run finalize SWEEP joins (here: finds joined) a prepare sweep.
    (sweep / "prepared.json").unlink()
    assert finalize_main(["finalize", str(sweep)]) == 0
    assert json.loads((sweep / "prepared.json").read_text())["n_inputs"] == doc["n_inputs"]
    one = tmp_path / "one"
    run_prepare(compose_cfg("cluster", [*common[:-1], f"paths.cache_dir={one}"]), tmp_path / "o")
    joined, single = _entries(cache), _entries(one)
    assert joined.keys() == single.keys()
    (feats,) = [k for k in joined if k.endswith("features.npy")]
    assert {k: v for k, v in joined.items() if k != feats} == {
        k: v for k, v in single.items() if k != feats
    }
    # Batches of other images than in one process: the same features up to float rounding.
    a, b = np.load(cache / feats), np.load(one / feats)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * float(np.abs(b).max()))
    ids = json.loads((cache / feats).with_name("ids.json").read_text())
    assert ids == json.loads((one / feats).with_name("ids.json").read_text())
    # The run that follows reads the prepared entries: no file is scanned or preprocessed.
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "cluster.py"),
            *common,
            "grid.extractors=[mobilenet_v2]",
            "grid.n_clusters=[3]",
            "fusion.n_partitions=1",
            "fusion.min_cluster_size=2",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "scan " not in run.stderr and "preprocess:" not in run.stderr  # no progress bars
    assert (tmp_path / "run" / "labels.csv").is_file()
