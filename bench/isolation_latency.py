"""Tenant isolation, latency side: one tenant's latency alone, and while another tenant on
the same server is flooded, same client, same run.

    .venv/bin/python bench/isolation_latency.py [--seconds 3]

The flood runs from a second process so it competes for the server, not for the
measuring client.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import LoadResult, load, machine, ringfence_server, rules_copy
from bench.echo_ratio import METHOD, requests
from server.api import decision_pb2 as pb


def _flood(address: str, seconds: float) -> None:
    reqs = []
    for raw in requests(seed=99):
        r = pb.EvaluateRequest.FromString(raw)
        r.tenant = "noisy"
        reqs.append(r.SerializeToString())
    asyncio.run(load(address, METHOD, reqs, concurrency=32, duration_s=seconds, warmup_s=0))


def measure(rules: Path, seconds: float, reqs: list[bytes]) -> tuple[LoadResult, LoadResult]:
    with ringfence_server(rules) as port:
        address = f"127.0.0.1:{port}"
        # Light, steady traffic: latency is what matters for the quiet tenant.
        alone = asyncio.run(load(address, METHOD, reqs, concurrency=2, duration_s=seconds))
        flood = multiprocessing.Process(target=_flood, args=(address, seconds + 1.5))
        flood.start()
        try:
            crowded = asyncio.run(load(address, METHOD, reqs, concurrency=2, duration_s=seconds))
        finally:
            flood.join(30)
    return alone, crowded


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ns = ap.parse_args()
    reqs = requests()
    print(f"# one tenant's latency while another is flooded ({machine()})")
    with rules_copy() as rules:
        shutil.copytree(rules / "demo", rules / "noisy")
        for label, limit in (("noisy unlimited", ""), ("noisy max_rps 200", "200")):
            (rules / "noisy" / "tenant.toml").write_text(
                f"[limits]\nmax_rps = {limit}\n" if limit else ""
            )
            alone, crowded = measure(rules, ns.seconds, reqs)
            print(
                f"{label:<18}: demo alone p50 {alone.p50_ms:.2f} ms p99 {alone.p99_ms:.2f} ms;"
                f" flooded p50 {crowded.p50_ms:.2f} ms p99 {crowded.p99_ms:.2f} ms;"
                f" ratio p50 {crowded.p50_ms / alone.p50_ms:.2f}x"
                f" p99 {crowded.p99_ms / alone.p99_ms:.2f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
