"""What this process may use of the machine it runs on.

``os.cpu_count()`` is the node's cores; a pod limited to two CPUs on a 64-core node, or a
process pinned to some cores, may use far fewer, and sizing worker pools by the node's
count starves the server of the cores it needs to answer calls.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

# cgroup v2 and v1 files holding the CPU quota (a container's `resources.limits.cpu`).
_CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1 = (
    Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
    Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
)


def usable_cpus(cgroup_v2: Path = _CGROUP_V2, cgroup_v1: tuple[Path, Path] = _CGROUP_V1) -> int:
    """CPUs this process may run on: its affinity mask, capped by its cgroup's quota
    (rounded up: 1.5 CPUs is 2). At least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup_v2, cgroup_v1)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def _cgroup_quota(v2: Path, v1: tuple[Path, Path]) -> float | None:
    """The cgroup's CPU quota in CPUs, or None when there is none (or it cannot be read)."""
    try:
        quota, _, period = v2.read_text().partition(" ")
    except OSError:
        try:
            quota, period = (p.read_text() for p in v1)
        except OSError:
            return None
    quota, period = quota.strip(), period.strip()
    if not quota.isdigit() or not period.isdigit():  # "max" (v2) or "-1" (v1): no quota
        return None
    q, p = int(quota), int(period)
    return q / p if q > 0 and p > 0 else None
