"""A plain-HTTP health endpoint for probes that cannot speak gRPC over TLS.

    GET /healthz  200 while the event loop answers (liveness)
    GET /readyz   200 when the gRPC health service says SERVING, else 503 (no policy yet,
                  or draining after SIGTERM)

It is served from the event loop itself, so a loop that is stuck fails liveness, and it
reads the same state as ``grpc.health.v1``, so both probes agree. Deliberately tiny:
HTTP/1.0-style, one request per connection, bounded request size and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

log = logging.getLogger("ringfence.health")

MAX_REQUEST = 8 * 1024
READ_TIMEOUT_S = 5.0


def _response(status: str, body: str) -> bytes:
    payload = body.encode()
    head = (
        f"HTTP/1.1 {status}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(payload)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + payload


class HealthEndpoint:
    def __init__(self, ready: Callable[[], bool]) -> None:
        self._ready = ready
        self._server: asyncio.Server | None = None

    async def start(self, address: str) -> int:
        host, _, port = address.rpartition(":")
        self._server = await asyncio.start_server(
            self._handle, host.strip("[]") or None, int(port), limit=MAX_REQUEST
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    def answer(self, method: str, target: str) -> bytes:
        path = target.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return _response("405 Method Not Allowed", "method not allowed\n")
        if path in ("/healthz", "/livez"):
            return _response("200 OK", "ok\n")
        if path == "/readyz":
            if self._ready():
                return _response("200 OK", "SERVING\n")
            return _response("503 Service Unavailable", "NOT_SERVING\n")
        return _response("404 Not Found", "not found\n")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                reply = _response("400 Bad Request", "bad request\n")
            else:
                reply = self.answer(parts[0], parts[1])
                if parts[0] == "HEAD":
                    reply = reply.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
            writer.write(reply)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a slow or oversized request gets nothing
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
