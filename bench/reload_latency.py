"""Evaluate latency while the policy is reloaded 100 times, against steady state, same
server, same client, same run; and how long an edit takes to go live.

    .venv/bin/python bench/reload_latency.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import LoadResult, load, machine, ringfence_server, rules_copy
from bench.echo_ratio import METHOD, requests
from server.api import decision_pb2 as pb
from server.api import decision_pb2_grpc as pb_grpc
from server.api import policy_pb2 as ppb
from server.api import policy_pb2_grpc as ppb_grpc


async def reloads(address: str, policy: Path, original: str, count: int) -> list[float]:
    """Edit the policy ``count`` times (a constant alternating 21 / 22), each time waiting
    for the file watcher to make it live; returns the edit-to-live times."""
    times = []
    async with grpc.aio.insecure_channel(address) as ch:
        stub = ppb_grpc.PolicyServiceStub(ch)

        async def version() -> str:
            resp = await stub.GetPolicyStatus(ppb.GetPolicyStatusRequest(tenant="demo"))
            return resp.tenants[0].version

        for i in range(count):
            before = await version()
            tmp = policy.with_suffix(".tmp")
            tmp.write_text(
                original.replace("const RUN_BLOCK = 20", f"const RUN_BLOCK = {21 + i % 2}")
            )
            t0 = time.perf_counter()
            os.replace(tmp, policy)
            while await version() == before:
                if time.perf_counter() - t0 > 10:
                    raise TimeoutError("edit never went live")
                await asyncio.sleep(0.005)
            times.append(time.perf_counter() - t0)
    return times


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--reloads", type=int, default=100)
    ns = ap.parse_args()
    reqs = requests()
    print(f"# latency during {ns.reloads} reloads vs steady state ({machine()})")
    with rules_copy() as rules:
        policy = rules / "demo" / "policy.rf"
        with ringfence_server(rules, "--watch", "true") as port:
            address = f"127.0.0.1:{port}"
            steady = asyncio.run(load(address, METHOD, reqs, concurrency=8, duration_s=ns.seconds))

            async def during() -> tuple[list[LoadResult], list[float]]:
                task = asyncio.create_task(reloads(address, policy, policy.read_text(), ns.reloads))
                results: list[LoadResult] = []
                while not task.done():
                    results.append(
                        await load(
                            address, METHOD, reqs, concurrency=8, duration_s=0.5, warmup_s=0.0
                        )
                    )
                return results, await task

            results, live = asyncio.run(during())
            calls = sum(r.calls for r in results)
            errors = sum(r.errors for r in results)
            p99 = max(r.p99_ms for r in results)
            p50 = sorted(r.p50_ms for r in results)[len(results) // 2]
            with grpc.insecure_channel(address) as ch:
                final = pb_grpc.DecisionServiceStub(ch).Evaluate(
                    pb.EvaluateRequest(tenant="demo", phone_number="+8613800138000")
                )
    live.sort()
    print(
        f"steady state   : p50 {steady.p50_ms:.2f} ms p99 {steady.p99_ms:.2f} ms "
        f"({steady.rps:,.0f} rps)"
    )
    print(
        f"during reloads : p50 {p50:.2f} ms p99 {p99:.2f} ms (worst 0.5 s slice), "
        f"{calls} calls, {errors} failed"
    )
    print(f"ratio          : p50 {p50 / steady.p50_ms:.2f}x, p99 {p99 / steady.p99_ms:.2f}x")
    print(
        f"edit to live   : median {1000 * live[len(live) // 2]:.0f} ms, "
        f"max {1000 * live[-1]:.0f} ms over {len(live)} edits (target < 1 s)"
    )
    print(f"final version  : {final.policy_version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
