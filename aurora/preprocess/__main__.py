"""Command line: ``python -m aurora.preprocess show IMAGES... --out grid.png``."""

from __future__ import annotations

import argparse
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from aurora.preprocess.config import PreprocessConfig
from aurora.preprocess.figure import show

#: The chain the figure shows unless ``--config`` names another YAML file.
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "conf" / "preprocess" / "full.yaml"


def _load_cfg(path: str | None, overrides: list[str]) -> PreprocessConfig:
    """The chain settings of a YAML file (default :data:`DEFAULT_CONFIG`) with ``key=value``
    overrides."""
    if path is None:
        path = str(DEFAULT_CONFIG)
    conf = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(overrides))
    return instantiate(conf)


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m aurora.preprocess show IMAGES... --out grid.png``."""
    parser = argparse.ArgumentParser(prog="python -m aurora.preprocess")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser(
        "show", help="originals beside preprocessed versions, circle and Moon marked"
    )
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=Path("preprocess_grid.png"))
    p.add_argument("--config", default=None, help="YAML file (default conf/preprocess/full.yaml)")
    p.add_argument("--set", action="append", default=[], help="override, e.g. --set moon=keep")
    args = parser.parse_args(argv)
    show(args.images, args.out, _load_cfg(args.config, args.set))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
