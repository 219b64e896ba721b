"""Settings checks: impossible values are refused by key; list values are fitted to the data;
every experiment of conf/ composes into settings whose extractors, reducers and clusterers exist."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import CONF, ROOT, TINY_GRID, compose_cfg

from aurora.data.datamodule import split_indices
from aurora.fusion import FusionSettings
from aurora.infra.errors import RunError, SettingsError
from aurora.infra.guard import error_line
from aurora.run import (
    RunSettings,
    run_cluster,
    run_sweep_cell,
)
from aurora.run.checks import (
    check_against_data,
    check_device,
    check_extract,
    check_grid,
    check_jobs,
    check_number,
    check_seed,
    check_training,
    int_list,
)

FUSION = {"threshold": 0.5, "min_cluster_size": 20, "n_partitions": 10, "search": None}
FUSED = FusionSettings.from_node(FUSION)
SEARCH = {
    "n_partitions": [3, 5],
    "thresholds": [0.3, 0.5],
    "min_sizes": [10, 20, 50],
    "target_groups": 37,
    "unassigned_penalty": 0.1,
}


def test_lone_k_is_a_one_element_grid() -> None:
    assert check_grid(3, 3).n_clusters == (3,)
    assert check_grid([6, 12, 6], 3).n_clusters == (6, 12)


@pytest.mark.parametrize("bad", [[0], [1], [], ["two"], [2.5], [True]])
def test_impossible_k_names_the_key(bad: object) -> None:
    with pytest.raises(SettingsError, match=r"grid\.n_clusters="):
        check_grid(bad, 3)


@pytest.mark.parametrize(
    ("fusion", "key"),
    [
        ({**FUSION, "threshold": 1.5}, "fusion.threshold"),
        ({**FUSION, "min_cluster_size": -1}, "fusion.min_cluster_size"),
        ({**FUSION, "min_cluster_size": 2.5}, "fusion.min_cluster_size"),
        ({**FUSION, "n_partitions": "ten"}, "fusion.n_partitions"),
        ({**FUSION, "search": {**SEARCH, "thresholds": [0.5, -1]}}, "fusion.search.thresholds"),
        ({**FUSION, "search": {**SEARCH, "min_sizes": [-1]}}, "fusion.search.min_sizes"),
        ({**FUSION, "search": {**SEARCH, "target_groups": 0}}, "fusion.search.target_groups"),
        ({**FUSION, "search": {**SEARCH, "n_partitions": []}}, "fusion.search.n_partitions"),
        ({**FUSION, "voting": {"weights": [1.0, -1.0]}}, "fusion.voting.weights"),
        ({**FUSION, "voting": {"min_cluster_size": 9}}, "fusion.voting.min_cluster_size"),
        ({**FUSION, "per_extractor": "no"}, "fusion.per_extractor"),
    ],
)
def test_impossible_fusion_names_the_key(fusion: dict, key: str) -> None:
    with pytest.raises(SettingsError) as err:
        FusionSettings.from_node(fusion)
    assert err.value.key == key and key in str(err.value)


LOADER = {"batch_size": 8, "num_workers": 0, "val_fraction": 0.05, "pin_memory": None}
TRAINER = {"max_epochs": 10, "max_steps": -1}


@pytest.mark.parametrize(
    ("loader", "trainer", "key"),
    [
        ({**LOADER, "batch_size": 1}, TRAINER, "train.loader.batch_size"),
        ({**LOADER, "val_fraction": 0.9}, TRAINER, "train.loader.val_fraction"),
        ({**LOADER, "num_workers": -1}, TRAINER, "train.loader.num_workers"),
        ({**LOADER, "pin_memory": "yes"}, TRAINER, "train.loader.pin_memory"),
        (LOADER, {**TRAINER, "max_epochs": 0}, "trainer.max_epochs"),
        (LOADER, {**TRAINER, "max_epochs": -1}, "trainer.max_epochs"),  # no end, no schedule
        (LOADER, {**TRAINER, "max_epochs": 2.5}, "trainer.max_epochs"),
        (LOADER, {**TRAINER, "max_steps": 0}, "trainer.max_steps"),
    ],
)
def test_impossible_training_names_the_key(loader: dict, trainer: dict, key: str) -> None:
    with pytest.raises(SettingsError) as err:
        check_training(loader, trainer)
    assert err.value.key == key and str(err.value).startswith(f"{key}=")


def test_training_length_may_come_from_steps_alone() -> None:
    check_training(LOADER, {"max_epochs": -1, "max_steps": 100})  # Lightning's "no epoch limit"
    check_training(LOADER, {"max_epochs": None, "max_steps": -1})  # Lightning's default length
    with pytest.raises(SettingsError, match=r"^train\.loader\.batch_size=0 "):
        check_training({**LOADER, "batch_size": 0}, TRAINER)  # one key for train.py and cluster.py


@pytest.mark.parametrize("bad", ["abc", -1, 2**32, 1.5, None, True, float("nan")])
def test_impossible_seed_names_the_key(bad: object) -> None:
    with pytest.raises(SettingsError, match=r"^seed=.* an integer in \[0, 4294967295\]$"):
        check_seed(bad)


def test_seed_in_range_is_an_int() -> None:
    assert check_seed(7.0) == 7 and isinstance(check_seed(7.0), int)
    assert check_seed(2**32 - 1) == 2**32 - 1


@pytest.mark.parametrize("bad", [0, -3, 2.5, "all", float("inf"), True])
def test_jobs_is_at_least_one_or_null(bad: object) -> None:
    with pytest.raises(SettingsError) as err:
        check_jobs(bad)
    assert err.value.key == "jobs" and "null for every CPU" in str(err.value)


def test_jobs_null_means_every_cpu() -> None:
    assert check_jobs(None) is None and check_jobs(4) == 4


@pytest.mark.parametrize("bad", ["cuda9", "gpu", "cuda:", "cuda:-1", "cpu:0", "auto:1", "", 0])
def test_device_form_is_checked_without_torch(bad: object) -> None:
    with pytest.raises(SettingsError) as err:
        check_device(bad)
    assert err.value.key == "extract.device" and "cuda:N" in str(err.value)


@pytest.mark.parametrize("good", ["auto", "cpu", "cuda", "cuda:0", "cuda:3", "mps"])
def test_device_forms_the_project_accepts(good: str) -> None:
    assert check_device(good) == good  # the form only: any machine may be the one that runs it


def test_device_this_machine_lacks_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SettingsError, match=r"^extract\.device='cuda' .*no CUDA device"):
        check_device("cuda", here=True)
    assert check_device("auto", here=True) == "auto" and check_device("cpu", here=True) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert check_device("cuda:0", here=True) == "cuda:0"
    with pytest.raises(SettingsError, match=r"^extract\.device='cuda:1' .* 1 CUDA device.*cuda:0"):
        check_device("cuda:1", here=True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(SettingsError, match="no MPS device"):
        check_device("mps", here=True)


@pytest.mark.parametrize(
    ("node", "key"),
    [
        ({"batch_size": 0, "num_workers": 0, "device": "cpu"}, "extract.batch_size"),
        ({"batch_size": 8, "num_workers": -1, "device": "cpu"}, "extract.num_workers"),
        ({"batch_size": 8, "num_workers": 0, "device": "cuda9"}, "extract.device"),
    ],
)
def test_impossible_extraction_names_the_key(node: dict, key: str) -> None:
    with pytest.raises(SettingsError) as err:
        check_extract(node)
    assert err.value.key == key


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "0.5"])
def test_numbers_refuse_nan_inf_and_text(bad: object) -> None:
    with pytest.raises(SettingsError, match="fusion.threshold"):
        check_number("fusion.threshold", bad, 0.0, 1.0)
    with pytest.raises(SettingsError, match="grid.n_clusters"):
        check_grid([bad], 3)


def test_values_are_fitted_to_the_accepted_count(caplog: pytest.LogCaptureFixture) -> None:
    searched = FusionSettings.from_node({**FUSION, "search": SEARCH})
    fit = check_against_data(15, check_grid([6, 30, 100], 3), searched)
    assert fit.n_clusters == (6, 14)  # k below the number of images
    assert fit.min_cluster_size == 15
    assert fit.search_min_sizes == (10, 15)
    assert fit.target_groups == 15
    assert "grid.n_clusters" in caplog.text and "[30, 100]" in caplog.text
    # Nothing changes when the data is large enough.
    big = check_against_data(1000, check_grid([6, 30], 3), searched)
    assert big.n_clusters == (6, 30) and big.search_min_sizes == (10, 20, 50)


def test_fewer_than_two_images_cannot_be_grouped() -> None:
    with pytest.raises(
        RunError, match=r"^data.root: 1 image\(s\) of the folder accepted.*at least 2"
    ):
        check_against_data(1, check_grid([2], 2), FUSED)


def test_int_list_keeps_order() -> None:
    assert int_list("k", [5, 3.0, 4], 2) == [5, 3, 4]


@pytest.mark.parametrize("n", [2, 3, 4, 5, 16, 40, 200])
def test_validation_split_is_two_or_none(n: int) -> None:
    train, val = split_indices(n, 0.05, seed=0)
    assert len(val) == 0 or len(val) >= 2  # a lone validation image logs no loss
    assert len(train) >= 2
    assert len(val) == (0 if n < 4 else max(2, round(n * 0.05)))
    assert np.intersect1d(train, val).size == 0 and len(train) + len(val) == n


# --- through the package's entry points: one line naming the key, before any work -------------

#: (override, key): settings every mode of cluster.py reads, each impossible.
CLUSTER_SETTINGS = [
    ("extract.batch_size=0", "extract.batch_size"),
    ("extract.num_workers=-1", "extract.num_workers"),
    ("extract.device=cuda9", "extract.device"),
    ("trainer.max_epochs=-1", "trainer.max_epochs"),
    ("trainer.max_steps=0", "trainer.max_steps"),
    ("train.loader.batch_size=1", "train.loader.batch_size"),
    ("train.loader.num_workers=-1", "train.loader.num_workers"),
    ("seed=abc", "seed"),
    ("seed=-1", "seed"),
    ("jobs=-3", "jobs"),
    ("jobs=0", "jobs"),
    ("fusion.threshold=1.5", "fusion.threshold"),
    ("+fusion.voting.min_cluster_size=9", "fusion.voting.min_cluster_size"),
]


def _refused(work: Callable[[], object], key: str) -> str:
    """Run ``work``; it must raise the settings error of ``key``; its one line."""
    with pytest.raises(SettingsError) as err:
        work()
    assert err.value.key == key
    line = error_line(err.value)
    assert line is not None and "\n" not in line and line.startswith(f"{key}=")
    return line


def _nothing_written(cache: Path, run: Path) -> None:
    """No cache entry and no run output (``status.json`` saying ``failed`` is all)."""
    assert not cache.exists() or not any(cache.iterdir())
    written = {p.name for p in run.iterdir()} if run.exists() else set()
    assert written <= {"status.json"}, written


@pytest.fixture
def fresh(tiny_overrides: list[str], tmp_path: Path) -> list[str]:
    """``tiny_overrides`` with this test's own (empty) cache folder."""
    return [*tiny_overrides, f"paths.cache_dir={tmp_path / 'cache'}"]


