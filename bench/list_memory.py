"""Resident memory of a real ``ringfence serve`` against the size of its lists: at steady
state, at its peak while starting, and at its peak during a hot reload of the list; all of
the pod's processes counted (the server, the policy compiler's fork server and workers,
the short-lived process that parses a big list), as a container's memory limit counts them.

    .venv/bin/python bench/list_memory.py [--entries 250000 1000000]

The baseline, measured in the same run, is the same server with the demo policy's own small
list; per-entry figures are (RSS with N entries - baseline RSS) / N. Peaks are the largest
sum of the processes' RSS sampled every 10 ms: while starting, and during one reload after
one list line changed (SIGHUP), when the old lists stay live while the new ones are built.
These are the figures behind "Memory sizing" in docs/operations.md.
"""

from __future__ import annotations

import argparse
import json
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import BIN, REPO, machine
from bench.lists_bench import generate
from server.observability.processes import descendants, resident_bytes

LIST = Path("demo/lists/privacy_numbers.csv")
MIB = 1 << 20


@dataclass(frozen=True)
class Sample:
    entries: int
    start_s: float
    steady: int
    start_peak: int
    reload_peak: int
    after_reload: int


def tree_rss(pid: int) -> int:
    """RSS of ``pid`` and every process below it, added up."""
    return sum(resident_bytes(p) for p in (pid, *descendants(pid)))


class Peak:
    """The largest tree RSS seen, sampled every 10 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.value = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.value = max(self.value, tree_rss(self.pid))
            time.sleep(0.01)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.value


def wait_for(proc: subprocess.Popen[bytes], msg: str, timeout: float = 300) -> dict[str, object]:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 1.0)
        if not ready:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            continue
        line = proc.stderr.readline()
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("msg") == msg:
            return doc  # type: ignore[no-any-return]
    raise TimeoutError(f"no {msg!r} log line within {timeout} s")


def measure(rules: Path, entries: int) -> Sample:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [
            str(BIN / "ringfence"),
            "serve",
            "--rules",
            str(rules),
            "--listen",
            "127.0.0.1:0",
            "--watch",
            "false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    start_peak = Peak(proc.pid)
    try:
        wait_for(proc, "policy loaded")
        start_s = time.perf_counter() - t0
        time.sleep(1.0)  # let the allocator settle
        start = start_peak.stop()
        steady = tree_rss(proc.pid)
        reload_peak = Peak(proc.pid)
        with (rules / LIST).open("a", encoding="utf-8") as fh:
            fh.write("+8619999999999,risk1,ops,2026-01-01,\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(proc, "policy loaded")
        time.sleep(1.0)
        reloaded = reload_peak.stop()
        after = tree_rss(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    return Sample(
        entries=entries,
        start_s=start_s,
        steady=steady,
        start_peak=start,
        reload_peak=reloaded,
        after_reload=after,
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, nargs="+", default=[250_000, 1_000_000])
    ns = ap.parse_args()
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (0, *ns.entries):
            rules = Path(tmp) / f"rules-{n}"
            shutil.copytree(REPO / "rules", rules)
            if n:
                generate(rules / LIST, n)
            samples.append(measure(rules, n))
            shutil.rmtree(rules)
    base = samples[0]
    print(f"# pod RSS (server and its processes) against list size ({machine()})")
    print(
        f"{'entries':>10} {'start s':>8} {'steady MiB':>11} {'start peak':>11} "
        f"{'reload peak':>12} {'after':>8} | per entry: steady  start  reload"
    )
    for s in samples:
        row = (
            f"{s.entries:>10,} {s.start_s:>8.1f} {s.steady / MIB:>11.0f} "
            f"{s.start_peak / MIB:>11.0f} {s.reload_peak / MIB:>12.0f} {s.after_reload / MIB:>8.0f}"
        )
        if s.entries:
            per = [
                (getattr(s, k) - getattr(base, k)) / s.entries
                for k in ("steady", "start_peak", "reload_peak")
            ]
            row += f" | {per[0]:>11.0f} B {per[1]:>5.0f} B {per[2]:>6.0f} B"
        else:
            row += " | baseline (the demo's own list)"
        print(row)
    last = samples[-1]
    print(
        f"reload peak / steady at {last.entries:,} entries: {last.reload_peak / last.steady:.2f}x; "
        f"start peak / steady: {last.start_peak / last.steady:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
