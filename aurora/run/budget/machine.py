"""What this machine or job allows a run: the cgroup's or SLURM's memory limit, the memory
available now, the free disk, or the ``budget.*`` settings when given (:func:`machine_budget`)."""

from __future__ import annotations

from pathlib import Path

from aurora.infra.errors import free_bytes
from aurora.infra.machine import available_memory, cgroup_memory_limit, slurm_memory
from aurora.run.budget.model import GB, Budget
from aurora.run.settings import BudgetSettings


def machine_budget(budget: BudgetSettings, cache_dir: str | Path) -> Budget:
    """The budget of a run: the settings where given, else what this machine or job has.

    Memory: ``budget.memory_gb``, else the cgroup's limit (:func:`cgroup_memory_limit`), else
    ``SLURM_MEM_PER_NODE``, else the memory available now. Disk: ``budget.disk_gb``, else the
    free space of the file system holding ``cache_dir`` (unknown: not limited).
    """
    if budget.memory_gb is not None:
        memory, msrc = int(budget.memory_gb * GB), "budget.memory_gb"
    elif (limit := cgroup_memory_limit()) is not None:
        memory, msrc = limit, "cgroup memory.max"
    elif (slurm := slurm_memory()) is not None:
        memory, msrc = slurm, "SLURM_MEM_PER_NODE"
    else:
        memory, msrc = available_memory(), "available memory"
    if budget.disk_gb is not None:
        disk, dsrc = int(budget.disk_gb * GB), "budget.disk_gb"
    else:
        free = free_bytes(cache_dir)
        disk = free if free is not None else 2**62
        dsrc = f"free space of {cache_dir}" if free is not None else "unknown free space"
    return Budget(memory, disk, msrc, dsrc)
