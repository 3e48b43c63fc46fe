"""Shared pieces of the benchmarks: a load client, servers in child processes, a report.

Every benchmark prints ratios against a baseline measured in the same run, because the
machines are shared and absolute numbers drift.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class LoadResult:
    calls: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0


async def load(
    address: str,
    method: str,
    requests: Sequence[bytes],
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float = 0.5,
) -> LoadResult:
    """Unary calls of pre-serialised requests from ``concurrency`` workers on one channel.

    Requests are pre-serialised and responses left as bytes so the client costs the same
    whichever server answers.
    """
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(
            method, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        await channel.channel_ready()
        latencies: list[float] = []
        errors = 0
        stop_at = 0.0
        recording = False

        async def worker(offset: int) -> None:
            nonlocal errors
            i = offset
            n = len(requests)
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                try:
                    await call(requests[i % n], timeout=5)
                except grpc.aio.AioRpcError:
                    errors += 1
                if recording:
                    latencies.append(time.perf_counter() - t0)
                i += concurrency

        stop_at = time.perf_counter() + warmup_s
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        recording = True
        start = time.perf_counter()
        stop_at = start + duration_s
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return LoadResult(len(latencies), elapsed, q[49] * 1000, q[98] * 1000, errors)


@contextlib.contextmanager
def child(
    argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[int]:
    """Run a server that logs a JSON line {"msg": "listening", "port": N}; yield the port."""
    proc = subprocess.Popen(
        list(argv),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    assert proc.stderr is not None
    try:
        deadline = time.monotonic() + 60
        port = 0
        fd = proc.stderr.fileno()
        pending = b""
        # Raw reads, not readline(): a buffered reader can hold the line we wait for while
        # select() sees an empty pipe.
        while not port:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} did not start")
            if not ready:
                continue
            pending += os.read(fd, 65536)
            *lines, pending = pending.split(b"\n")
            for line in lines:
                with contextlib.suppress(ValueError):
                    msg = json.loads(line)
                    if isinstance(msg, dict) and msg.get("msg") == "listening":
                        port = int(msg["port"])
        # Drain stderr in the background so a chatty server never blocks on a full pipe.
        drain = subprocess.Popen(["cat"], stdin=proc.stderr, stdout=subprocess.DEVNULL)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        with contextlib.suppress(NameError):
            drain.wait(5)


@contextlib.contextmanager
def rules_copy() -> Iterator[Path]:
    """A private copy of the shipped rules/ (benchmarks edit it or add tenants)."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules"
        shutil.copytree(REPO / "rules", rules)
        yield rules


@contextlib.contextmanager
def ringfence_server(rules: Path, *args: str) -> Iterator[int]:
    """``ringfence serve`` in a child process; yields its port once it is SERVING (the
    first policy build, in the compiler processes, comes after "listening")."""
    argv = [str(BIN / "ringfence"), "serve", "--rules", str(rules), "--listen", "127.0.0.1:0"]
    with child([*argv, *args]) as port:
        wait_serving(port)
        yield port


def wait_serving(port: int, timeout: float = 60.0) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stream = health_pb2_grpc.HealthStub(ch).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=timeout
        )
        for resp in stream:
            if resp.status == health_pb2.HealthCheckResponse.SERVING:
                stream.cancel()
                return
    raise TimeoutError("server never became SERVING")


def pid_listening(port: int) -> int:
    """The pid of the process listening on a loopback TCP port (``ss -ltnp``)."""
    text = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    for line in text.splitlines():
        if f":{port} " in line and "pid=" in line:
            return int(line.split("pid=")[1].split(",")[0])
    raise RuntimeError(f"no process listens on port {port}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used (its threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def interleave(rounds: int, *runs: Callable[[], LoadResult]) -> list[list[LoadResult]]:
    """Run each measurement ``rounds`` times, alternating, so drift hits all alike."""
    out: list[list[LoadResult]] = [[] for _ in runs]
    for _ in range(rounds):
        for i, run in enumerate(runs):
            out[i].append(run())
    return out


def best(results: list[LoadResult]) -> LoadResult:
    """The median-throughput round: robust to one noisy round either way."""
    return sorted(results, key=lambda r: r.rps)[len(results) // 2]
