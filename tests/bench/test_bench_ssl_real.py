"""bench/bench_ssl_real.py: its figures on features whose answers are known."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

BENCH = ROOT / "bench"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        import bench_ssl_real

        yield bench_ssl_real
    finally:
        sys.path.remove(str(BENCH))


def _day(n_per: int = 40):
    """Four classes, each in its own hours (two even, two odd hours per class); (truth, hour)."""
    rng = np.random.default_rng(0)
    truth = np.repeat(np.array(["arc", "drapery", "radial", "spot"], dtype=object), 4 * n_per)
    hour = np.concatenate([np.repeat(np.arange(4) + 4 * c, n_per) for c in range(4)])
    hour = hour + rng.uniform(0, 0.9, len(hour))
    return truth, hour


def test_class_features_score_one_and_brightness_is_found(bench) -> None:
    truth, hour = _day()
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 16)) * 10
    codes = np.searchsorted(["arc", "drapery", "radial", "spot"], truth.astype(str))
    bright = rng.uniform(0.1, 0.9, len(truth))
    feats = centres[codes] + rng.normal(size=(len(truth), 16)) * 0.1
    feats = np.c_[feats, bright]  # one feature carries the brightness, exactly
    train, test = np.floor(hour) % 2 == 0, np.floor(hour) % 2 == 1
    row = bench.score("x", feats, truth, {"brightness": bright, "hour": hour}, (train, test), 0)
    assert row["kmeans4_ami"] == pytest.approx(1.0)
    assert row["knn"] == 1.0 and row["knn_ami"] == pytest.approx(1.0)
    assert row["probe"] == 1.0 and row["probe_ami"] == pytest.approx(1.0)
    assert row["r2_brightness"] > 0.99
    noise = rng.normal(size=feats.shape)
    blind = bench.score("n", noise, truth, {"brightness": bright, "hour": hour}, (train, test), 0)
    assert blind["kmeans4_ami"] < 0.05 and blind["r2_brightness"] < 0.1


def test_the_recipe_is_what_train_py_composes(bench, tmp_path: Path) -> None:
    over = bench.train_overrides("/data/day", Path("/w/mnv2.safetensors"), tmp_path)
    cfg = bench.compose_train([*over, "trainer.max_epochs=2"])
    assert cfg.model.backbone == "mobilenetv2_100" and cfg.model.freeze_bn is True
    assert cfg.model.pretrained_file == "/w/mnv2.safetensors"
    assert cfg.preprocess.size == bench.TRAIN_SIZE and cfg.trainer.max_epochs == 2
    assert cfg.out_dir == str(tmp_path / "train") and cfg.data.root == "/data/day"


def test_the_cluster_run_reads_the_checkpoint_at_the_chosen_size(bench, tmp_path: Path) -> None:
    from conftest import compose_cfg

    ckpt = tmp_path / "last.ckpt"
    cfg = compose_cfg("cluster", bench.cluster_overrides(ckpt, 224))
    node = cfg.extractors.simclr
    assert list(cfg.grid.extractors) == ["simclr"]
    assert node.ckpt_path == str(ckpt) and node.input_size == 224
    assert node.preprocess == "minimal" and node.dihedral is False
    assert list(cfg.grid.reducers) == ["pca", "umap"]  # experiment=real's grid
