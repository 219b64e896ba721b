"""What this machine or job has: the cgroup's memory limit, the SLURM job's memory and the memory
available now (read by the run's budget and by a solution's limits)."""

from __future__ import annotations

import os
from pathlib import Path

_MB = 2**20


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
    return int(value) * _MB if value.isdigit() and int(value) > 0 else None


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
