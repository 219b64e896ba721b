"""The up-front memory and disk estimate of a run (aurora.run.budget) and its budget check, also
in a real run: estimated after the scan, refused before any other work."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, compose_cfg
from hydra.utils import instantiate

from aurora.infra.errors import SettingsError
from aurora.infra.machine import cgroup_memory_limit
from aurora.run import budget as B
from aurora.run.budget import machine, model, stages
from aurora.run.settings import BudgetSettings, RunSettings

GB = 2**30


@pytest.fixture(scope="module")
def sky(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six synthetic frames of 64 px."""
    from aurora.data.synth import generate

    root = tmp_path_factory.mktemp("budget_sky")
    generate(root, n=6, seed=1, size=64, jobs=1)
    return root


def _settings(sky: Path, cache: Path, *extra: str) -> RunSettings:
    over = ["debug=tiny", "data=folder", f"data.root={sky}", f"paths.cache_dir={cache}", *extra]
    return RunSettings.from_cfg(compose_cfg("cluster", over))


def _by_stage(estimates: list[B.StageEstimate]) -> dict[str, B.StageEstimate]:
    return {e.stage: e for e in estimates}


def test_preprocess_disk_is_the_store_array_and_zero_once_cached(sky: Path, tmp_path: Path) -> None:
    from aurora.data.sources import scan
    from aurora.preprocess import build_preprocessed

    settings = _settings(sky, tmp_path / "cache")
    manifest = scan(sky)
    n = len(manifest.records)
    assert n >= 5
    # debug=tiny: the autoencoder trains first, on the `full` store at train.image_size = 32.
    est = _by_stage(B.estimate_stages(manifest, settings, ["autoencoder"], 1))
    assert [e.stage for e in B.estimate_stages(manifest, settings, ["autoencoder"], 1)] == list(
        B.STAGES
    )
    assert est["preprocess"].disk_bytes == n * 32 * 32 * 3
    assert est["train"].disk_bytes > 0
    prepare = _by_stage(B.estimate_stages(manifest, settings, ["autoencoder"], 0))
    assert prepare["grid"].memory_bytes == prepare["report"].disk_bytes == 0
    assert prepare["preprocess"] == est["preprocess"]
    # Two stores (full@32 for our encoder, minimal@40 for a timm network given input_size 40).
    two = _settings(
        sky,
        tmp_path / "cache",
        "+extractors.resnet50.input_size=40",
        "extractors.resnet50.pretrained=false",
    )
    est2 = _by_stage(B.estimate_stages(manifest, two, ["autoencoder", "resnet50"], 2))
    assert est2["preprocess"].disk_bytes == n * 32 * 32 * 3 + n * 40 * 40 * 3
    # debug=tiny's autoencoder: latent_dim 16; resnet50: 2048-d, its shards beside its entry.
    assert est2["extract"].disk_bytes == n * 16 * 4 + n * 2048 * 4 + n * 2048 * 4
    cfg = dataclasses.replace(instantiate(settings.preprocess["full"]), size=32)
    build_preprocessed(manifest, cfg, settings.cache_dir, jobs=1, progress=False)
    assert (
        _by_stage(B.estimate_stages(manifest, settings, ["autoencoder"], 1))[
            "preprocess"
        ].disk_bytes
        == 0
    )
    est2 = _by_stage(B.estimate_stages(manifest, two, ["autoencoder", "resnet50"], 2))
    assert est2["preprocess"].disk_bytes == n * 40 * 40 * 3  # only the store not yet built


