"""The start of every run: its folder marked running (the earlier results moved aside, the paths
the run reads kept in place) and the settings checks that need no data, before any work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig

from aurora.infra.run_folder import begin_run
from aurora.run.checks import check_device
from aurora.run.settings import RunSettings


def config_paths(cfg: DictConfig) -> list[str]:
    """Every string of the config (outside ``hydra``) that can be read: the paths a run reads.

    :func:`aurora.infra.run_folder.begin_run` never moves an earlier output that is or holds one of
    them (a cache, data or checkpoint someone put inside the run folder).
    """
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, DictConfig | ListConfig):
            keys = list(node.keys()) if isinstance(node, DictConfig) else range(len(node))
            for k in keys:
                if k == "hydra":
                    continue
                try:
                    value = node[k]  # resolves interpolations; unset or broken ones are skipped
                except Exception:
                    continue
                walk(value)
        elif isinstance(node, str) and node not in ("", ".", "???"):
            found.append(node)

    walk(cfg)
    return found


def start_run(cfg: DictConfig, run_dir: Path, job_dirs: bool = False) -> None:
    """Mark ``run_dir`` running, moving the earlier results aside (see
    :mod:`aurora.infra.run_folder`)."""
    begin_run(run_dir, keep=config_paths(cfg), job_dirs=job_dirs)


def check_settings(settings: RunSettings) -> None:
    """The settings checks that need no data (names, types, ranges) beyond those of
    :meth:`RunSettings.from_cfg`, and that this machine has the extraction device; before any
    work."""
    check_device(settings.extract.device, here=True)
