"""What this machine or job allows a run: the cgroup's or SLURM's memory limit, the memory
available now, the free disk, or the ``budget.*`` settings when given (:func:`machine_budget`)."""

from __future__ import annotations

import os
from pathlib import Path

from aurora.infra.errors import free_bytes
from aurora.run.budget.model import GB, MB, Budget
from aurora.run.settings import BudgetSettings


def _read_int(path: Path) -> int | None:
    """An integer limit from a cgroup file, or None (absent, unreadable, ``max``, unlimited)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text.isdigit():
        return None  # "max": no limit
    value = int(text)
    return value if value < 2**60 else None  # cgroup v1 writes ~2**63 for no limit


def cgroup_memory_limit(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """This process's cgroup memory limit in bytes (v2 ``memory.max``, v1
    ``memory.limit_in_bytes``), or None when there is none."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    candidates: list[Path] = []
    for line in lines:
        _, controllers, rel = line.split(":", 2)
        rel = rel.lstrip("/")
        if controllers == "":
            candidates += [root / rel / "memory.max", root / "memory.max"]
        elif "memory" in controllers.split(","):
            mem = root / "memory"
            candidates += [mem / rel / "memory.limit_in_bytes", mem / "memory.limit_in_bytes"]
    limits = [v for v in (_read_int(p) for p in candidates) if v is not None]
    return min(limits) if limits else None


def slurm_memory() -> int | None:
    """The SLURM job's memory per node (``SLURM_MEM_PER_NODE``, in MB = 2**20 bytes), or None."""
    value = os.environ.get("SLURM_MEM_PER_NODE", "").strip()
    return int(value) * MB if value.isdigit() and int(value) > 0 else None


def available_memory() -> int:
    """Memory available now (``MemAvailable`` of /proc/meminfo; psutil's figure when installed)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


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
