"""How many CPUs the server may use: its affinity, capped by a container's CPU quota, so
worker pools are sized for the pod and not for the node."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server.host import usable_cpus

AFFINITY = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("v2", "v1", "expected"),
    [
        (None, None, AFFINITY),  # no cgroup files: the affinity mask
        ("max 100000\n", None, AFFINITY),  # cgroup v2 without a quota
        ("50000 100000\n", None, 1),  # half a CPU is still one
        ("100000 100000\n", None, 1),
        ("150000 100000\n", None, min(AFFINITY, 2)),  # 1.5 CPUs round up
        ("6400000 100000\n", None, AFFINITY),  # a quota above the mask: the mask
        ("garbage\n", None, AFFINITY),
        ("0 100000\n", None, AFFINITY),
        (None, ("-1\n", "100000\n"), AFFINITY),  # cgroup v1 without a quota
        (None, ("100000\n", "100000\n"), 1),  # cgroup v1 with one CPU
        (None, ("100000\n", "0\n"), AFFINITY),
    ],
)
def test_usable_cpus(
    tmp_path: Path, v2: str | None, v1: tuple[str, str] | None, expected: int
) -> None:
    v2_file = tmp_path / "cpu.max"
    v1_files = (tmp_path / "cpu.cfs_quota_us", tmp_path / "cpu.cfs_period_us")
    if v2 is not None:
        v2_file.write_text(v2)
    if v1 is not None:
        for path, text in zip(v1_files, v1, strict=True):
            path.write_text(text)
    assert usable_cpus(v2_file, v1_files) == expected


def test_this_machine_has_at_least_one() -> None:
    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)
