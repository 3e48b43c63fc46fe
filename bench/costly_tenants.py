"""A quiet tenant's Evaluate latency while 20 tenants each run the most expensive policy
their evaluation budget allows, at worst-case input, against the same tenant's steady
latency measured in the same run.

    .venv/bin/python bench/costly_tenants.py [--seconds 5] [--rounds 3] [--rps 2,10]

Each hostile tenant's policy is ``bench.cost_policies.hostile``: two patterns RE2 must
work hard on, over the longest user agent request validation admits (a new one every
request, so neither RE2's state cache nor the pattern memo helps), then rules that all
fire, up to the default budget (1,000,000 units). Each hostile tenant has ``[limits]
max_rps`` set to the rate it is driven at (``--rps``, per tenant), from a second process,
open loop: requests leave on a schedule whether or not earlier ones were answered. The
quiet tenant (the demo policy) is driven by two callers, closed loop, first alone, then
with the hostile traffic; rounds alternate so drift hits both.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc

from bench.common import LoadResult, load, machine, ringfence_server, rules_copy
from bench.cost_policies import hostile
from bench.echo_ratio import METHOD, requests
from server.api import decision_pb2 as pb

TENANTS = 20
UA_CHARS = 512


def _hostile_requests(count: int, seed: int = 5) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        ua = "".join(rng.choice("ab") for _ in range(UA_CHARS))
        req = pb.EvaluateRequest(
            tenant=f"h{i % TENANTS:02d}",
            phone_number=f"+86170{rng.randrange(10**8):08d}",
            event=pb.Event(scene="register", attributes={"ua": ua}),
        )
        out.append(req.SerializeToString())
    return out


def _drive(address: str, rps_each: float, seconds: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """Open loop: ``rps_each`` requests a second to each hostile tenant, on a schedule."""

    async def run() -> tuple[int, int, int]:
        reqs = _hostile_requests(4000)
        sent = answered = refused = 0
        async with grpc.aio.insecure_channel(address) as channel:
            call = channel.unary_unary(
                METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b
            )
            await channel.channel_ready()
            interval = 1.0 / (rps_each * TENANTS)
            pending: set[asyncio.Task[None]] = set()

            async def one(body: bytes) -> None:
                nonlocal answered, refused
                try:
                    await call(body, timeout=10)
                    answered += 1
                except grpc.aio.AioRpcError:
                    refused += 1

            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                task = asyncio.ensure_future(one(reqs[sent % len(reqs)]))
                pending.add(task)
                task.add_done_callback(pending.discard)
                sent += 1
                due = start + sent * interval
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            await asyncio.gather(*pending)
        return sent, answered, refused

    out.put(asyncio.run(run()))


def _rules(root: Path, rps_each: int) -> None:
    policy = hostile()
    for i in range(TENANTS):
        folder = root / f"h{i:02d}"
        folder.mkdir(exist_ok=True)
        (folder / "policy.rf").write_text(policy)
        (folder / "tenant.toml").write_text(f"[limits]\nmax_rps = {rps_each}\n")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rps", default="2,10", help="requests/s per hostile tenant, comma-separated")
    ns = ap.parse_args()
    quiet = requests()
    print(f"# a quiet tenant's latency while {TENANTS} tenants run costly policies ({machine()})")
    ctx = multiprocessing.get_context("spawn")
    for rps_each in (int(x) for x in ns.rps.split(",")):
        with rules_copy() as rules:
            _rules(rules, rps_each)
            with ringfence_server(rules) as port:
                address = f"127.0.0.1:{port}"
                p50s, p99s = [], []
                for r in range(ns.rounds):
                    alone: LoadResult = asyncio.run(
                        load(address, METHOD, quiet, concurrency=2, duration_s=ns.seconds)
                    )
                    out: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
                    driver = ctx.Process(
                        target=_drive, args=(address, rps_each, ns.seconds + 2.0, out)
                    )
                    driver.start()
                    time.sleep(1.5)  # the driver is up and sending
                    crowded = asyncio.run(
                        load(address, METHOD, quiet, concurrency=2, duration_s=ns.seconds)
                    )
                    sent, answered, refused = out.get(timeout=120)
                    driver.join(30)
                    p50 = crowded.p50_ms / alone.p50_ms
                    p99 = crowded.p99_ms / alone.p99_ms
                    p50s.append(p50)
                    p99s.append(p99)
                    print(
                        f"max_rps {rps_each:>3} x {TENANTS}, round {r + 1}: quiet alone p50"
                        f" {alone.p50_ms:.2f} ms p99 {alone.p99_ms:.2f} ms; with the costly"
                        f" tenants p50 {crowded.p50_ms:.2f} ms p99 {crowded.p99_ms:.2f} ms;"
                        f" ratio p50 {p50:.2f}x p99 {p99:.2f}x; quiet errors"
                        f" {crowded.errors}; hostile sent {sent}, answered {answered},"
                        f" refused {refused}",
                        flush=True,
                    )
                print(
                    f"max_rps {rps_each:>3} x {TENANTS}: p99 ratio median"
                    f" {statistics.median(p99s):.2f}x (range {min(p99s):.2f}-{max(p99s):.2f}x),"
                    f" p50 median {statistics.median(p50s):.2f}x",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
