"""Evaluate and replay, this checkout against an earlier revision, in one run.

    .venv/bin/python bench/before_after.py --before 4d932e5 [--seconds 3] [--rounds 3]

The earlier revision is unpacked (``git archive``) into a temporary folder and run by the
same interpreter with that folder first on ``sys.path``, so both sides share the venv, the
machine and the minute; only the code differs. Both serve the same rules, the earlier
revision's ``rules/`` (which this checkout must still run; its own may use what the
earlier code does not know), and replay the same file. Rounds alternate between the two
sides, so drift on a shared machine hits both alike; each figure is the median of the
rounds, and the ratio (after / before) is what to read.

* Evaluate: ``ringfence serve`` in a child process, pre-serialised requests (bench/echo_ratio.py's
  mix, no event time: each is decided at the server's clock) at 1 and 16 concurrent calls.
* Replay: ``ringfence replay --json`` of bench/traffic.py's day, parsed in line (no workers),
  events/s from the wall time of the whole command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, LoadResult, child, load, machine, wait_serving
from bench.echo_ratio import METHOD, requests
from bench.traffic import generate

_RUN = "import sys; sys.argv[0] = 'ringfence'; from server.cli import main; sys.exit(main())"


def unpack(rev: str, into: Path) -> Path:
    """The revision's dsl/ and server/ (the code) and rules/ (the policy both sides run)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, "dsl", "server", "rules"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def command(*args: str) -> list[str]:
    # -c puts the working directory first on sys.path: run in a code folder, whose packages
    # then win over the editable install of this checkout.
    return [sys.executable, "-c", _RUN, *args]


def evaluate(code: Path, rules: Path, concurrency: int, seconds: float) -> LoadResult:
    argv = command("serve", "--rules", str(rules), "--listen", "127.0.0.1:0")
    with child(argv, cwd=code) as port:
        wait_serving(port)
        return asyncio.run(
            load(
                f"127.0.0.1:{port}", METHOD, requests(), concurrency=concurrency, duration_s=seconds
            )
        )


def replay(code: Path, rules: Path, events: Path, n: int) -> float:
    argv = command("replay", str(events), "--rules", str(rules), "--json")
    t0 = time.perf_counter()
    out = subprocess.run(
        argv,
        cwd=code,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "RINGFENCE_REPLAY_WORKERS": "0"},
    )
    seconds = time.perf_counter() - t0
    assert json.loads(out.stdout)["policy"]["events"] == n
    return n / seconds


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="the earlier revision (a commit or tag)")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--users", type=int, default=5000, help="replay: the traffic day's users")
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        before = unpack(ns.before, Path(tmp) / "before")
        after = REPO
        rules = before / "rules"
        events = Path(tmp) / "day.jsonl"
        day = generate(seed=11, users=ns.users)
        events.write_text("".join(json.dumps(e) + "\n" for e in day))
        print(f"# before/after: {ns.before} vs this checkout; {machine()}")
        rows: list[tuple[str, float, float, str]] = []
        for c in (1, 16):
            runs: dict[str, list[LoadResult]] = {"before": [], "after": []}
            for _ in range(ns.rounds):
                for side, code in (("before", before), ("after", after)):
                    runs[side].append(evaluate(code, rules, c, ns.seconds))
            for what, field in (("calls/s", "rps"), ("p50 ms", "p50_ms"), ("p99 ms", "p99_ms")):
                b = statistics.median(getattr(r, field) for r in runs["before"])
                a = statistics.median(getattr(r, field) for r in runs["after"])
                rows.append((f"Evaluate x{c} {what}", b, a, f"{a / b:.2f}x"))
        rates: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(ns.rounds):
            for side, code in (("before", before), ("after", after)):
                rates[side].append(replay(code, rules, events, len(day)))
        b, a = statistics.median(rates["before"]), statistics.median(rates["after"])
        rows.append((f"replay events/s ({len(day)} events)", b, a, f"{a / b:.2f}x"))
        width = max(len(r[0]) for r in rows)
        print(f"{'':<{width}}  {'before':>10}  {'after':>10}  after/before")
        for label, b, a, ratio in rows:
            print(f"{label:<{width}}  {b:>10.1f}  {a:>10.1f}  {ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
