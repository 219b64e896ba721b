"""The ``debug`` and ``callbacks`` config groups: what they compose to and what they do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import compose_cfg
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

import aurora.training.fit
from aurora.infra.errors import SettingsError
from aurora.run import run_cluster
from aurora.run.features import training_key
from aurora.run.settings import RunSettings
from aurora.run.train import train
from aurora.training.trainer import instantiate_callbacks

# What the tests wrote on the command line before conf/debug/tiny.yaml held it.
TINY_CLUSTER = [
    "trainer=cpu",
    "logger=none",
    "train.image_size=32",
    "preprocess.full.size=32",
    "preprocess.minimal.size=32",
    "trainer.max_epochs=1",
    "++trainer.enable_progress_bar=false",
    "models.autoencoder.depth=2",
    "models.autoencoder.width=4",
    "models.autoencoder.latent_dim=16",
    "train.loader.batch_size=8",
    "train.loader.num_workers=0",
    "extract.num_workers=0",
    "grid.extractors=[autoencoder]",
    "grid.reducers=[pca]",
    "grid.clusterers=[kmeans]",
    "grid.stability_splits=2",
    "jobs=1",
    "++synthetic_sky.n=48",
    "++synthetic_sky.size=64",
]
TINY_TRAIN = [
    "trainer=cpu",
    "logger=none",
    "preprocess.size=32",
    "trainer.max_epochs=1",
    "++trainer.enable_progress_bar=false",
    "train.loader.batch_size=8",
    "train.loader.num_workers=0",
    "jobs=1",
    "++synthetic_sky.n=48",
    "++synthetic_sky.size=64",
]
# Early stopping that stops as soon as it can: the loss never falls by 1e9, so the second epoch
# is the one without improvement. A quarter of the 24 images validate.
STOP_AT_ONCE = [
    "callbacks=early_stopping",
    "callbacks.early_stopping.patience=1",
    "callbacks.early_stopping.min_delta=1e9",
]


@pytest.mark.parametrize("experiment", ["thesis", "demo"])
def test_debug_tiny_is_the_command_line_list_it_replaced(experiment: str) -> None:
    """debug=tiny comes after an experiment: it wins over it as command-line values did
    (thesis picks the GPU trainer, demo a 600-frame synthetic sky)."""
    tiny = compose_cfg("cluster", [f"experiment={experiment}", "debug=tiny"])
    assert tiny == compose_cfg("cluster", [f"experiment={experiment}", *TINY_CLUSTER])
    assert tiny.trainer.accelerator == "cpu" and tiny.synthetic_sky.n == 48


def test_debug_tiny_train_is_the_command_line_list_it_replaced() -> None:
    assert compose_cfg("train", ["debug=tiny_train"]) == compose_cfg("train", TINY_TRAIN)
    # A group given on the command line wins over the debug group's choice.
    assert compose_cfg("train", ["debug=tiny_train", "trainer=gpu"]).trainer.accelerator == "gpu"


def test_callbacks_group_builds_lightning_callbacks() -> None:
    for name in ("cluster", "train"):
        assert OmegaConf.to_container(compose_cfg(name).callbacks) == {}
    assert instantiate_callbacks(compose_cfg("train").callbacks) == []
    stop, lr = instantiate_callbacks(
        compose_cfg("train", ["callbacks=[early_stopping,lr_monitor]"]).callbacks
    )
    assert isinstance(stop, EarlyStopping) and isinstance(lr, LearningRateMonitor)
    assert stop.monitor == "val/loss" and stop.patience == 3
    cfg = compose_cfg(
        "cluster", ["callbacks=[early_stopping,lr_monitor]", "callbacks.lr_monitor=null"]
    )
    assert [type(c) for c in instantiate_callbacks(cfg.callbacks)] == [EarlyStopping]
    cfg.data.root = "x"
    assert RunSettings.from_cfg(cfg).train.callbacks == OmegaConf.to_container(cfg.callbacks)


@pytest.mark.parametrize(
    ("node", "match"),
    [
        ({"stop": {"patience": 1}}, "callbacks.stop="),
        ({"stop": {"_target_": "lightning.pytorch.callbacks.Nope"}}, "callbacks.stop="),
        (
            {"stop": {"_target_": "lightning.pytorch.callbacks.EarlyStopping", "patiense": 1}},
            "patiense",
        ),
        ({"stop": {"_target_": "collections.OrderedDict"}}, "not a Lightning callback"),
    ],
)
def test_a_callback_node_that_cannot_work_is_a_settings_error(node: dict, match: str) -> None:
    with pytest.raises(SettingsError, match=match):
        instantiate_callbacks(node)


def test_only_callbacks_that_change_training_change_the_training_key() -> None:
    args: tuple[Any, ...] = ("store", {"_target_": "m"}, {"max_epochs": 3}, {"batch_size": 8}, 0)
    stop = compose_cfg("train", ["callbacks=early_stopping"]).callbacks
    lr = compose_cfg("train", ["callbacks=lr_monitor"]).callbacks
    before = training_key(*args)  # the key of every encoder trained before the group existed
    assert training_key(*args, {}) == training_key(*args, OmegaConf.to_container(lr)) == before
    assert training_key(*args, {"early_stopping": None}) == before
    assert training_key(*args, OmegaConf.to_container(stop)) != before


def _epochs_and_callbacks(result: aurora.training.fit.TrainResult) -> tuple[int, list[str]]:
    """Epochs trained, and the classes of the callbacks whose state the last checkpoint holds."""
    ckpt = torch.load(result.last_ckpt, map_location="cpu", weights_only=False)
    return result.epochs, sorted(k.split("{")[0] for k in ckpt["callbacks"])


def test_train_py_stops_early_with_callbacks_early_stopping(
    cfg_train: DictConfig, tiny_train_overrides: list[str], tmp_path: Path
) -> None:
    """``python train.py callbacks=early_stopping`` stops; the default run trains every epoch."""
    cfg_train.trainer.max_epochs = 3
    cfg_train.train.loader.val_fraction = 0.25
    three = ["trainer.max_epochs=3", "train.loader.val_fraction=0.25", f"out_dir={tmp_path / 'es'}"]
    stopping = compose_cfg("train", [*tiny_train_overrides, *three, *STOP_AT_ONCE])
    assert _epochs_and_callbacks(train(cfg_train)) == (3, ["ModelCheckpoint"])
    assert _epochs_and_callbacks(train(stopping)) == (2, ["EarlyStopping", "ModelCheckpoint"])


def test_early_stopping_without_a_validation_split_is_a_settings_error(
    tiny_train_overrides: list[str], tmp_path: Path
) -> None:
    cfg = compose_cfg(
        "train",
        [
            *tiny_train_overrides,
            *STOP_AT_ONCE,
            "train.loader.val_fraction=0",
            f"out_dir={tmp_path}",
        ],
    )
    with pytest.raises(
        SettingsError, match="train.loader.val_fraction=0 .*EarlyStopping watches val/loss"
    ):
        train(cfg)


def test_cluster_py_trains_its_encoder_with_the_callbacks(
    tiny_overrides: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python cluster.py callbacks=early_stopping``: the encoder it trains stops early."""
    epochs = []
    real = aurora.training.fit.fit_model

    def fit_model(*args: Any, **kwargs: Any) -> aurora.training.fit.TrainResult:
        result = real(*args, **kwargs)
        epochs.append(_epochs_and_callbacks(result))
        return result

    monkeypatch.setattr(aurora.training.fit, "fit_model", fit_model)
    cfg: DictConfig = compose_cfg(
        "cluster",
        [
            *tiny_overrides,
            *STOP_AT_ONCE,
            "trainer.max_epochs=3",
            "train.loader.val_fraction=0.25",
            "grid.n_clusters=[3]",
            "fusion.min_cluster_size=2",
        ],
    )
    run_cluster(cfg, tmp_path / "run")
    assert epochs == [(2, ["EarlyStopping", "ModelCheckpoint"])]
