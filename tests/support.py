"""Helpers for tests that run a real Ringfence server on a loopback port."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.api import decision_pb2 as pb
from server.api import decision_pb2_grpc as pb_grpc
from server.api import policy_pb2_grpc
from server.app import RingfenceServer
from server.config import ServeConfig

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "rules"
RINGFENCE = Path(sys.executable).parent / "ringfence"


@dataclass
class Running:
    server: RingfenceServer
    channel: grpc.aio.Channel
    decisions: pb_grpc.DecisionServiceStub
    policies: policy_pb2_grpc.PolicyServiceStub
    health: health_pb2_grpc.HealthStub

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"


def copy_rules(dest: Path, source: Path = RULES) -> Path:
    target = dest / "rules"
    shutil.copytree(source, target)
    return target


@contextlib.asynccontextmanager
async def running_server(rules: Path, **overrides: Any) -> AsyncIterator[Running]:
    """An in-process server on a free 127.0.0.1 port; stopped (grace 0) on exit."""
    server_kwargs = {
        k: overrides.pop(k)
        for k in ("tracer_provider", "metric_readers", "clock", "backend", "interceptors")
        if k in overrides
    }
    config = replace(ServeConfig(rules=rules, listen="127.0.0.1:0", watch=False), **overrides)
    server = RingfenceServer(config, **server_kwargs)
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Running(
            server,
            channel,
            pb_grpc.DecisionServiceStub(channel),
            policy_pb2_grpc.PolicyServiceStub(channel),
            health_pb2_grpc.HealthStub(channel),
        )
    finally:
        await channel.close()
        await server.stop(0)


def request(phone: str, tenant: str = "demo", **kw: Any) -> pb.EvaluateRequest:
    event = kw.pop("event", None)
    if isinstance(event, dict):
        event = pb.Event(**event)
    return pb.EvaluateRequest(tenant=tenant, phone_number=phone, event=event, **kw)


@dataclass
class Process:
    proc: subprocess.Popen[bytes]
    port: int
    lines: list[dict[str, Any]]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def read_json_line(proc: subprocess.Popen[bytes], deadline: float) -> dict[str, Any] | None:
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return None
        line = proc.stderr.readline()
        if not line:
            return None
        try:
            return json.loads(line)  # type: ignore[no-any-return]
        except ValueError:
            return {"msg": line.decode(errors="replace").rstrip()}
    return None


@contextlib.contextmanager
def server_process(
    rules: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 30.0
) -> Iterator[Process]:
    """``ringfence serve`` as a child process on a free port; waits for its "listening" log
    line (reading its output, not sleeping) and kills it on exit if it is still running."""
    proc = subprocess.Popen(
        [str(RINGFENCE), "serve", "--rules", str(rules), "--listen", "127.0.0.1:0", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        # Unbuffered: read_json_line waits with select(), which cannot see lines a
        # buffered reader has already taken off the pipe.
        bufsize=0,
    )
    lines: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    port = 0
    try:
        while port == 0:
            line = read_json_line(proc, deadline)
            if line is None:
                raise RuntimeError(f"server did not start: {lines}")
            lines.append(line)
            if line.get("msg") == "listening":
                port = int(line["port"])
        yield Process(proc, port, lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


def wait_serving(address: str, timeout: float = 20.0) -> None:
    """Block on the health Watch stream until SERVING (event-driven, bounded)."""
    with grpc.insecure_channel(address) as ch:
        grpc.channel_ready_future(ch).result(timeout=timeout)
        stream = health_pb2_grpc.HealthStub(ch).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=timeout
        )
        for resp in stream:
            if resp.status == health_pb2.HealthCheckResponse.SERVING:
                stream.cancel()
                return
    raise TimeoutError("server never became SERVING")
