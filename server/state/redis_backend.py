"""Redis state backend: one EVALSHA per apply, shared by every replica.

Calls that arrive in the same event-loop iteration are coalesced: their EVALSHAs go out
as one pipeline (one write, one read) instead of one network exchange each, which is
most of what a Redis call costs this process. Each call still gets its own reply or
error, and each is its own command inside Redis (a script error fails only its caller).

The script is loaded lazily and re-loaded when Redis answers NOSCRIPT (after a restart or
SCRIPT FLUSH). Every call waits under ``asyncio.timeout(timeout_s)``, and so does every
batch, so a stopped or unreachable Redis costs at most ``timeout_s`` per call, never
blocks the event loop and never piles batches up; the pool reconnects on its own once
Redis is back.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from .script import LUA, SHA1
from .scripted import Call, ScriptedBackend, fail, settle

_T = TypeVar("_T")
# Batches out at once. While they are, calls queue and leave together when one returns:
# under load a batch carries what arrived during a round trip, at no cost when idle.
_MAX_IN_FLIGHT = 1


class RedisBackend(ScriptedBackend):
    _client: Redis

    def __init__(
        self,
        url: str,
        *,
        hash_key: bytes,
        timeout_s: float = 0.02,
        max_connections: int = 64,
    ) -> None:
        super().__init__(hash_key=hash_key, timeout_s=timeout_s)
        self._client = Redis.from_url(
            url,
            max_connections=max_connections,
            socket_timeout=self._backstop,
            socket_connect_timeout=self._backstop,
            # One immediate retry on a fresh connection: a pooled socket that died with a
            # Redis restart fails once, then the pool reconnects. No backoff: the caller's
            # timeout budget is milliseconds.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            decode_responses=False,
        )
        # Pre-encoded once: redis-py would encode the command name and SHA on every call.
        self._evalsha = b"$7\r\nEVALSHA\r\n$40\r\n" + SHA1.encode("ascii") + b"\r\n"
        self._queue: list[Call] = []
        self._batches: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._flush_due = False

    @property
    def client(self) -> Redis:
        """The underlying client (tests inspect TTLs through it)."""
        return self._client

    async def close(self) -> None:
        for task in list(self._batches):
            task.cancel()
        await self._client.aclose()

    async def _exchange(self, commands: list[tuple[int, bytes]]) -> list[object]:
        # One plan, one call: it joins the next batch on the pipelined connection.
        return [await self._submit(commands[0][1])]

    def _submit(self, command: bytes) -> asyncio.Future[object]:
        """Queue one EVALSHA for the next batch; the future gets its reply (an exception
        instance for an error reply) or the batch's failure."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[object] = loop.create_future()
        self._queue.append((command, future))
        if not self._flush_due and self._in_flight < _MAX_IN_FLIGHT:
            # Sent once the callbacks already due in this iteration have queued theirs.
            self._flush_due = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_due = False
        batch = [call for call in self._queue if not call[1].done()]
        self._queue = []
        if batch:
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._batches.add(task)  # a task nobody references may be collected
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        self._in_flight -= 1
        # What queued while the batch was out goes next, as one batch.
        if self._queue and not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def _send(self, batch: list[Call]) -> None:
        try:
            # The batch's own limit: callers give up at ``timeout_s`` whatever happens
            # here, and this frees the connection (a cut read disconnects it) instead
            # of holding it until the socket timeout while Redis hangs.
            async with asyncio.timeout(self._timeout_s):
                replies = await self._pipeline([command for command, _ in batch])
                missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
                if missing:
                    self.stats.round_trips += 1 + len(missing)
                    await self._client.script_load(LUA)
                    again = await self._pipeline([batch[i][0] for i in missing])
                    for i, reply in zip(missing, again, strict=True):
                        replies[i] = reply
        except BaseException as exc:
            fail(batch, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        settle(batch, replies)

    async def _pipeline(self, commands: list[bytes]) -> list[object]:
        """Send packed commands in one write and read their replies in order (an error
        reply comes back as its exception). Below redis-py's Pipeline, whose per-command
        bookkeeping cost more than the network exchange it saves."""
        packed = b"".join(commands)
        pool = self._client.connection_pool
        for attempt in (1, 2):
            conn = await pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                await conn.send_packed_command(packed, check_health=False)
                replies: list[object] = []
                for _ in commands:
                    try:
                        replies.append(await conn.read_response())
                    except ResponseError as exc:
                        replies.append(exc)
                return replies
            except RedisConnectionError:
                # A pooled socket that died with a Redis restart fails once (the
                # connection has disconnected itself); the retry connects afresh.
                if attempt == 2:
                    raise
            finally:
                await pool.release(conn)
        raise AssertionError("unreachable")
