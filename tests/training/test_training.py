"""Training runs: fast_dev_run, loss goes down, checkpoints, exact resume, TensorBoard, Hydra."""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from conftest import compose_cfg, tiny_cpu_trainer, tiny_simclr
from omegaconf import OmegaConf

from aurora.data.datamodule import DataError, LoaderConfig, SkyDataModule, split_indices
from aurora.models import load_encoder
from aurora.models.checkpoint import CheckpointError
from aurora.training.fit import fit_model

S = 32
SIMCLR = tiny_simclr(lr=3e-3)
AE = {"_target_": "aurora.models.AutoEncoder", "depth": 2, "width": 8, "latent_dim": 16}
TB = {"_target_": "lightning.pytorch.loggers.TensorBoardLogger", "name": "tb", "version": ""}
LOADER = LoaderConfig(batch_size=8, num_workers=0, val_fraction=0.25)

warnings.filterwarnings("ignore", ".*does not have many workers.*")


def _trainer(**changes: object) -> dict:
    return tiny_cpu_trainer(log_every_n_steps=1, **changes)


@pytest.fixture(scope="module")
def sky() -> np.ndarray:
    """(24, S, S, 3) uint8 toy skies (green bands at random angles, red patches, diffuse glow),
    black outside the inscribed circle. Self-contained so these tests do not depend on the
    synthetic data set's renderer."""
    rng = np.random.default_rng(0)
    yy, xx = (np.mgrid[:S, :S] + 0.5 - S / 2) / (S / 2)
    inside = (yy**2 + xx**2) <= 1
    imgs = []
    for i in range(24):
        img = np.zeros((S, S, 3))
        kind = i % 3
        if kind == 0:  # arc: a band at a random angle and offset
            a, off = rng.uniform(0, np.pi), rng.uniform(-0.5, 0.5)
            d = xx * np.cos(a) + yy * np.sin(a) - off
            img[..., 1] = np.exp(-0.5 * (d / 0.1) ** 2)
        elif kind == 1:  # patches
            for _ in range(4):
                cx, cy = rng.uniform(-0.6, 0.6, 2)
                img[..., 0] += 0.7 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.02)
        else:  # diffuse glow
            img[..., 1] = 0.4 + 0.2 * yy
        img += rng.normal(0, 0.03, img.shape)
        imgs.append(np.clip(img, 0, 1) * 255 * inside[..., None])
    return np.stack(imgs).astype(np.uint8)


def test_datamodule_split_and_items(sky: np.ndarray) -> None:
    dm = SkyDataModule(sky, LOADER, seed=3)
    assert len(dm.train_idx) == 18 and len(dm.val_idx) == 6
    assert set(dm.train_idx) | set(dm.val_idx) == set(range(24))
    tr, va = split_indices(24, 0.25, seed=3)
    assert np.array_equal(tr, dm.train_idx) and np.array_equal(va, dm.val_idx)
    assert not np.array_equal(split_indices(24, 0.25, seed=4)[1], va)
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (8, 3, S, S) and batch.dtype == torch.float32
    assert batch.min() >= 0.0 and batch.max() <= 1.0
    item = dm.train_dataloader().dataset[0]
    assert torch.allclose(
        item * 255, torch.from_numpy(sky[dm.train_idx[0]]).permute(2, 0, 1).float()
    )
    with pytest.raises(DataError, match="uint8"):
        SkyDataModule(sky.astype(np.float32))
    with pytest.raises(DataError, match=r"\(N, S, S, 3\)"):
        SkyDataModule(sky[..., 0])


@pytest.mark.parametrize("model_cfg", [SIMCLR, AE], ids=["simclr", "autoencoder"])
def test_fast_dev_run(sky: np.ndarray, model_cfg: dict, tmp_path: Path) -> None:
    res = fit_model(sky, model_cfg, _trainer(fast_dev_run=True), tmp_path, loader=LOADER)
    assert res.global_step == 1
    assert np.isfinite(res.metrics["train/loss"])


