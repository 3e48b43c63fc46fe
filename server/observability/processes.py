"""The memory of the processes beside the server: the policy compiler's fork server and
workers (server/bundle/worker.py), up to two of them each allowed its memory budget. A
pod's memory is all of them, and ``process_resident_memory_bytes`` counts only the server,
so these are what a memory panel or a limit must add."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (children, their children, ...), from /proc."""
    parents: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for name in entries:
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: fields follow the last ')'.
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1:
            parents.setdefault(int(fields[1]), []).append(int(name))
    out: list[int] = []
    todo = list(parents.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


def resident_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


class ChildProcesses(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        pids = descendants(os.getpid())
        yield GaugeMetricFamily(
            "ringfence_child_processes",
            "Processes started by the server (the policy compiler's fork server and workers)",
            value=len(pids),
        )
        yield GaugeMetricFamily(
            "ringfence_child_processes_resident_memory_bytes",
            "Resident memory of the server's child processes, added up",
            value=sum(resident_bytes(pid) for pid in pids),
        )
