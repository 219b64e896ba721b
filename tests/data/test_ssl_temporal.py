"""Temporal positive pairs (``train.loader.temporal_pair``): two frames a few rows apart as the two
views of SimCLR; off by default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_cfg

from aurora.data.datamodule import LoaderConfig, SkyDataModule, TemporalPairDataset
from aurora.infra.errors import SettingsError
from aurora.models.simclr import SimCLR
from aurora.run.checks import check_training
from aurora.run.train import train
from aurora.training.fit import fit_model


def _frames(n: int, size: int = 8) -> np.ndarray:
    """(n, size, size, 3) uint8 whose every pixel of row i holds i (rows are recognisable)."""
    return np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, size, size, 3))


def test_pairs_are_within_k_rows_and_inside_the_dataset() -> None:
    torch.manual_seed(0)
    rows = np.array([0, 1, 2, 5, 6, 9, 20, 21])
    ds = TemporalPairDataset(_frames(30), rows, k=3)
    seen: dict[int, set[int]] = {}
    for _ in range(60):
        for i in range(len(ds)):
            a, b = (int(round(v.item() * 255)) for v in ds[i][:, 0, 0, 0])
            assert a == rows[i]
            seen.setdefault(a, set()).add(b)
    for a, partners in seen.items():
        # Every selected row within 3 of a, other than a, and nothing else (a alone if none).
        expected = {int(r) for r in rows if 0 < abs(int(r) - a) <= 3} or {a}
        assert partners == expected, a


def test_the_loader_gives_pairs_only_when_asked() -> None:
    images = np.ascontiguousarray(_frames(24))
    plain = SkyDataModule(images, LoaderConfig(batch_size=4, num_workers=0), seed=1)
    assert next(iter(plain.train_dataloader())).shape == (4, 3, 8, 8)
    paired = SkyDataModule(
        images, LoaderConfig(batch_size=4, num_workers=0, temporal_pair=2), seed=1
    )
    batch = next(iter(paired.train_dataloader()))
    assert batch.shape == (4, 2, 3, 8, 8)
    gap = (batch[:, 0, 0, 0, 0] - batch[:, 1, 0, 0, 0]).abs() * 255
    assert bool(((gap > 0.5) & (gap < 2.5)).all())


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\(\)`")
def test_a_pair_of_one_frame_is_the_single_frame_path() -> None:
    model = SimCLR(image_size=32, backbone="resnet18", proj_hidden_dim=16, proj_dim=8)
    model.eval()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        single = model._shared_step(x, "val", 0)
        paired = model._shared_step(torch.stack([x, x], dim=1), "val", 0)
        other = model._shared_step(torch.stack([x, x.flip(0)], dim=1), "val", 0)
    assert torch.allclose(single, paired)
    assert not torch.allclose(single, other)


def test_bad_or_unusable_temporal_pair_is_one_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="train.loader.temporal_pair"):
        check_training({"batch_size": 4, "temporal_pair": -1}, {"max_epochs": 1})
    model_cfg = {"_target_": "aurora.models.AutoEncoder"}
    with pytest.raises(SettingsError, match="train.loader.temporal_pair=2 cannot work"):
        fit_model(
            np.ascontiguousarray(_frames(16, 32)),
            model_cfg,
            {"_target_": "aurora.training.trainer.make_trainer", "max_epochs": 1},
            tmp_path,
            loader=LoaderConfig(batch_size=4, num_workers=0, temporal_pair=2),
        )


def test_train_py_trains_simclr_on_temporal_pairs(
    tiny_sky: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    cfg = compose_cfg(
        "train",
        [
            "debug=tiny_train",
            f"paths.cache_dir={tiny_cache}",
            "data=folder",
            f"data.root={tiny_sky}",
            "model=simclr",
            "model.backbone=resnet18",
            "model.proj_hidden_dim=16",
            "model.proj_dim=8",
            "train.loader.temporal_pair=3",
            f"out_dir={tmp_path / 'run'}",
        ],
    )
    result = train(cfg)
    assert result.epochs == 1 and Path(result.last_ckpt).is_file()
    assert np.isfinite(result.metrics["train/loss"])
