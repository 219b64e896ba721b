"""Suite-wide settings, the shared fixtures and the small helpers of every test folder.

The tests mirror the packages (``tests/<package>/``; whole runs in ``tests/e2e/``, the benchmark
scripts in ``tests/bench/``). This file stays at the top of ``tests/``: its fixtures reach every
folder, and pytest puts ``tests/`` on ``sys.path`` when it loads it, so ``from conftest import
compose_cfg`` works from any folder (test file names are unique, so no folder needs an
``__init__.py``).

Torch runs on one thread (tiny networks run fastest and most repeatably so) and no test may
reach for a model hub. The end-to-end tests share one tiny synthetic sky and one cache per
session, so the tiny autoencoder is trained once, not once per test:

- :func:`tiny_sky`: 24 synthetic frames (64 px, seed 3) and their ``labels.csv``; read only
  (a test that damages data copies it first).
- :func:`tiny_cache`: the session's cache folder (preprocessed stores, trained encoder,
  features); a test that needs a cold cache uses its own ``tmp_path``.
- :func:`tiny_overrides`: ``debug=tiny`` (conf/debug/tiny.yaml) on that sky and cache.
- :func:`cfg_cluster`, :func:`cfg_train`: those compositions of ``cluster`` and ``train``,
  a fresh copy for each test; :func:`compose_cfg` composes with other overrides (groups).
- :func:`blobs`: three separated blobs (90, 12) for the reducer and clusterer tests.

Helpers (imported by name): :data:`ROOT` and :data:`CONF`, :data:`TINY_GRID` (``debug=tiny``
and a small grid), :func:`compose_cfg`, :func:`tiny_cpu_trainer` and :func:`tiny_simclr` (the
``trainer`` and ``model`` nodes of a tiny CPU training), :func:`array_digest` (a result's bytes
to compare with one recorded before a redesign).
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

# No test may reach for a model hub: offline is the environment these tests promise to pass in.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: The repository (cluster.py, train.py, conf/, bench/) and its Hydra configs.
ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

#: ``debug=tiny`` (conf/debug/tiny.yaml) and a small grid on it: two reducers, two clusterers,
#: two k, and a fusion that can group 24 images.
TINY_GRID = [
    "debug=tiny",
    "grid.reducers=[pca,none]",
    "grid.clusterers=[kmeans,agglomerative]",
    "grid.n_clusters=[3,4]",
    "fusion.n_partitions=3",
    "fusion.min_cluster_size=2",
]


@pytest.fixture(autouse=True, scope="session")
def _single_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)


def tiny_cpu_trainer(**changes: object) -> dict:
    """A quiet one-epoch CPU ``trainer`` node for tests that need a real checkpoint, with
    ``changes`` (Lightning ``Trainer`` arguments) on top."""
    return {
        "_target_": "aurora.training.trainer.make_trainer",
        "accelerator": "cpu",
        "precision": "32-true",
        "max_epochs": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        **changes,
    }


def tiny_simclr(**changes: object) -> dict:
    """The ``model`` node of a tiny SimCLR (timm's ``test_resnet`` backbone, a small projection
    head, no warm-up), with ``changes`` on top."""
    return {
        "_target_": "aurora.models.SimCLR",
        "backbone": "test_resnet",
        "proj_hidden_dim": 32,
        "proj_dim": 16,
        "warmup_fraction": 0.0,
        **changes,
    }


def array_digest(*arrays: object) -> str:
    """16 hex digits of the SHA-256 of the arrays' dtypes, shapes and bytes: a result to compare
    with one recorded before a redesign."""
    h = hashlib.sha256()
    for a in arrays:
        arr = np.asarray(a)
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def compose_cfg(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """The ``config_name`` config (``cluster`` or ``train``) as its script composes it."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """Three well separated blobs: features (90, 12) and their blob (90,)."""
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=90, centers=3, n_features=12, cluster_std=0.5, random_state=0)
    return X, y


@pytest.fixture(scope="session")
def tiny_sky(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 synthetic frames of 64 px (seed 3) with their ``labels.csv``, shared by the session."""
    from aurora.data.synth import generate

    root = tmp_path_factory.mktemp("tiny_sky")
    generate(root, n=24, seed=3, size=64, jobs=1)
    return root


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's cache folder: what one test preprocesses or trains, the next reuses."""
    return tmp_path_factory.mktemp("tiny_cache")


@pytest.fixture(scope="session")
def tiny_overrides(tiny_sky: Path, tiny_cache: Path) -> list[str]:
    """``cluster.py`` overrides of a tiny run on the session's sky and cache."""
    return ["debug=tiny", "data=folder", f"data.root={tiny_sky}", f"paths.cache_dir={tiny_cache}"]


@pytest.fixture(scope="session")
def tiny_train_overrides(tiny_sky: Path, tiny_cache: Path) -> list[str]:
    """``train.py`` overrides of a tiny autoencoder on the session's sky and cache (the model
    of ``debug=tiny``)."""
    return [
        "debug=tiny_train",
        "data=folder",
        f"data.root={tiny_sky}",
        f"paths.cache_dir={tiny_cache}",
        "model=autoencoder",
        "model.depth=2",
        "model.width=4",
        "model.latent_dim=16",
    ]


@pytest.fixture(scope="session")
def _cfg_cluster(tiny_overrides: list[str]) -> DictConfig:
    return compose_cfg("cluster", tiny_overrides)


@pytest.fixture(scope="session")
def _cfg_train(tiny_train_overrides: list[str]) -> DictConfig:
    return compose_cfg("train", tiny_train_overrides)


@pytest.fixture
def cfg_cluster(_cfg_cluster: DictConfig) -> DictConfig:
    """The ``cluster`` config of ``tiny_overrides`` (this test's own copy)."""
    return copy.deepcopy(_cfg_cluster)


@pytest.fixture
def cfg_train(_cfg_train: DictConfig, tmp_path: Path) -> DictConfig:
    """The ``train`` config of ``tiny_train_overrides``, writing into ``tmp_path / "train"``
    (this test's own copy)."""
    cfg = copy.deepcopy(_cfg_train)
    cfg.out_dir = str(tmp_path / "train")
    return cfg
