"""Every experiment composes, and every extractor/reducer/clusterer it names exists."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from aurora.fusion import FusionSettings
from aurora.infra.errors import SettingsError
from aurora.run import RunSettings

CONF = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_with_a_consistent_grid(name: str) -> None:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("cluster", overrides=[f"experiment={name}"])
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
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("cluster", overrides=["data.root=/nowhere", *extra, override])
    with pytest.raises(SettingsError) as err:
        RunSettings.from_cfg(cfg)
    assert err.value.key == key and str(err.value).startswith(f"{key}=")


def test_train_config_composes_for_each_model_and_trainer() -> None:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        for model in ("simclr", "autoencoder"):
            for trainer in ("cpu", "gpu", "ddp"):
                cfg = compose("train", overrides=[f"model={model}", f"trainer={trainer}"])
                assert cfg.model._target_.startswith("aurora.models.")
                assert cfg.trainer._target_ == "aurora.training.trainer.make_trainer"
