"""Memory of a real ``ringfence serve`` holding idle, unauthenticated ``EvaluateStream``
calls: streams opened with no token that never send a message.

    .venv/bin/python bench/idle_streams.py [--streams 4000] [--connections 50]

Three servers in one run, each measured the same way (resident memory from /proc before
the streams and once they have settled):

* ``unbounded``: the limits switched off (``--max-concurrent-rpcs`` and
  ``--max-streams-per-connection`` at 1,000,000, ``--stream-idle-timeout 0``) and an open
  tenant: what any stream could cost before the limits; the baseline.
* ``tokens``: default limits, every tenant needs a token: a stream without one is ended
  UNAUTHENTICATED as it opens.
* ``open-tenant``: default limits with an open tenant (streams need no token, so they are
  accepted): only the cap on calls in flight holds them back.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, pid_listening, ringfence_server, rules_copy
from server.api import decision_pb2 as pb
from server.api import decision_pb2_grpc as pb_grpc
from server.bundle.tenant_config import hash_token

MIB = 1 << 20
UNBOUNDED = (
    "--max-concurrent-rpcs",
    "1000000",
    "--max-streams-per-connection",
    "1000000",
    "--stream-idle-timeout",
    "0",
)


@dataclass(frozen=True)
class Wave:
    rss: int  # after the wave settled
    held: int  # streams still open (of every wave so far)
    ended: dict[str, int]  # how the others ended, by status code


@dataclass(frozen=True)
class Result:
    name: str
    rss_before: int
    waves: list[Wave]

    def growth(self, wave: int) -> int:
        return self.waves[wave].rss - self.rss_before


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def never() -> AsyncIterator[pb.EvaluateRequest]:
    await asyncio.Event().wait()
    yield pb.EvaluateRequest()  # never reached


async def settle(pid: int, calls: list[grpc.aio.StreamStreamCall]) -> None:  # type: ignore[type-arg]
    """Until the count of open calls and the server's memory stop moving for two seconds
    (at most a minute)."""
    deadline = time.monotonic() + 60
    last: tuple[int, int] = (-1, -1)
    steady_since = time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = (sum(not c.done() for c in calls), rss(pid) // MIB)
        if now != last:
            last, steady_since = now, time.monotonic()
        elif time.monotonic() - steady_since >= 2:
            return


async def flood(
    port: int, pid: int, streams: int, connections: int, waves: int, name: str
) -> Result:
    before = rss(pid)
    channels = [
        grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        for _ in range(connections)
    ]
    calls = []
    measured = []
    for _ in range(waves):
        for i in range(streams):
            stub = pb_grpc.DecisionServiceStub(channels[i % connections])
            calls.append(stub.EvaluateStream(never()))
        await settle(pid, calls)
        ended: collections.Counter[str] = collections.Counter()
        for c in calls:
            if c.done():
                ended[(await c.code()).name] += 1
        measured.append(Wave(rss(pid), sum(not c.done() for c in calls), dict(ended)))
    for c in calls:
        c.cancel()
    for ch in channels:
        await ch.close(None)
    return Result(name, before, measured)


def run(
    name: str, streams: int, connections: int, waves: int, *, tokens: bool, args: tuple[str, ...]
) -> Result:
    with rules_copy() as rules:
        if tokens:
            (rules / "demo" / "tenant.toml").write_text(
                f'[auth]\ntokens_sha256 = ["{hash_token("bench-token")}"]\n'
            )
        with ringfence_server(rules, *args) as port:
            pid = pid_listening(port)
            time.sleep(1.0)  # the first requests' allocations are not the streams'
            return asyncio.run(flood(port, pid, streams, connections, waves, name))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=4000, help="streams per wave")
    ap.add_argument("--waves", type=int, default=2, help="waves, each held open")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument(
        "--plain",
        action="store_true",
        help="servers without limit flags (tokens required, then an open tenant): for a "
        "tree without them (PYTHONPATH pointing at an export of it)",
    )
    ns = ap.parse_args()
    shape = (ns.streams, ns.connections, ns.waves)
    if ns.plain:
        results = [
            run("plain-tokens", *shape, tokens=True, args=()),
            run("plain-open", *shape, tokens=False, args=()),
        ]
    else:
        results = [
            run("unbounded", *shape, tokens=False, args=UNBOUNDED),
            run("tokens", *shape, tokens=True, args=()),
            run("open-tenant", *shape, tokens=False, args=()),
        ]
    print(
        f"# idle_streams.py: {ns.waves} waves of {ns.streams} idle streams with no token, "
        f"over {ns.connections} connections ({machine()})"
    )
    for w in range(ns.waves):
        base = results[0].growth(w) or 1
        for r in results:
            wave = r.waves[w]
            ended = ", ".join(f"{k} {v}" for k, v in sorted(wave.ended.items())) or "none"
            print(
                f"wave {w + 1} {r.name:12}: RSS {r.rss_before / MIB:6.1f} -> "
                f"{wave.rss / MIB:6.1f} MiB (+{r.growth(w) / MIB:5.1f} MiB = "
                f"{r.growth(w) / base:4.2f}x {results[0].name}); {wave.held} streams held; "
                f"ended: {ended}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
