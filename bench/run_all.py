"""Run every benchmark in turn and print their reports (``make bench``).

Each benchmark measures its own baseline in the same run and prints ratios; copy the
output into docs/benchmarks.md with the date when the figures change.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES: tuple[tuple[str, list[str]], ...] = (
    ("echo_ratio.py", []),
    ("batch_stream.py", []),
    ("state_ratio.py", []),
    ("tracing_cost.py", []),
    ("eval_ratio.py", []),
    ("replay_bench.py", []),
    ("reload_latency.py", []),
    ("isolation_latency.py", []),
    ("hostile_policies.py", []),
    ("idle_streams.py", []),
    ("state_bench.py", []),
    ("cluster_bench.py", []),
    ("claims_cost.py", []),
    ("tracing_floor.py", []),
    ("state_memory_micro.py", []),
    ("lists_bench.py", []),
    ("lists_bench.py", ["--networks"]),
    ("ip_facts.py", []),
    ("numeric_aggregates.py", []),
    ("memory_bench.py", []),
    ("list_memory.py", []),
    ("lsp_latency.py", []),
)


def main() -> int:
    print(f"# make bench, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    failed = []
    for script, args in BENCHES:
        print(f"\n## {script}", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / script), *args])
        if rc:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
