"""Train a feature extractor: python train.py model=simclr|autoencoder data.root=DIR trainer=gpu."""

import hydra
from omegaconf import DictConfig


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from aurora.training import train

    train(cfg)


if __name__ == "__main__":
    main()
