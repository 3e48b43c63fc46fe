"""apply() throughput, memory vs Redis, measured in one run; round trips per apply.

    .venv/bin/python bench/state_bench.py [--calls 20000] [--redis-url redis://...]

Without --redis-url a throw-away redis-server is started on a free loopback port. Figures
are ratios against baselines measured in the same run (a bare Redis GET round trip), so
they survive noisy machines; absolute numbers are printed for context only.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from redis.asyncio import Redis

from dsl.aggregates import (
    AggKind,
    AggregateRef,
    AggregateSpec,
    KeyKind,
    Window,
    calendar_day,
    sliding,
)
from server.state import RedisBackend, StateBackend, open_backend

HASH_KEY = b"bench-hash-key"
T0 = 1_767_225_600.0

SPECS = (
    AggregateSpec(
        id="codes_1h", kind=AggKind.COUNT, key=KeyKind.NUMBER, window=Window(size_s=3600)
    ),
    AggregateSpec(
        id="codes_1h_ago", kind=AggKind.COUNT, key=KeyKind.NUMBER, window=sliding(3600, 3600)
    ),
    AggregateSpec(
        id="codes_today",
        kind=AggKind.COUNT,
        key=KeyKind.NUMBER,
        window=calendar_day("Asia/Shanghai", 0),
    ),
    AggregateSpec(
        id="apps_1d",
        kind=AggKind.DISTINCT,
        key=KeyKind.NUMBER,
        window=Window(size_s=86_400),
        field="app_id",
    ),
    AggregateSpec(
        id="segment_1h", kind=AggKind.COUNT, key=KeyKind.SEGMENT, window=Window(size_s=3600)
    ),
    AggregateSpec(
        id="run_today",
        kind=AggKind.RUN,
        key=KeyKind.SEGMENT,
        window=calendar_day("Asia/Shanghai", 0),
    ),
)


def refs_for(i: int) -> list[AggregateRef]:
    # Scattered numbers, as real traffic: runs stay short. (A run as long as the walk cap
    # costs 2 x 1,000 lookups per apply; that is the bound, not the typical case.)
    national = f"170{(i * 7_919_993) % 100_000_000:08d}"
    number = "+86" + national
    keys = (number, number, number, number, "170", "170")
    members = ("", "", "", f"app-{i % 7}", "", national)
    return [AggregateRef(s, k, m) for s, k, m in zip(SPECS, keys, members, strict=True)]


async def rate(n: int, call: Callable[[int], Awaitable[object]], concurrency: int = 1) -> float:
    """Calls per second for ``n`` calls, ``concurrency`` at a time."""

    async def worker(start: int) -> None:
        for i in range(start, n, concurrency):
            await call(i)

    began = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return n / (time.perf_counter() - began)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def temporary_redis() -> Iterator[str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir,
                "--save", "", "--appendonly", "no"]  # fmt: skip
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(500):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                        s.sendall(b"PING\r\n")
                        if s.recv(16).startswith(b"+PONG"):
                            break
                except OSError:
                    time.sleep(0.01)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait()


async def bench(url: str, calls: int) -> None:
    memory = open_backend("memory://", hash_key=HASH_KEY)
    redis_b = open_backend(url, hash_key=HASH_KEY, timeout_s=1.0)
    assert isinstance(redis_b, RedisBackend)
    plain = Redis.from_url(url)
    await plain.set("bench:get", b"x")

    def applier(b: StateBackend, record: bool) -> Callable[[int], Awaitable[object]]:
        return lambda i: b.apply("bench", refs_for(i), T0 + i * 0.01, record=record)

    async def get(_: int) -> object:
        return await plain.get("bench:get")

    await redis_b.apply("bench", refs_for(0), T0, record=True)  # load the script
    warm = max(1, calls // 10)
    await rate(warm, applier(memory, True))
    await rate(warm, applier(redis_b, True))
    await rate(warm, get)

    trips = redis_b.stats.round_trips
    rows = [
        ("redis GET (baseline)", await rate(calls, get)),
        ("memory apply record", await rate(calls, applier(memory, True))),
        ("memory apply dry_run", await rate(calls, applier(memory, False))),
        ("redis apply record", await rate(calls, applier(redis_b, True))),
        ("redis apply dry_run", await rate(calls, applier(redis_b, False))),
        ("redis GET x16 concurrent", await rate(calls, get, 16)),
        ("redis apply x16 concurrent", await rate(calls, applier(redis_b, True), 16)),
    ]
    applies = 3 * calls
    per_apply = (redis_b.stats.round_trips - trips) / applies
    base = rows[0][1]
    print(f"{len(SPECS)} aggregates per apply, {calls} calls per row")
    print(f"{'what':30} {'calls/s':>10} {'µs/call':>9} {'x GET':>7}")
    for name, r in rows:
        print(f"{name:30} {r:10.0f} {1e6 / r:9.1f} {r / base:7.2f}")
    print(f"memory / redis apply (record): {rows[1][1] / rows[3][1]:.1f}x")
    print(f"round trips per redis apply: {per_apply:.3f} (target 1)")
    await plain.aclose()
    await redis_b.close()
    await memory.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--redis-url", default="")
    args = parser.parse_args()
    if args.redis_url:
        asyncio.run(bench(args.redis_url, args.calls))
        return
    with temporary_redis() as url:
        asyncio.run(bench(url, args.calls))


if __name__ == "__main__":
    main()