@pytest.mark.parametrize(
    ("override", "key"), CLUSTER_SETTINGS, ids=[o for o, _ in CLUSTER_SETTINGS]
)
def test_run_refuses_a_setting_before_any_work(
    fresh: list[str], tmp_path: Path, override: str, key: str
) -> None:

    cfg = compose_cfg("cluster", [*fresh, override])
    _refused(lambda: run_cluster(cfg, tmp_path / "run"), key)
    _nothing_written(tmp_path / "cache", tmp_path / "run")


@pytest.mark.parametrize(
    ("override", "key"),
    [("jobs=0", "jobs"), ("extract.batch_size=0", "extract.batch_size"), ("seed=abc", "seed")],
)
def test_sweep_job_and_prepare_refuse_a_setting_before_any_work(
    fresh: list[str], tmp_path: Path, override: str, key: str
) -> None:
    from aurora.run.prepare import run_prepare

    cell = ["extractor=autoencoder", "reducer=pca", "clusterer=kmeans", "clusterer.n_clusters=3"]
    cfg = compose_cfg("cluster", [*fresh, *cell, override])
    choices = {"extractor": "autoencoder", "reducer": "pca", "clusterer": "kmeans"}
    _refused(lambda: run_sweep_cell(cfg, tmp_path / "job", choices), key)
    cfg = compose_cfg("cluster", [*fresh, "mode=prepare", override])
    _refused(lambda: run_prepare(cfg, tmp_path / "prepare"), key)
    _nothing_written(tmp_path / "cache", tmp_path / "job")
    assert not any((tmp_path / "prepare").iterdir())


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("jobs=0", "jobs"),
        ("extract.batch_size=0", "extract.batch_size"),
        ("extract.device=cuda9", "extract.device"),
    ],
)
def test_apply_refuses_a_setting_before_any_work(
    fresh: list[str], tmp_path: Path, override: str, key: str
) -> None:
    from aurora.run import run_apply

    cfg = compose_cfg(
        "cluster", [*fresh, "mode=apply", f"solution={tmp_path / 'solution'}", override]
    )
    _refused(lambda: run_apply(cfg, tmp_path / "run"), key)
    _nothing_written(tmp_path / "cache", tmp_path / "run")


