"""The plain-HTTP health endpoint agrees with gRPC health: ready only with a policy, not
ready while draining, alive throughout; odd requests get an answer, never a hang."""

from __future__ import annotations

import asyncio
from pathlib import Path

from grpc_health.v1 import health_pb2
from support import Running, request, running_server

from server.api import decision_pb2 as pb


async def http(port: int, raw: bytes) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def get(port: int, path: str) -> tuple[int, str]:
    return await http(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


async def grpc_status(s: Running) -> int:
    resp = await s.health.Check(
        health_pb2.HealthCheckRequest(service="ringfence.v1.DecisionService"), timeout=5
    )
    return int(resp.status)


async def test_ready_with_a_policy(rules_copy: Path) -> None:
    async with running_server(rules_copy, health_listen="127.0.0.1:0") as s:
        port = s.server.health_port
        assert await get(port, "/healthz") == (200, "ok\n")
        assert await get(port, "/readyz") == (200, "SERVING\n")
        assert await grpc_status(s) == health_pb2.HealthCheckResponse.SERVING


async def test_not_ready_without_a_policy(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    async with running_server(tmp_path / "rules", health_listen="127.0.0.1:0") as s:
        port = s.server.health_port
        assert await get(port, "/healthz") == (200, "ok\n")
        assert await get(port, "/readyz") == (503, "NOT_SERVING\n")
        assert await grpc_status(s) == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_not_ready_while_draining(rules_copy: Path) -> None:
    """While the server drains (its clients still connected), /readyz says 503 and /healthz
    200: the pod leaves the Service without being restarted."""
    async with running_server(rules_copy, health_listen="127.0.0.1:0", drain_s=120) as s:
        port = s.server.health_port
        await s.decisions.Evaluate(request("+8613800138000", dry_run=True), timeout=5)
        stopping = asyncio.create_task(s.server.stop(grace=10))
        async with asyncio.timeout(60):
            while (await get(port, "/readyz"))[0] != 503:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert await get(port, "/healthz") == (200, "ok\n")
        assert not stopping.done()  # the test's own connection holds the drain
        await s.channel.close()  # the last client leaves: the drain ends
        await stopping


async def test_odd_requests(rules_copy: Path) -> None:
    async with running_server(rules_copy, health_listen="127.0.0.1:0") as s:
        port = s.server.health_port
        assert (await get(port, "/nope"))[0] == 404
        assert (await http(port, b"POST /readyz HTTP/1.1\r\n\r\n"))[0] == 405
        assert (await http(port, b"garbage\r\n\r\n"))[0] == 400
        status, body = await http(port, b"HEAD /readyz HTTP/1.1\r\n\r\n")
        assert (status, body) == (200, "")
        # A client that never finishes its request holds a connection, not the endpoint.
        _, stalled = await asyncio.open_connection("127.0.0.1", port)
        stalled.write(b"GET /readyz HTTP/1.1\r\n")
        assert await get(port, "/readyz") == (200, "SERVING\n")
        # Nor does an oversized request line.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        stalled.close()
        resp = await s.decisions.Evaluate(request("+8613800138000", dry_run=True), timeout=5)
        assert resp.action != pb.ACTION_UNSPECIFIED