def test_simclr_steps_lower_loss_and_tensorboard_tags(sky: np.ndarray, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    res = fit_model(
        sky, SIMCLR, _trainer(max_epochs=6), tmp_path, logger_cfg=TB, loader=LOADER, seed=1
    )
    assert res.global_step == 12
    acc = EventAccumulator(res.log_dir, size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    scalars, images = set(acc.Tags()["scalars"]), set(acc.Tags()["images"])
    expected = {"train/loss", "train/lr", "train/pos_sim", "train/neg_sim", "val/loss"}
    assert expected <= scalars
    assert "val/view_pairs" in images
    loss = [e.value for e in acc.Scalars("train/loss")]
    assert np.mean(loss[-4:]) < np.mean(loss[:4])
    lr = [e.value for e in acc.Scalars("train/lr")]
    assert lr[0] == pytest.approx(3e-3, rel=1e-3) and lr[-1] < lr[0] / 2  # cosine decays


def test_autoencoder_tensorboard_and_loss(sky: np.ndarray, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ae = dict(AE, lr=1e-2, warmup_fraction=0.0)
    res = fit_model(sky, ae, _trainer(max_epochs=5), tmp_path, logger_cfg=TB, loader=LOADER)
    acc = EventAccumulator(res.log_dir, size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    assert {"train/loss", "val/loss", "train/lr"} <= set(acc.Tags()["scalars"])
    assert "val/reconstructions" in acc.Tags()["images"]
    assert len(acc.Images("val/reconstructions")) == 5  # one grid per epoch
    loss = [e.value for e in acc.Scalars("train/loss")]
    assert np.mean(loss[-3:]) < np.mean(loss[:3])


@pytest.mark.parametrize("model_cfg", [SIMCLR, AE], ids=["simclr", "autoencoder"])
def test_checkpoint_roundtrip_same_features(sky: np.ndarray, model_cfg: dict, tmp_path) -> None:
    res = fit_model(sky, model_cfg, _trainer(max_epochs=1), tmp_path, loader=LOADER)
    assert Path(res.best_ckpt).is_file() and Path(res.last_ckpt).is_file()
    enc, info = load_encoder(res.last_ckpt)
    assert info["image_size"] == S and info["global_step"] == res.global_step
    x = torch.from_numpy(sky[:5]).permute(0, 3, 1, 2).float() / 255
    mem = res.model.eval()
    with torch.no_grad():
        a, b = mem.encode(x), enc.encode(x)
    assert b.shape == (5, info["feature_dim"])
    assert torch.equal(a, b)


def test_load_encoder_rejects_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_encoder(tmp_path / "nope.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="not a checkpoint of an aurora"):
        load_encoder(tmp_path / "other.ckpt")


class _StopAfterFirstEpoch(pl.Callback):
    """Simulates a run killed after its first epoch (same schedule as the full run)."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.should_stop = True


def test_resume_is_exact(sky: np.ndarray, tmp_path: Path) -> None:
    kw = {"loader": LOADER, "seed": 5}
    two = _trainer(max_epochs=2, deterministic=True)
    straight = fit_model(sky, SIMCLR, two, tmp_path / "a", **kw)
    first = fit_model(sky, SIMCLR, two, tmp_path / "b", callbacks=[_StopAfterFirstEpoch()], **kw)
    resumed = fit_model(sky, SIMCLR, two, tmp_path / "c", ckpt_path=first.last_ckpt, **kw)
    assert first.global_step == 2 and resumed.global_step == straight.global_step == 4
    sa, sr = straight.model.state_dict(), resumed.model.state_dict()
    assert sa.keys() == sr.keys()
    for k in sa:
        assert torch.equal(sa[k], sr[k]), k
    # And a different seed really trains differently.
    other = fit_model(
        sky,
        SIMCLR,
        _trainer(max_epochs=1, deterministic=True),
        tmp_path / "d",
        loader=LOADER,
        seed=6,
    )
    w = "backbone.conv1.0.weight"
    assert not torch.equal(other.model.state_dict()[w], first.model.state_dict()[w])


@pytest.mark.parametrize("trainer", ["cpu", "gpu", "ddp"])
def test_config_groups_compose(trainer: str) -> None:
    cfg = compose_cfg("train", [f"trainer={trainer}", "model=autoencoder", "logger=none"])
    assert cfg.trainer._target_ == "aurora.training.trainer.make_trainer"
    assert cfg.model._target_ == "aurora.models.AutoEncoder"
    if trainer != "cpu":
        assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.channels_last


def test_hydra_config_trains(sky: np.ndarray, tmp_path: Path) -> None:
    """The YAML groups as train.py composes them, run through fit_model."""
    cfg = compose_cfg(
        "train",
        [
            "model=simclr",
            "model.backbone=test_resnet",
            "trainer=cpu",
            "+trainer.fast_dev_run=true",
            "+trainer.enable_progress_bar=false",
            "logger=none",
        ],
    )
    loader = LoaderConfig(**OmegaConf.to_container(cfg.train.loader))
    loader = LoaderConfig(batch_size=8, num_workers=0, val_fraction=loader.val_fraction)
    res = fit_model(sky, cfg.model, cfg.trainer, tmp_path, logger_cfg=cfg.logger, loader=loader)
    assert res.global_step == 1
    # The YAML's augmentation reaches the model (colour jitter on by default, BENCHMARKS.md).
    assert res.model.hparams.augment["gray_p"] == cfg.model.augment.gray_p == 0.5
    assert res.model.hparams.augment["channel_p"] == 0.8


def test_train_end_to_end(tmp_path: Path, monkeypatch) -> None:
    """train(cfg) on the synthetic data set, generated and preprocessed as cluster.py does."""
    from aurora.run.train import train

    monkeypatch.setenv("AURORA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AURORA_CACHE_DIR", str(tmp_path / "cache"))
    cfg = compose_cfg(
        "train",
        [
            "data=synth",
            "data.synth.n=24",
            "data.synth.size=96",
            "model=autoencoder",
            "model.depth=2",
            "model.width=8",
            "preprocess.size=32",
            "trainer=cpu",
            "+trainer.fast_dev_run=true",
            "+trainer.enable_progress_bar=false",
            "logger=none",
            "train.loader.batch_size=8",
            "train.loader.num_workers=0",
            "jobs=1",
            f"out_dir={tmp_path / 'run'}",
        ],
    )
    res = train(cfg)
    assert res.global_step == 1


def test_a_trainer_lightning_cannot_build_is_one_settings_line(tmp_path: Path) -> None:
    """accelerator=gpu on a machine without one: a SettingsError naming ``trainer``, not a
    Lightning traceback."""
    import torch

    from aurora.infra.errors import SettingsError
    from aurora.training.trainer import make_trainer

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SettingsError, match=r"^trainer=.*'accelerator': 'gpu'.*cannot work"):
        make_trainer(tmp_path, accelerator="gpu", devices=1)
