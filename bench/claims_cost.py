"""What idempotency costs per decision: the memory backend's apply with and without a
claim, and aiocache's calls with its default per-call timeout against ``timeout=None``
(why the claims run without one). Same process, same run.

    .venv/bin/python bench/claims_cost.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiocache import SimpleMemoryCache

from bench.common import machine
from bench.state_bench import HASH_KEY, T0, refs_for
from server.state import Claim, MemoryBackend


async def per_call_us(calls: int, fn: Callable[[int], Awaitable[object]]) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        for i in range(calls):
            await fn(i)
        best = min(best, time.process_time() - t0)
    return best / calls * 1e6


async def run(calls: int) -> None:
    plain = MemoryBackend(hash_key=HASH_KEY)
    claimed = MemoryBackend(hash_key=HASH_KEY)
    refs = [refs_for(i) for i in range(calls)]

    async def apply(i: int) -> object:
        return await plain.apply("bench", refs[i], T0 + i * 0.01, record=True)

    async def apply_claimed(i: int) -> object:
        claim = Claim(f"req-{i}-{time.perf_counter_ns()}", "fingerprint", 600)
        return await claimed.apply_claimed("bench", refs[i], T0 + i * 0.01, claim)

    a = await per_call_us(calls, apply)
    b = await per_call_us(calls, apply_claimed)
    print(f"memory apply            : {a:6.1f} µs CPU per decision (baseline)")
    print(f"memory apply_claimed    : {b:6.1f} µs = +{b - a:.1f} µs for the claim ({b / a:.2f}x)")
    default = SimpleMemoryCache()
    untimed = SimpleMemoryCache(timeout=None)
    for label, cache in (
        ("aiocache, default timeout", default),
        ("aiocache, timeout=None", untimed),
    ):

        async def get_set(i: int, cache: SimpleMemoryCache = cache) -> object:
            await cache.get(f"k{i}")
            return await cache.set(f"k{i}", i, ttl=600)

        us = await per_call_us(calls, get_set)
        print(f"{label:<24}: {us:6.1f} µs CPU per get + set")
        await cache.clear()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20_000)
    ns = ap.parse_args()
    print(f"# idempotency claims ({machine()})")
    asyncio.run(run(ns.calls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