def test_grid_memory_known_terms_and_dense_guard() -> None:
    """The grid figure is base + features + embedding copies + the largest fit term."""
    pca = {"_target_": "sklearn.decomposition.PCA", "n_components": 10}
    km = {"_target_": "sklearn.cluster.KMeans", "n_clusters": 5}
    ward = {"_target_": "aurora.clustering.WardClustering", "connectivity_neighbors": None}
    n, dim = 100_000, 64
    got, _, _, refused = B.grid_memory(n, {"e": dim}, {"pca": pca}, {"km": km}, 1000, 0)
    # The silhouette term: larger than the fits on 1000 rows.
    sil = model.SILHOUETTE_SAMPLE**2 * model.SILHOUETTE_ITEMSIZE
    emb = int(model.EMBEDDING_COPIES * n * 10 * 4)
    assert (got, refused) == (n * dim * 4 + emb + sil, 0)
    # Dense Ward on 20,000 rows: a 20k x 20k float64 matrix (3.2 GB) under the 4 GiB guard.
    got, detail, key, _ = B.grid_memory(n, {"e": dim}, {"pca": pca}, {"w": ward}, 20_000, 0)
    assert got == n * dim * 4 + emb + 20_000**2 * 8
    assert key == "grid.fit_sample" and "20,000x20,000" in detail
    # At 30,000 rows the guard refuses the cell before it allocates: not counted.
    _, _, _, refused = B.grid_memory(n, {"e": dim}, {"pca": pca}, {"w": ward}, 30_000, 0)
    assert refused == 1


def test_reduced_dim() -> None:
    assert B.reduced_dim({"_target_": "sklearn.decomposition.PCA", "n_components": 0.8}, 512) == 410
    assert B.reduced_dim({"_target_": "sklearn.decomposition.PCA", "n_components": 20}, 512) == 20
    assert B.reduced_dim({"_target_": "umap.UMAP"}, 512) == 2
    none = {"_target_": "sklearn.preprocessing.FunctionTransformer", "func": None}
    assert B.reduced_dim(none, 512) == 512


def _estimates() -> list[B.StageEstimate]:
    return [
        B.StageEstimate("preprocess", 2 * GB, 3 * GB, "stores"),
        B.StageEstimate("grid", 9 * GB, 1 * GB, "cells", memory_key="grid.fit_sample"),
    ]


def test_check_budget_refuses_naming_stage_estimate_budget_and_key() -> None:
    tight = B.Budget(8 * GB, 100 * GB, "budget.memory_gb", "budget.disk_gb")
    with pytest.raises(B.BudgetError) as info:
        B.check_budget(_estimates(), tight)
    msg = str(info.value)
    assert "\n" not in msg
    assert "grid" in msg and "9.0 GB" in msg and "8.0 GB" in msg and "grid.fit_sample" in msg
    assert info.value.stage == "grid" and info.value.resource == "memory"
    B.check_budget(_estimates(), B.Budget(9 * GB, 4 * GB, "x", "y"))  # fits exactly
    with pytest.raises(B.BudgetError) as info:
        B.check_budget(_estimates(), B.Budget(9 * GB, 3 * GB, "x", "free space of /c"))
    assert info.value.resource == "disk" and "4.0 GB" in str(info.value)
    assert "paths.cache_dir" in str(info.value) and "preprocess" in str(info.value)


def test_format_estimates_one_line_per_stage() -> None:
    text = B.format_estimates(_estimates(), B.Budget(16 * GB, 50 * GB, "cgroup memory.max", "d"))
    lines = text.splitlines()
    assert len(lines) == 1 + 2 + 2
    assert lines[2].startswith("grid") and "9.0 GB" in lines[2]
    assert "4.0 GB" in lines[3] and "16.0 GB" in lines[4] and "cgroup memory.max" in lines[4]


