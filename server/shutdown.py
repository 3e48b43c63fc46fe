"""Shutting down without dropping a call.

gRPC core's own shutdown sends GOAWAY and waits for calls in flight, but every call that
reaches it after shutdown has begun (sent by a client before the GOAWAY arrived) or that
is still queued for the application is dropped with ``CANCELLED``, a status no retry
policy retries (grpc/grpc#41785; 1-4 calls per shutdown at a few thousand calls/s). So
the server first gets its clients to leave while it still serves everything:

1. health turns NOT_SERVING (readiness probes, health-checking clients, balancers);
2. the listening socket stops accepting (:func:`close_listeners`): a client that
   reconnects is refused and goes to another address or pod at once;
3. the open connections are left to end by themselves: each gets the GOAWAY of its
   maximum age (``--max-connection-age``), which, unlike shutdown's, drops nothing, and
   its client moves on once its calls are done; streams end at their next item;
4. once no client connection is left (or the drain time is over), core shutdown has
   nobody left to drop calls of, and in-flight calls get the grace period.

Linux only, like the image: the sockets are found through ``/proc``. Elsewhere the drain
is skipped and the server stops as core's shutdown does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from pathlib import Path

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

log = logging.getLogger("ringfence.shutdown")

_LISTEN = "0A"
_ESTABLISHED = "01"
# A connection is let go this much later than its maximum age (core adds up to 10 %
# jitter) before the drain stops waiting for it.
AGE_JITTER = 1.1


def drain_time(max_connection_age_s: float) -> float:
    """How long a drain may take by default: every connection has had its age GOAWAY."""
    if max_connection_age_s <= 0:
        return 0.0
    return round(max_connection_age_s * AGE_JITTER + 1.0, 1)


def _socket_inodes(port: int, state: str) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 10 or parts[3] != state:
                continue
            if int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    return inodes


def _own_fds(inodes: set[str]) -> list[int]:
    """This process's file descriptors for these socket inodes."""
    if not inodes:
        return []
    found = []
    try:
        entries = os.listdir("/proc/self/fd")
    except OSError:
        return []
    for name in entries:
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            found.append(int(name))
    return found


def close_listeners(port: int) -> int:
    """Stop accepting connections on ``port`` while the ones open keep working: a
    ``shutdown()`` of this process's listening sockets (gRPC core then logs that it
    closes its acceptor). Returns how many were closed."""
    closed = 0
    for fd in _own_fds(_socket_inodes(port, _LISTEN)):
        try:
            with socket.socket(fileno=os.dup(fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
            closed += 1
        except OSError as exc:
            log.warning("cannot stop the listener", extra={"error": str(exc)})
    return closed


def open_connections(port: int) -> int:
    """Client connections this process holds open on ``port``."""
    return len(_own_fds(_socket_inodes(port, _ESTABLISHED)))


class Health(HealthServicer):  # type: ignore[misc]
    """``grpc.health.v1`` whose Watch streams can be ended: a health-checking client keeps
    one open per connection, and an open call would hold core's shutdown for the whole
    grace period."""

    def __init__(self) -> None:
        super().__init__()
        self._ended = False

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: object) -> None:
        condition = self._server_watchers[request.service]
        self._watcher_count_by_service[request.service] += 1
        last = None
        try:
            async with condition:
                while not self._ended:
                    status = self._server_status.get(
                        request.service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
                    )
                    if status != last:
                        await context.write(health_pb2.HealthCheckResponse(status=status))  # type: ignore[attr-defined]
                    last = status
                    await condition.wait()
        finally:
            self._watcher_count_by_service[request.service] -= 1
            if self._watcher_count_by_service[request.service] == 0:
                del self._server_watchers[request.service]
                del self._watcher_count_by_service[request.service]

    async def end_watches(self) -> None:
        """End every Watch stream (status OK, after their last NOT_SERVING)."""
        self._ended = True
        for condition in list(self._server_watchers.values()):
            async with condition:
                condition.notify_all()


async def drain(port: int, timeout_s: float, *, interrupted: asyncio.Event) -> int:
    """Refuse new connections and wait until the open ones are gone, ``timeout_s`` is
    over or ``interrupted`` is set; the number of connections still open."""
    loop = asyncio.get_running_loop()
    if close_listeners(port) == 0:
        log.warning("cannot stop accepting connections (no /proc?): stopping without a drain")
        return open_connections(port)
    deadline = loop.time() + timeout_s
    left = open_connections(port)
    log.info(
        "draining: new connections are refused; waiting for open ones to end",
        extra={"connections": left, "max_wait_s": timeout_s},
    )
    while left and loop.time() < deadline and not interrupted.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(0.1, max(0.0, deadline - loop.time()))):
                await interrupted.wait()
        left = open_connections(port)
    if left:
        log.warning(
            "drain over with client connections still open: calls they send during the "
            "shutdown may fail (set --max-connection-age below the drain time)",
            extra={"connections": left},
        )
    return left
