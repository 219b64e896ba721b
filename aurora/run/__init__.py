"""The orchestrator: the one package that reads a composed config (``cluster`` or ``train``).
Nothing of aurora imports it; :mod:`.train` is the recipe of ``train.py``.

``cluster.py`` -> :func:`aurora.run.cli.main` -> :func:`run_cluster` (whole grid, one process),
:func:`run_sweep_job` (one cell per job of a ``-m`` sweep, finalised by
:class:`~aurora.run.sweep.FinalizeSweep`) or :func:`run_apply` (``mode=apply``).

Modules, in the order a run goes through them: :mod:`.settings` (the config read once into
frozen settings), :mod:`.stores` (preprocessed images per variant and size), :mod:`.features`
(extraction, training our encoders first), :mod:`.context` (images, features, references and
truth of a run, built once; the labelled references in :mod:`.references`), :mod:`.grid` (the
cells), :mod:`.finalize` (ranking, fusion, outputs, run record), :mod:`.main` and
:mod:`.sweep` (the entry points). Every stage reads and writes the on-disk cache, so a second
run, or a sweep over reducers and clusterers, never decodes an image or runs a network again.
"""

from aurora.run.context import RunContext, load_context
from aurora.run.features import ExtractedFeatures, extract_all, train_encoder_cached
from aurora.run.finalize import external_summary, finalize, fuse
from aurora.run.grid import record_failure, run_grid
from aurora.run.main import run_apply, run_cluster
from aurora.run.references import extract_references
from aurora.run.settings import RunSettings
from aurora.run.start import start_run
from aurora.run.stores import ImageRows, StoreSet
from aurora.run.sweep import FinalizeSweep, finalize_sweep, run_sweep_cell, run_sweep_job

__all__ = [
    "ExtractedFeatures",
    "FinalizeSweep",
    "ImageRows",
    "RunContext",
    "RunSettings",
    "StoreSet",
    "external_summary",
    "extract_all",
    "extract_references",
    "finalize",
    "finalize_sweep",
    "fuse",
    "load_context",
    "record_failure",
    "run_apply",
    "run_cluster",
    "run_grid",
    "run_sweep_cell",
    "run_sweep_job",
    "start_run",
    "train_encoder_cached",
]