def test_plan_budget_writes_estimates_and_refuses_unless_check_false(
    sky: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aurora.data.sources import scan

    manifest = scan(sky)
    tiny = _settings(sky, tmp_path / "cache", "budget.memory_gb=0.01")
    with pytest.raises(B.BudgetError, match=r"budget\.memory_gb"):
        B.plan_budget(manifest, tiny, ["autoencoder"], 1, tmp_path / "run")
    doc = json.loads((tmp_path / "run" / B.ESTIMATES_FILE).read_text())
    assert doc["fits"] is False and doc["n"] == len(manifest.records)
    assert [s["stage"] for s in doc["stages"]] == list(B.STAGES)
    assert doc["budget"]["memory_source"] == "budget.memory_gb"
    off = _settings(sky, tmp_path / "cache", "budget.memory_gb=0.01", "budget.check=false")
    out = B.plan_budget(manifest, off, ["autoencoder"], 1, tmp_path / "run2")
    assert [e.stage for e in out] == list(B.STAGES)
    assert json.loads((tmp_path / "run2" / B.ESTIMATES_FILE).read_text())["fits"] is False
    assert "preprocess" in capsys.readouterr().out
    ample = _settings(sky, tmp_path / "cache", "budget.memory_gb=1000", "budget.disk_gb=1000")
    B.plan_budget(manifest, ample, ["autoencoder"], 1, tmp_path / "run3")
    assert json.loads((tmp_path / "run3" / B.ESTIMATES_FILE).read_text())["fits"] is True


def test_machine_budget_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(machine, "cgroup_memory_limit", lambda: 6 * GB)
    monkeypatch.setattr(machine, "available_memory", lambda: 3 * GB)
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "4096")
    got = B.machine_budget(BudgetSettings(memory_gb=2.5, disk_gb=7.0), tmp_path)
    assert (got.memory_bytes, got.memory_source) == (int(2.5 * GB), "budget.memory_gb")
    assert (got.disk_bytes, got.disk_source) == (7 * GB, "budget.disk_gb")
    got = B.machine_budget(BudgetSettings(), tmp_path)
    assert (got.memory_bytes, got.memory_source) == (6 * GB, "cgroup memory.max")
    assert got.disk_source.startswith("free space of") and got.disk_bytes > 0
    monkeypatch.setattr(machine, "cgroup_memory_limit", lambda: None)
    got = B.machine_budget(BudgetSettings(), tmp_path)
    assert (got.memory_bytes, got.memory_source) == (4096 * 2**20, "SLURM_MEM_PER_NODE")
    monkeypatch.delenv("SLURM_MEM_PER_NODE")
    got = B.machine_budget(BudgetSettings(), tmp_path)
    assert (got.memory_bytes, got.memory_source) == (3 * GB, "available memory")


