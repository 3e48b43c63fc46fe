"""Decisions per second through EvaluateBatch and EvaluateStream against unary Evaluate,
same server, same requests, same run.

    .venv/bin/python bench/batch_stream.py [--seconds 3]

Target (issue 8): batch >= 25,000 decisions/s per process.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import load, machine, ringfence_server, rules_copy
from bench.echo_ratio import METHOD, requests
from server.api import decision_pb2 as pb


async def batch_rate(
    address: str, batch: bytes, size: int, concurrency: int, seconds: float
) -> float:
    async with grpc.aio.insecure_channel(address) as ch:
        call = ch.unary_unary(
            "/ringfence.v1.DecisionService/EvaluateBatch",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        await ch.channel_ready()
        done = 0
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                await call(batch, timeout=30)
                done += size

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - t0)


async def stream_rate(address: str, reqs: list[pb.EvaluateRequest], seconds: float) -> float:
    async with grpc.aio.insecure_channel(address) as ch:
        from server.api import decision_pb2_grpc as pb_grpc

        stub = pb_grpc.DecisionServiceStub(ch)
        await ch.channel_ready()
        stop = time.perf_counter() + seconds
        done = 0

        async def gen() -> AsyncIterator[pb.EvaluateRequest]:
            i = 0
            while time.perf_counter() < stop:
                yield reqs[i % len(reqs)]
                i += 1

        t0 = time.perf_counter()
        async for _ in stub.EvaluateStream(gen()):
            done += 1
        return done / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ns = ap.parse_args()
    raw = requests()
    # Dry runs: the same state is not fed forever, so every mode sees the same windows.
    reqs = [pb.EvaluateRequest.FromString(r) for r in raw]
    for r in reqs:
        r.dry_run = True
    raw = [r.SerializeToString() for r in reqs]
    print(f"# batch and stream vs unary ({machine()})")
    with rules_copy() as rules, ringfence_server(rules) as port:
        address = f"127.0.0.1:{port}"
        unary = asyncio.run(load(address, METHOD, raw, concurrency=16, duration_s=ns.seconds)).rps
        print(f"unary, 16 concurrent     : {unary:9,.0f} decisions/s (baseline)")
        for size in (100, 1000):
            batch = pb.EvaluateBatchRequest(requests=reqs[:size]).SerializeToString()
            rate = asyncio.run(batch_rate(address, batch, size, 2, ns.seconds))
            print(
                f"batch of {size:<4}, 2 concurrent: {rate:9,.0f} decisions/s = "
                f"{rate / unary:.1f}x unary (target >= 25,000/s)"
            )
        rate = asyncio.run(stream_rate(address, reqs, ns.seconds))
        print(f"one stream               : {rate:9,.0f} decisions/s = {rate / unary:.1f}x unary")
    return 0


if __name__ == "__main__":
    sys.exit(main())
