"""Hydra callback that ranks and fuses a ``cluster.py -m`` sweep once all its jobs are done."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("aurora")


class FinalizeSweep(Callback):
    """On the end of a multirun: collect every cell, rank, fuse, report (in the sweep folder).

    Single runs are left alone: :func:`aurora.pipeline.main` finalises them itself.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Finalise the sweep whose folder is ``config.hydra.sweep.dir``."""
        from aurora.pipeline import finalize_sweep

        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            log.warning("sweep folder %s not found; nothing to finalise", sweep_dir)
            return
        finalize_sweep(config, sweep_dir)
