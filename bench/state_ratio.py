"""End-to-end Evaluate throughput with Redis state against the memory backend, same client,
same run, and the Redis round trips each request costs.

    .venv/bin/python bench/state_ratio.py [--seconds 3] [--rounds 3]

Targets (issue 5): Redis >= 0.7x memory; 1 round trip per request (read and record in one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest_redis import RedisServer

from bench.common import best, interleave, load, machine, ringfence_server, rules_copy
from bench.echo_ratio import METHOD, requests


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ns = ap.parse_args()
    reqs = requests()
    print(f"# Redis vs memory state, end to end ({machine()})")
    with rules_copy() as rules, contextlib.ExitStack() as stack:
        rs = RedisServer.start(rules.parent / "redis")
        stack.callback(rs.stop)
        mem = stack.enter_context(ringfence_server(rules))
        red = stack.enter_context(
            ringfence_server(
                rules, "--state", rs.url, "--hash-key", "bench", "--state-timeout-ms", "200"
            )
        )
        client = redis.Redis.from_url(rs.url)

        # Commands a client sends (those a Lua script runs inside Redis are counted in the
        # same statistics, and are not round trips).
        top_level = (
            "evalsha",
            "eval",
            "script|load",
            "ping",
            "dbsize",
            "hello",
            "select",
            "client|setinfo",
            "info",
        )

        def commands() -> int:
            stats = client.info("commandstats")
            return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in top_level)

        def run(port: int):  # type: ignore[no-untyped-def]
            return lambda: asyncio.run(
                load(
                    f"127.0.0.1:{port}",
                    METHOD,
                    reqs,
                    concurrency=16,
                    duration_s=ns.seconds,
                    warmup_s=0.0,
                )
            )

        before = commands()
        single = asyncio.run(
            load(f"127.0.0.1:{red}", METHOD, reqs, concurrency=1, duration_s=1.0, warmup_s=0.0)
        )
        # INFO itself is one command; everything else came from the requests.
        trips = (commands() - before - 1) / (single.calls + single.errors)
        mem_runs, red_runs = interleave(ns.rounds, run(mem), run(red))
        m, r = best(mem_runs), best(red_runs)
        print(f"memory : {m.rps:8,.0f} rps p50 {m.p50_ms:.2f} ms p99 {m.p99_ms:.2f} ms")
        print(
            f"redis  : {r.rps:8,.0f} rps p50 {r.p50_ms:.2f} ms p99 {r.p99_ms:.2f} ms"
            f"{'' if not r.errors else f'  ERRORS {r.errors}'}"
        )
        print(f"redis / memory throughput {r.rps / m.rps:.2f}x (target >= 0.7x)")
        print(f"redis round trips per request: {trips:.2f} (target 1: read + record in one)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
