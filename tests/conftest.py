"""Suite-wide settings: tiny networks run fastest (and most repeatably) on one thread."""

from __future__ import annotations

import os

import pytest

# No test may reach for a model hub: offline is the environment these tests promise to pass in.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def _single_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)


def tiny_cpu_trainer() -> dict:
    """A quiet one-epoch CPU ``trainer`` config for tests that need a real checkpoint."""
    return {
        "_target_": "aurora.training.make_trainer",
        "accelerator": "cpu",
        "precision": "32-true",
        "max_epochs": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