def test_run_refuses_a_device_this_machine_lacks(
    fresh: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from aurora.run.prepare import run_prepare

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    cfg = compose_cfg("cluster", [*fresh, "extract.device=cuda:9"])
    line = _refused(lambda: run_cluster(cfg, tmp_path / "run"), "extract.device")
    assert "1 CUDA device" in line
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = compose_cfg("cluster", [*fresh, "mode=prepare", "extract.device=cuda"])
    assert "no CUDA device" in _refused(lambda: run_prepare(cfg, tmp_path / "p"), "extract.device")
    _nothing_written(tmp_path / "cache", tmp_path / "run")


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("seed=abc", "seed"),
        ("jobs=0", "jobs"),
        ("jobs=-3", "jobs"),
        ("trainer.max_epochs=-1", "trainer.max_epochs"),
        ("train.loader.batch_size=0", "train.loader.batch_size"),
        ("train.loader.num_workers=-1", "train.loader.num_workers"),
    ],
)
def test_train_refuses_a_setting_before_any_work(
    tiny_train_overrides: list[str], tmp_path: Path, override: str, key: str
) -> None:
    from aurora.run.train import train

    cache = tmp_path / "cache"
    cfg = compose_cfg("train", [*tiny_train_overrides, f"paths.cache_dir={cache}", override])
    cfg.out_dir = str(tmp_path / "train")
    _refused(lambda: train(cfg), key)
    assert not cache.exists() and not (tmp_path / "train").exists()


