"""Evaluate latency while a 1,000,000-entry list is reloaded, against steady state, same
server, same client, same run; and the same reloads with the list parsed in the server's
own process (``--list-child-min-kb`` above the file's size: how every list was parsed
before), so the stall the child process removes is measured beside it.

    .venv/bin/python bench/list_reload_stall.py [--entries 1000000] [--reloads 5]

Each reload: one line appended to the list, SIGHUP, and the client keeps calling until
GetPolicyStatus shows the new version. Figures: client p99 and the longest call while
reloading, the same for the steady state before, and their ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, pid_listening, ringfence_server, rules_copy
from bench.echo_ratio import METHOD, requests
from bench.lists_bench import generate
from server.api import policy_pb2 as ppb
from server.api import policy_pb2_grpc as ppb_grpc

LIST = Path("demo/lists/privacy_numbers.csv")


@dataclass(frozen=True)
class Window:
    calls: int
    p99_ms: float
    max_ms: float
    errors: int


async def calls_until(address: str, done: asyncio.Event, concurrency: int = 8) -> Window:
    reqs = requests()
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(
            METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        await channel.channel_ready()

        async def worker(k: int) -> None:
            nonlocal errors
            i = k
            while not done.is_set():
                t0 = time.perf_counter()
                try:
                    await call(reqs[i % len(reqs)], timeout=10)
                except grpc.aio.AioRpcError:
                    errors += 1
                latencies.append(time.perf_counter() - t0)
                i += concurrency

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    latencies.sort()
    p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) > 1 else 0.0
    return Window(len(latencies), p99 * 1000, latencies[-1] * 1000, errors)


async def version(address: str) -> str:
    async with grpc.aio.insecure_channel(address) as ch:
        resp = await ppb_grpc.PolicyServiceStub(ch).GetPolicyStatus(
            ppb.GetPolicyStatusRequest(tenant="demo"), timeout=10
        )
    return resp.tenants[0].version


async def measure(
    address: str, pid: int, path: Path, reloads: int, steady_s: float
) -> tuple[Window, Window]:
    done = asyncio.Event()
    steady_task = asyncio.create_task(calls_until(address, done))
    await asyncio.sleep(steady_s)
    done.set()
    steady = await steady_task
    done = asyncio.Event()
    during_task = asyncio.create_task(calls_until(address, done))
    for i in range(reloads):
        before = await version(address)
        with path.open("a") as fh:
            fh.write(f"+8617099{i:06d},risk1,ops,2025-01-01,\n")
        os.kill(pid, signal.SIGHUP)
        async with asyncio.timeout(300):
            while await version(address) == before:  # noqa: ASYNC110 - the server's state
                await asyncio.sleep(0.05)
    done.set()
    return steady, await during_task


def run(
    rules: Path, entries: int, reloads: int, steady_s: float, *args: str
) -> tuple[Window, Window]:
    with ringfence_server(rules, "--watch", "false", *args) as port:
        address = f"127.0.0.1:{port}"
        return asyncio.run(measure(address, pid_listening(port), rules / LIST, reloads, steady_s))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--reloads", type=int, default=5)
    ap.add_argument("--steady", type=float, default=5.0)
    ns = ap.parse_args()
    print(f"# list reload stall, {ns.entries:,} entries, {ns.reloads} reloads ({machine()})")
    rows = []
    with rules_copy() as rules:
        generate(rules / LIST, ns.entries)
        size_kb = (rules / LIST).stat().st_size >> 10
        for label, args in (
            ("child process (default)", ()),
            ("parsed in the server", ("--list-child-min-kb", str(size_kb * 2))),
        ):
            with contextlib.suppress(KeyboardInterrupt):
                steady, during = run(rules, ns.entries, ns.reloads, ns.steady, *args)
            rows.append((label, steady, during))
    for label, steady, during in rows:
        print(
            f"{label:24}: steady p99 {steady.p99_ms:6.2f} ms max {steady.max_ms:6.1f} ms | "
            f"reloading p99 {during.p99_ms:6.2f} ms max {during.max_ms:6.1f} ms | "
            f"ratio p99 {during.p99_ms / steady.p99_ms:4.2f}x "
            f"max {during.max_ms / steady.max_ms:4.2f}x | {during.calls:,} calls, "
            f"{during.errors} failed"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
