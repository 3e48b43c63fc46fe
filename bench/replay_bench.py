"""Replay throughput: events/s through the demo policy with a fresh memory state, against
the cost of just reading the same file (json.loads per line) in the same run.

    .venv/bin/python bench/replay_bench.py [--users 20000]

Target (issue 8): >= 50,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, machine
from bench.traffic import generate
from server.bundle.registry import TenantRegistry
from server.phone import PhoneParser
from server.tools.replay import Replayer, read_events


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=20_000)
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        events = generate(seed=11, users=ns.users)
        path.write_text("".join(json.dumps(e) + "\n" for e in events))
        n = len(events)

        t0 = time.perf_counter()
        with path.open() as f:
            for line in f:
                json.loads(line)
        baseline = time.perf_counter() - t0

        parser = PhoneParser()
        registry = TenantRegistry(REPO / "rules", parser)
        assert registry.load_sync(["demo"])[0].ok
        bundle = registry.get("demo")
        assert bundle is not None
        t0 = time.perf_counter()
        errors: list[str] = []
        parsed = read_events(path, parser, "demo", errors)
        t_read = time.perf_counter() - t0
        replayer = Replayer(bundle)

        async def run() -> None:
            for ev in parsed:
                await replayer.decide(ev)

        t1 = time.perf_counter()
        asyncio.run(run())
        t_decide = time.perf_counter() - t1
    total = t_read + t_decide
    print(f"# replay ({machine()}), {n} events, {len(errors)} bad lines")
    print(f"json.loads only : {n / baseline:10,.0f} events/s (baseline)")
    print(f"read + parse    : {n / t_read:10,.0f} events/s")
    print(f"decide          : {n / t_decide:10,.0f} events/s")
    print(
        f"replay end to end: {n / total:10,.0f} events/s = {baseline / total:.2f}x the baseline"
        f" (target >= 50,000/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
