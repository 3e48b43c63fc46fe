"""What sum, avg, min and max cost against count() over the same keys and window, on the
memory backend and on Redis, measured in the same run.

    .venv/bin/python bench/numeric_aggregates.py [--events 20000] [--rounds 3] [--redis-url URL]

One policy per kind, each a single aggregate `KIND(event.number("amount"), per attribute
"user_id", over 1h)` (count: `count(per attribute "user_id", over 1h)`); the refs are
planned by the compiled policy exactly as the server plans them, for a day of payments by
2,000 users with amounts from 0.01 to 9,999.99 (a tenth of events carry no amount).
Planning is outside the timed loop; what is timed is ``apply`` with recording, per event,
on a fresh backend per round. Without --redis-url a throw-away redis-server is started on
a free loopback port (bench/state_bench.py). Ratios are against count() in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine
from bench.state_bench import temporary_redis
from dsl import compile_policy
from dsl.aggregates import AggregateRef
from dsl.facts import EventFacts, Facts, PhoneFacts
from server.state import MemoryBackend, open_backend

T0 = 1_893_456_000.0
HASH_KEY = b"b" * 32
KINDS = ("count", "sum", "avg", "min", "max")


def policy_text(kind: str) -> str:
    value = "" if kind == "count" else 'event.number("amount"), '
    return (
        f'aggregate x = {kind}({value}per attribute "user_id", over 1h)\n'
        "rule r { when x > 3 then review }\n"
    )


def traffic(n: int, seed: int = 5) -> list[tuple[float, dict[str, str]]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        attrs = {"user_id": f"user-{rnd.randrange(2_000)}"}
        if rnd.random() > 0.1:
            attrs["amount"] = f"{rnd.randrange(1, 1_000_000) / 100:.2f}"
        out.append((T0 + i * 86_400 / n, attrs))
    return out


def planned(kind: str, events: list[tuple[float, dict[str, str]]]) -> list[Sequence[AggregateRef]]:
    policy = compile_policy({"t/policy.rf": policy_text(kind)}, tenant="t")
    phone = PhoneFacts(e164="+8613800138000", valid=True, region="CN")
    facts = [
        Facts(tenant="t", phone=phone, event=EventFacts(occurred_at=at, attributes=a))
        for at, a in events
    ]
    return [policy.plan(f, {}) for f in facts]


def time_memory(
    refs: list[Sequence[AggregateRef]], events: list[tuple[float, dict[str, str]]]
) -> float:
    state = MemoryBackend(hash_key=HASH_KEY)
    started = time.perf_counter()
    for r, (at, _) in zip(refs, events, strict=True):
        state.apply_now("t", r, at, record=True)
    return (time.perf_counter() - started) / len(refs)


async def time_redis(
    url: str, refs: list[Sequence[AggregateRef]], events: list[tuple[float, dict[str, str]]]
) -> float:
    state = open_backend(url, hash_key=HASH_KEY, timeout_s=2.0)
    try:
        started = time.perf_counter()
        for r, (at, _) in zip(refs, events, strict=True):
            await state.apply("t", r, at, record=True)
        return (time.perf_counter() - started) / len(refs)
    finally:
        await state.close()


async def flush(url: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    await client.flushall()
    await client.aclose()


async def main(ns: argparse.Namespace, url: str) -> None:
    events = traffic(ns.events)
    refs = {k: planned(k, events) for k in KINDS}
    memory: dict[str, list[float]] = {k: [] for k in KINDS}
    redis: dict[str, list[float]] = {k: [] for k in KINDS}
    redis_events = events[: ns.redis_events]
    for _ in range(ns.rounds):  # kinds interleaved, so drift hits all alike
        for k in KINDS:
            memory[k].append(time_memory(refs[k], events))
            await flush(url)
            redis[k].append(await time_redis(url, refs[k][: ns.redis_events], redis_events))
    print(f"# numeric_aggregates.py: {ns.events} events (Redis: {ns.redis_events}), {machine()}")
    print(f"{'kind':<7}{'memory apply':>14}{'ratio':>7}{'redis apply':>14}{'ratio':>7}")
    base_m = statistics.median(memory["count"])
    base_r = statistics.median(redis["count"])
    for k in KINDS:
        m, r = statistics.median(memory[k]), statistics.median(redis[k])
        print(f"{k:<7}{m * 1e6:>11.2f} µs{m / base_m:>7.2f}{r * 1e6:>11.1f} µs{r / base_r:>7.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--redis-events", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-url", default="")
    ns = parser.parse_args()
    if ns.redis_url:
        asyncio.run(main(ns, ns.redis_url))
    else:
        with temporary_redis() as url:
            asyncio.run(main(ns, url))
