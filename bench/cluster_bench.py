"""A Redis Cluster of 3 masters against one Redis, same client, same run: where the keys
go, round trips and exchanges per decision, and apply latency.

    .venv/bin/python bench/cluster_bench.py [--calls 5000]

Starts its own redis-servers on free loopback ports (the tests' helpers). Every process
shares this machine's cores, so the cluster's throughput here says nothing about a real
one (where each master has cores of its own); what carries over is the spread of keys,
the one round-trip time per decision, and the client-side cost of splitting a decision
by slot.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest_redis import RedisClusterServers, RedisServer

from bench.common import cpu_seconds, machine
from bench.state_bench import HASH_KEY, T0, refs_for
from server.state import RedisBackend, RedisClusterBackend, open_backend

Backend = RedisBackend | RedisClusterBackend


async def measure(b: Backend, calls: int, concurrency: int) -> tuple[float, float, float]:
    """(calls/s, p50 ms, p99 ms) of apply(record=True) over scattered numbers."""
    latencies: list[float] = []

    async def worker(start: int) -> None:
        for i in range(start, calls, concurrency):
            t0 = time.perf_counter()
            await b.apply("bench", refs_for(i), T0 + i * 0.01, record=True)
            latencies.append(time.perf_counter() - t0)

    began = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - began
    q = statistics.quantiles(latencies, n=100)
    return calls / elapsed, q[49] * 1000, q[98] * 1000


async def run(single: RedisServer, cluster: RedisClusterServers, calls: int) -> None:
    await compare(single.url, cluster, calls)
    # Redis' own CPU per decision: what sizes a node (one core per Redis process).
    b = open_backend(single.url, hash_key=HASH_KEY, timeout_s=5.0)
    c = open_backend(cluster.url, hash_key=HASH_KEY, timeout_s=5.0)
    assert isinstance(b, RedisBackend)
    assert isinstance(c, RedisClusterBackend)
    try:
        for name, backend, pids in (
            ("one Redis", b, [single.pid]),
            ("cluster, all masters", c, [n.pid for n in cluster.nodes]),
        ):
            before = sum(cpu_seconds(p) for p in pids)
            await measure(backend, calls, 16)
            spent = sum(cpu_seconds(p) for p in pids) - before
            per = spent / calls * 1e6
            print(
                f"redis CPU per decision ({name}): {per:.0f} µs"
                f" -> {1e6 / per:,.0f} decisions/s per fully busy Redis core"
            )
    finally:
        await b.close()
        await c.close()


async def compare(single_url: str, cluster: RedisClusterServers, calls: int) -> None:
    single = open_backend(single_url, hash_key=HASH_KEY, timeout_s=5.0)
    spread = open_backend(cluster.url, hash_key=HASH_KEY, timeout_s=5.0)
    assert isinstance(single, RedisBackend)
    assert isinstance(spread, RedisClusterBackend)
    try:
        for b in (single, spread):  # load the script everywhere, open connections
            for i in range(200):
                await b.apply("bench", refs_for(-i - 1), T0, record=True)
        for concurrency in (1, 16):
            rows = {}
            for name, b in (("single", single), ("cluster", spread)):
                trips, node_calls = b.stats.round_trips, getattr(b, "node_calls", 0)
                rows[name] = await measure(b, calls, concurrency)
                if concurrency == 1:
                    print(
                        f"{name:8}: round trips per decision "
                        f"{(b.stats.round_trips - trips) / calls:.3f}"
                        + (
                            f", master exchanges per decision "
                            f"{(b.node_calls - node_calls) / calls:.2f}"
                            if isinstance(b, RedisClusterBackend)
                            else ""
                        )
                    )
            s, c = rows["single"], rows["cluster"]
            print(
                f"x{concurrency:<2} single  {s[0]:8,.0f}/s p50 {s[1]:.3f} ms p99 {s[2]:.3f} ms | "
                f"cluster {c[0]:8,.0f}/s p50 {c[1]:.3f} ms p99 {c[2]:.3f} ms | "
                f"cluster/single throughput {c[0] / s[0]:.2f}x, p50 {c[1] / s[1]:.2f}x"
            )
        per_master = [int(cluster.cli(n, "dbsize")) for n in cluster.nodes]
        total = sum(per_master)
        print(
            "keys per master: "
            + ", ".join(f"{k:,} ({100 * k / total:.0f} %)" for k in per_master)
            + f"; one tenant, {total:,} keys"
        )
    finally:
        await single.close()
        await spread.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=5000)
    ns = ap.parse_args()
    print(f"# Redis Cluster (3 masters) vs one Redis ({machine()})")
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer.start(Path(tmp) / "single")
        cluster = RedisClusterServers.start(Path(tmp) / "cluster")
        try:
            asyncio.run(run(server, cluster, ns.calls))
        finally:
            server.stop()
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
