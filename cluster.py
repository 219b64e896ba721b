"""Run the aurora chain: ``python cluster.py`` (whole grid) or ``python cluster.py -m ...``."""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from aurora.run.cli import main as run_main


@hydra.main(config_path="conf", config_name="cluster", version_base="1.3")
def main(cfg: DictConfig) -> int:
    """Hydra entry point; the work happens in :func:`aurora.run.cli.main`."""
    hc = HydraConfig.get()
    code = run_main(cfg, hc.runtime.output_dir, dict(hc.runtime.choices), hc.mode)
    if hc.mode is RunMode.MULTIRUN:
        # A job's SystemExit would end the whole sweep: its failure is recorded in its folder
        # and aurora.run.sweep.FinalizeSweep sets the sweep's exit code at the end.
        return code
    if code:
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
