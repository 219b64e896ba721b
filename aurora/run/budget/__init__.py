"""Memory and disk of a ``cluster.py`` run, estimated before any work and checked against a budget.

Right after the scan, :func:`plan_budget` estimates the peak resident memory of the process and
the new disk of each stage for this many images, prints and logs them as a table, writes them to
``RUN_DIR/estimates.json`` and, with ``budget.check`` (the default), refuses a run that will not
fit (:class:`BudgetError`, one line naming the stage, the estimate, the budget and the setting to
change) instead of dying hours later. Nothing here builds a network or imports torch: the
figures come from the configuration, the manifest and the cache (a store, encoder or feature
set already in the cache writes nothing).

Modules, each importing only those above it:

- :mod:`~aurora.run.budget.model`: the cost model, its calibrated constants (where each comes
  from), the estimate, budget and refusal types.
- :mod:`~aurora.run.budget.extractors`: each extractor's feature dimension and network size
  (its store: the extractor's plan, :mod:`aurora.run.extractor_plan`); a reducer's output
  dimension.
- :mod:`~aurora.run.budget.grid`: the grid's worst cell and the fusion.
- :mod:`~aurora.run.budget.stages`: every stage of a run, with the cache lookups.
- :mod:`~aurora.run.budget.machine`: what the machine or job allows.
- :mod:`~aurora.run.budget.plan`: the check, the table and the run's budget step.
"""

from aurora.run.budget.extractors import describe_extractor, reduced_dim
from aurora.run.budget.grid import fusion_memory, grid_memory
from aurora.run.budget.machine import machine_budget
from aurora.run.budget.model import ESTIMATES_FILE, STAGES, Budget, BudgetError, StageEstimate
from aurora.run.budget.plan import check_budget, format_estimates, plan_budget
from aurora.run.budget.stages import estimate_stages

__all__ = [
    "ESTIMATES_FILE",
    "STAGES",
    "Budget",
    "BudgetError",
    "StageEstimate",
    "check_budget",
    "describe_extractor",
    "estimate_stages",
    "format_estimates",
    "fusion_memory",
    "grid_memory",
    "machine_budget",
    "plan_budget",
    "reduced_dim",
]
