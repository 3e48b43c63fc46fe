"""Memory per tracked number in the memory state backend, against a plain dict holding one
int per number (the least any per-number counter could cost), in the same run.

    .venv/bin/python bench/memory_bench.py [--numbers 1000000]

Each number sends one SMS-code event through the demo policy's aggregates (per-number
count and distinct apps today, the privacy-list count, the segment run), so every number
owns the keys a real one would.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, machine
from dsl.facts import EventFacts, Facts
from server.bundle.registry import TenantRegistry
from server.phone import PhoneParser
from server.state import MemoryBackend


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--numbers", type=int, default=1_000_000)
    ns = ap.parse_args()
    n = ns.numbers
    parser = PhoneParser()
    registry = TenantRegistry(REPO / "rules", parser)
    assert registry.load_sync(["demo"])[0].ok
    bundle = registry.get("demo")
    assert bundle is not None
    template = parser.parse("+8613800138000")
    now = time.time()

    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    plain = {f"+86138{i:08d}": 1 for i in range(n)}
    plain_bytes = tracemalloc.get_traced_memory()[0] - base
    del plain

    backend = MemoryBackend(hash_key=b"bench", max_keys=10 * n)
    base = tracemalloc.get_traced_memory()[0]
    event = EventFacts(scene="sms_code", app_id="shop", occurred_at=now)
    policy = bundle.policy

    async def run() -> None:
        for i in range(n):
            national = f"138{i:08d}"
            # Same segment facts, a different number each time: no parsing in the loop.
            phone = replace(template, e164=f"+86{national}", national_number=national)
            facts = Facts(tenant="demo", phone=phone, event=event)
            await backend.apply("demo", policy.plan(facts, bundle.lists), now, record=True)

    t0 = time.perf_counter()
    asyncio.run(run())
    elapsed = time.perf_counter() - t0
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    print(f"# memory per tracked number ({machine()}), {n:,} numbers")
    print(f"plain dict number -> int : {plain_bytes / n:8.0f} bytes/number (baseline)")
    print(
        f"memory backend, demo keys: {used / n:8.0f} bytes/number = "
        f"{used / plain_bytes:.1f}x; {len(backend):,} keys; "
        f"{used / 2**20:,.0f} MiB per {n:,} numbers"
    )
    print(f"recording rate            : {n / elapsed:8,.0f} numbers/s (under tracemalloc)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