def test_cgroup_limit_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """v2 ``memory.max`` (``max`` = none) and v1 ``memory.limit_in_bytes`` (~2**63 = none)."""
    real = Path.read_text

    def fake_cgroup(lines: str):  # type: ignore[no-untyped-def]
        def read(self: Path, *a, **k):  # type: ignore[no-untyped-def]
            return lines if str(self) == "/proc/self/cgroup" else real(self, *a, **k)

        return read

    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "memory.max").write_text("1073741824\n")
    monkeypatch.setattr(Path, "read_text", fake_cgroup("0::/job\n"))
    assert cgroup_memory_limit(tmp_path) == GB
    (tmp_path / "job" / "memory.max").write_text("max\n")
    assert cgroup_memory_limit(tmp_path) is None
    (tmp_path / "memory" / "j").mkdir(parents=True)
    (tmp_path / "memory" / "j" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    monkeypatch.setattr(Path, "read_text", fake_cgroup("4:memory:/j\n"))
    assert cgroup_memory_limit(tmp_path) is None
    (tmp_path / "memory" / "j" / "memory.limit_in_bytes").write_text("2147483648\n")
    assert cgroup_memory_limit(tmp_path) == 2 * GB


def test_budget_settings(sky: Path, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"budget\.memory_gb"):
        _settings(sky, tmp_path, "budget.memory_gb=-1")
    with pytest.raises(SettingsError, match=r"budget\.disk_gb"):
        _settings(sky, tmp_path, "budget.disk_gb=0")
    s = _settings(sky, tmp_path, "budget.memory_gb=12", "budget.check=false")
    assert s.budget == BudgetSettings(12.0, None, False)
    assert BudgetSettings.from_node(None) == BudgetSettings()


def test_budget_reads_the_feature_cache_keys_of_the_extraction() -> None:
    """The budget and the extraction read one home of the feature cache's names (no copies)."""
    from aurora.extractors import feature_keys, feature_store, inference

    assert stages.SHARD_SIZE is feature_keys.SHARD_SIZE
    assert inference.STAGE is feature_store.STAGE is feature_keys.STAGE
    assert inference.extract_features.__kwdefaults__["shard_size"] == feature_keys.SHARD_SIZE
    assert stages.entry_provenances is feature_keys.entry_provenances
    assert inference.feature_key is feature_store.feature_key is feature_keys.feature_key


def test_package_needs_no_torch() -> None:
    """Importing the package (all its modules) imports no torch, and of aurora.extractors only
    the torch-free feature cache keys."""
    import subprocess

    code = (
        "import sys, aurora.run.budget; "
        "print('torch' in sys.modules, "
        "sorted(m for m in sys.modules if m.startswith('aurora.extractors.')), "
        "sorted(m for m in sys.modules if m.startswith('aurora.run.budget.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    mods = ["extractors", "grid", "machine", "model", "plan", "stages"]
    budget = [f"aurora.run.budget.{m}" for m in mods]
    assert out.stdout.strip() == f"False ['aurora.extractors.feature_keys'] {budget}"


def _grid_peak(n: int, dim: int) -> float:
    """Peak RSS (bytes) of the grid path on n x dim features: PCA -> K-means, fit on 2,000 rows."""
    sys.path.insert(0, str(ROOT / "bench"))
    import tempfile

    from _common import gaussian_mixture, peak_rss_mb

    from aurora.grid.cell import CellSpec
    from aurora.infra.cache import Cache
    from aurora.run.grid import run_grid

    x = gaussian_mixture(n, dim, seed=0)[0].astype(np.float32)

    class F:
        features, key, random_init = x, "f", False

    red = {"pca": {"_target_": "sklearn.decomposition.PCA", "n_components": 0.8}}
    clu = {"km": {"_target_": "sklearn.cluster.KMeans", "n_clusters": 10, "n_init": 2}}
    rows = np.sort(np.random.default_rng(0).choice(n, 2000, replace=False))
    with tempfile.TemporaryDirectory() as tmp:
        Cache(tmp)
        run_grid([CellSpec("e", "pca", "km", 10)], {"e": F}, red, clu, seed=0, cache_dir=tmp,
                 stability_splits=2, cells_dir=Path(tmp) / "cells", fit_rows=rows)  # fmt: skip
    return peak_rss_mb() * 2**20


def test_grid_estimate_is_within_a_factor_of_measured() -> None:
    """The grid estimate (with this process's own base: no torch imported) against the peak RSS
    of the same work in a fresh process: 5,000 x 64-d features."""
    sys.path.insert(0, str(ROOT / "bench"))
    from _common import in_fresh_process

    n, dim = 5000, 64
    base = model.BENCH_BASE_BYTES
    red = {"pca": {"_target_": "sklearn.decomposition.PCA", "n_components": 0.8}}
    clu = {"km": {"_target_": "sklearn.cluster.KMeans"}}
    est, _, _, _ = B.grid_memory(n, {"e": dim}, red, clu, 2000, base)
    _, peak_mb = in_fresh_process(_grid_peak, n, dim)
    ratio = est / (peak_mb * 2**20)
    print(f"grid estimate {est / 2**20:.0f} MB, measured peak {peak_mb:.0f} MB, ratio {ratio:.2f}")
    assert 0.5 <= ratio <= 3, (est, peak_mb, ratio)


def _cluster(tmp_path: Path, sky: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        str(ROOT / "cluster.py"),
        "debug=tiny",
        "data=folder",
        f"data.root={sky}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        *extra,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def test_over_budget_run_stops_after_the_scan_in_one_line(tiny_sky: Path, tmp_path: Path) -> None:
    proc = _cluster(tmp_path, tiny_sky, "budget.memory_gb=0.25")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-2000:]
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in out
    assert "stage preprocess needs an estimated" in errors[0]
    assert "budget of 0.2 GB (budget.memory_gb)" in errors[0]
    run = tmp_path / "run"
    doc = json.loads((run / "estimates.json").read_text())
    assert doc["fits"] is False and doc["n"] == len(list(tiny_sky.glob("*.jpg")))
    assert [s["stage"] for s in doc["stages"]][0] == "preprocess"
    assert json.loads((run / "status.json").read_text())["state"] == "failed"
    # Refused before any preprocessing: the cache holds the scan only.
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["scan"]


def test_disk_budget_names_the_stage_and_key(tiny_sky: Path, tmp_path: Path) -> None:
    proc = _cluster(tmp_path, tiny_sky, "budget.disk_gb=0.00001")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-2000:]
    (error,) = [line for line in out.splitlines() if line.startswith("error:")]
    assert "budget.disk_gb" in error and "disk" in error
    assert not (tmp_path / "cache" / "preprocess").exists()
