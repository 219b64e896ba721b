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
