"""Shutdowns under load drop no call: three ``ringfence serve`` processes behind a client
that keeps calling, and five shutdowns (SIGTERM, then a fresh process on the same port, as
a rollout replaces a pod), in each of the ways clients reach a fleet:

- direct: ``pick_first`` over the pods' addresses (a headless Service's DNS);
- proxy: one address, a real nginx balancing connections (a ClusterIP Service: each client
  connection goes to one pod, a refused one to another);
- round_robin: every call picks a pod, with client-side health checking.

The client uses the service config documented in docs/api.md (its retry policy retries
``UNAVAILABLE`` only). Every call must succeed; the servers' own logs show each shutdown
happened with client connections open, so the drain had something to do.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import processes
import pytest
from conftest_nginx import NginxStreamProxy, NginxUnavailable, free_port
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support import REPO, RINGFENCE, request

from server.api import decision_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow

SERVERS = 3
SHUTDOWNS = 5
WORKERS = 12
AGE_S = 2.0  # --max-connection-age: the drain lasts at most 1.1 x this + 1 s
START_TIMEOUT_S = 60.0


def documented_service_config() -> dict[str, object]:
    """The service config docs/api.md tells clients to use."""
    text = (REPO / "docs" / "api.md").read_text()
    block = re.search(r"<!-- service-config -->\n```json\n(.*?)\n```", text, re.S)
    assert block is not None, "docs/api.md lost its service config"
    return json.loads(block.group(1))  # type: ignore[no-any-return]


def service_config(mode: str) -> str:
    config = documented_service_config()
    if mode != "round_robin":
        # One connection, the address list or the proxy picks the pod (docs/api.md).
        config.pop("loadBalancingConfig")
        config.pop("healthCheckConfig")
    return json.dumps(config)


@dataclass
class Server:
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    drains: list[int] = field(default_factory=list)  # open connections when each drain began


@dataclass
class Fleet:
    rules: Path
    work: Path
    servers: list[Server] = field(default_factory=list)
    extra_args: tuple[str, ...] = ()  # bench/shutdown_drops.py: the same without a drain

    def start(self, server: Server) -> None:
        with server.log.open("ab") as out:
            server.proc = subprocess.Popen(
                [
                    str(RINGFENCE),
                    "serve",
                    "--rules",
                    str(self.rules),
                    "--listen",
                    f"127.0.0.1:{server.port}",
                    "--max-connection-age",
                    str(AGE_S),
                    "--max-connection-age-grace",
                    "5",
                    "--grace",
                    "5",
                    "--watch",
                    "false",
                    *self.extra_args,
                ],
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        wait_serving(server)

    def stop(self, server: Server) -> None:
        """SIGTERM and the exit, which must be 0."""
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=60) == 0, server.log.read_text()[-3000:]
        server.proc = None
        lines = [json.loads(t) for t in server.log.read_text().splitlines() if t.startswith("{")]
        server.drains = [
            int(line["connections"])
            for line in lines
            if str(line.get("msg", "")).startswith("draining")
        ]

    def close(self) -> None:
        for server in self.servers:
            if server.proc is not None and server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait(10)


def wait_serving(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert server.proc is not None
            if server.proc.poll() is not None:
                pytest.fail(f"server exited at start:\n{server.log.read_text()[-3000:]}")
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    pytest.fail(f"server on {server.port} never became SERVING")


@contextlib.contextmanager
def fleet(tmp_path: Path, rules_copy: Path, extra_args: tuple[str, ...] = ()) -> Iterator[Fleet]:
    f = Fleet(rules_copy, tmp_path, extra_args=extra_args)
    try:
        for i in range(SERVERS):
            server = Server(free_port(), tmp_path / f"server-{i}.log")
            f.servers.append(server)
            f.start(server)
        yield f
    finally:
        f.close()


@dataclass
class Load:
    channels: list[grpc.aio.Channel]
    ok: int = 0
    failed: collections.Counter[str] = field(default_factory=collections.Counter)
    stop: bool = False

    async def worker(self, n: int) -> None:
        stub = pb_grpc.DecisionServiceStub(self.channels[n % len(self.channels)])
        i = 0
        while not self.stop:
            i += 1
            try:
                await stub.Evaluate(
                    request(f"+86138{n:02d}{i % 100000:06d}", request_id=f"w{n}-{i}"),
                    timeout=10,
                )
                self.ok += 1
            except grpc.aio.AioRpcError as exc:
                self.failed[f"{exc.code().name}: {exc.details()}"] += 1


@contextlib.asynccontextmanager
async def load(target: str, mode: str) -> AsyncIterator[Load]:
    """Workers calling through the channels of a few client processes (behind the proxy
    each client connection lands on one pod: several spread over all of them)."""
    options = [
        ("grpc.service_config", service_config(mode)),
        ("grpc.enable_retries", 1),
        ("grpc.use_local_subchannel_pool", 1),  # a connection of its own, as a process has
    ]
    clients = 6 if mode == "proxy" else 1
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(clients)]
    running = Load(channels)
    tasks = [asyncio.create_task(running.worker(n)) for n in range(WORKERS)]
    try:
        yield running
    finally:
        running.stop = True
        await asyncio.gather(*tasks)
        for channel in channels:
            await channel.close()


def target_of(mode: str, f: Fleet, proxy: NginxStreamProxy | None) -> str:
    if proxy is not None:
        return f"127.0.0.1:{proxy.port}"
    return "ipv4:" + ",".join(f"127.0.0.1:{s.port}" for s in f.servers)


async def until(predicate, what: str, running: Load) -> None:  # type: ignore[no-untyped-def]
    try:
        async with asyncio.timeout(60):
            while not predicate():  # noqa: ASYNC110 - the count lives in the workers
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"no {what}: {running.ok} calls ok, failures {running.failed.most_common(3)}")


async def run_shutdowns(
    tmp_path: Path, rules_copy: Path, mode: str, extra_args: tuple[str, ...] = ()
) -> tuple[Load, list[int]]:
    """Load through five shutdowns in ``mode``: the load's counts, and how many client
    connections each shutdown's drain began with."""
    with fleet(tmp_path, rules_copy, extra_args) as f, contextlib.ExitStack() as stack:
        proxy = None
        if mode == "proxy":
            ports = tuple(s.port for s in f.servers)
            proxy = stack.enter_context(
                processes.running(
                    lambda: NginxStreamProxy.start(tmp_path / "proxy", ports), NginxUnavailable
                )
            )
        async with load(target_of(mode, f, proxy), mode) as running:
            await until(lambda: running.ok > 200, "traffic", running)
            busy = []
            for n in range(SHUTDOWNS):
                # pick_first stays on the first address that answers: shut that one down.
                server = f.servers[0 if mode == "direct" else n % SERVERS]
                before = running.ok
                await asyncio.to_thread(f.stop, server)
                busy.append(server.drains[-1] if server.drains else 0)
                await asyncio.to_thread(f.start, server)
                # Calls go on meanwhile, and clients find the new process again.
                await until(lambda b=before: running.ok > b + 200, "traffic after restart", running)
                await asyncio.sleep(AGE_S * 1.2)
    return running, busy


@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", ["direct", "proxy", "round_robin"])
async def test_five_shutdowns_under_load_fail_no_call(
    tmp_path: Path, rules_copy: Path, mode: str
) -> None:
    running, busy = await run_shutdowns(tmp_path, rules_copy, mode)
    assert sum(running.failed.values()) == 0, running.failed.most_common(5)
    assert running.ok > 1000
    # The drains had clients to wait for (the proxy and round_robin spread them out, so not
    # every pod has one at every shutdown).
    assert sum(1 for b in busy if b > 0) >= (SHUTDOWNS if mode == "direct" else 2), busy
