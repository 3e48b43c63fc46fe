"""What replay's summary costs per event, as a share of deciding the event.

    .venv/bin/python bench/replay_summary_cost.py [--users 20000]

The same day as bench/replay_bench.py: every event decided once (the baseline, summary
included), then the recorded decisions fed again to Summary.add and to Diff.add (the
``--against`` comparison, here of equal decisions: the common case), best of 5.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, machine
from bench.traffic import generate
from dsl.decision import Decision
from server.bundle.registry import TenantRegistry
from server.phone import PhoneParser
from server.tools.replay import Replayer, parse_line
from server.tools.summary import Diff, Summary


def best(fn: Callable[[], object], rounds: int = 5) -> float:
    out = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - t0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=20_000)
    ns = ap.parse_args()
    parser = PhoneParser()
    registry = TenantRegistry(REPO / "rules", parser)
    assert registry.load_sync(["demo"])[0].ok
    bundle = registry.get("demo")
    assert bundle is not None
    day = generate(seed=11, users=ns.users)
    events = [parse_line(e, i, parser, "demo") for i, e in enumerate(day, 1)]
    replayer = Replayer(bundle)

    async def decide_all() -> list[Decision]:
        return [await replayer.decide(ev) for ev in events]

    t0 = time.perf_counter()
    decisions = asyncio.run(decide_all())
    t_decide = time.perf_counter() - t0
    pairs = list(zip(events, decisions, strict=True))

    def summary() -> None:
        s = Summary.for_policy(bundle.policy)
        for ev, d in pairs:
            s.add(ev, d)

    def diff() -> None:
        x = Diff()
        for ev, d in pairs:
            x.add(ev, d, d)

    n = len(events)
    per = {name: best(fn) / n * 1e6 for name, fn in (("Summary.add", summary), ("Diff.add", diff))}
    decide_us = t_decide / n * 1e6
    print(f"# replay summary cost ({machine()}), {n} events")
    print(f"decide (baseline, summary included): {decide_us:6.1f} us/event")
    for name, us in per.items():
        print(f"{name:<12}: {us:6.2f} us/event = {us / decide_us:.1%} of deciding")
    return 0


if __name__ == "__main__":
    sys.exit(main())