def test_cli_exit_code_of_a_setting_is_2(fresh: list[str], tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "cluster.py"), *fresh, "extract.device=cuda9"]
    cmd.append(f"hydra.run.dir={tmp_path / 'run'}")
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        "error: extract.device='cuda9' cannot work: auto, cpu, cuda, cuda:N (N = a CUDA device "
        "index) or mps"
    ]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "cache").exists()


EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_with_a_consistent_grid(name: str) -> None:
    cfg = compose_cfg("cluster", [f"experiment={name}"])
    for axis in ("extractors", "reducers", "clusterers"):
        chosen = cfg.grid.get(axis) or list(cfg[axis])
        assert set(chosen) <= set(cfg[axis]), (name, axis)
    assert all(int(k) >= 2 for k in cfg.grid.n_clusters)
    settings = RunSettings.from_cfg(cfg)  # what a run reads of it, read once
    for name, ext in settings.extractors.items():
        assert ext["preprocess"] in settings.preprocess, name
        assert ext.get("train") in (None, *settings.train.models), name
    fusion = settings.fusion  # typed, and what the config says
    assert isinstance(fusion, FusionSettings)
    assert (fusion.threshold, fusion.min_cluster_size) == (
        cfg.fusion.threshold,
        cfg.fusion.min_cluster_size,
    )
    assert fusion.per_extractor is cfg.fusion.per_extractor
    if cfg.fusion.search is None:
        assert fusion.search is None
    else:
        assert fusion.search is not None
        assert fusion.search.target_groups == cfg.fusion.search.target_groups
        assert list(fusion.search.thresholds) == list(cfg.fusion.search.thresholds)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("fusion.threshold=1.5", "fusion.threshold"),
        ("fusion.search.min_sizes=[10,-2]", "fusion.search.min_sizes"),
        ("+fusion.voting.threshold=0.6", "fusion.voting.threshold"),
    ],
)
def test_a_bad_fusion_setting_is_one_error_naming_its_key(override: str, key: str) -> None:
    extra = ["fusion=search"] if "search" in override else []
    cfg = compose_cfg("cluster", ["data.root=/nowhere", *extra, override])
    with pytest.raises(SettingsError) as err:
        RunSettings.from_cfg(cfg)
    assert err.value.key == key and str(err.value).startswith(f"{key}=")


def test_train_config_composes_for_each_model_and_trainer() -> None:
    for model in ("simclr", "autoencoder"):
        for trainer in ("cpu", "gpu", "ddp"):
            cfg = compose_cfg("train", [f"model={model}", f"trainer={trainer}"])
            assert cfg.model._target_.startswith("aurora.models.")
            assert cfg.trainer._target_ == "aurora.training.trainer.make_trainer"


@pytest.mark.parametrize("extra", [[], ["fusion=search"]], ids=["voting", "search"])
def test_fitted_settings_are_the_config_fitted_in_place(extra: list[str]) -> None:
    """The data's fit reaches the fusion settings, the voting they make and the recorded
    config, as writing it into the config would."""
    from omegaconf import OmegaConf

    from aurora.fusion import FusionSettings
    from aurora.run.checks import DataFit

    cfg = compose_cfg("cluster", ["data=folder", "data.root=/nowhere", *TINY_GRID, *extra])
    search = cfg.fusion.get("search") is not None
    fit = DataFit((3,), 5, (5, 7) if search else None, 4 if search else None)
    settings = RunSettings.from_cfg(cfg)
    fitted = settings.fitted(fit)
    ref = cfg.copy()  # the obvious way: the values written into the config, then resolved
    ref.fusion.min_cluster_size = fit.min_cluster_size
    if search:
        ref.fusion.search.min_sizes = list(fit.search_min_sizes)
        ref.fusion.search.target_groups = fit.target_groups
    assert fitted.fusion == FusionSettings.from_node(OmegaConf.to_container(ref.fusion))
    assert fitted.config == OmegaConf.to_container(ref, resolve=True)
    assert fitted.fusion.voting_estimator().get_params()["min_cluster_size"] == 5
    assert settings.fusion.min_cluster_size == 2  # the settings it came from are unchanged
