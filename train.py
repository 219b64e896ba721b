"""Train a feature extractor: python train.py model=simclr|autoencoder data.root=DIR trainer=gpu."""

import sys

import hydra
from omegaconf import DictConfig

from aurora.infra.guard import run_guarded
from aurora.run.train import train


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Hydra entry point; the work happens in :func:`aurora.run.train.train`."""
    code = run_guarded(train, cfg)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
