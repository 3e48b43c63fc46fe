"""Redis Cluster state backend: a tenant's keys spread over every master.

Keys are placed by what they count (:func:`keys.hash_tag`): everything about one number
shares a slot, as does everything about one device, IP, app, list or segment. One decision
touches a handful of slots, usually on several masters. The plan is split by slot, each
slot's part is one EVALSHA of the same script (a script may only touch one slot), and each
master involved gets one write carrying its parts (and those of every other decision made
in the same event-loop iteration); the masters are asked concurrently, so a decision still
costs one round-trip *time*. A request id's claim is kept in every slot the
decision writes, in the same script call, so a retry is recognised slot by slot: after a
partial failure a retry records exactly the parts that were not recorded.

redis-py's cluster client keeps the topology (CLUSTER SLOTS, refreshed after a MOVED or a
lost node) and the per-node connections; the exchanges themselves are packed by hand as in
:mod:`redis_backend`. Redirections are followed here: MOVED updates the slot map and
resends, ASK sends ``ASKING`` and the script on one connection, TRYAGAIN (a slot half
migrated) waits briefly and resends, NOSCRIPT loads the script on that node. Everything runs
under the per-call timeout, so a dead or hung master costs at most ``timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    MovedError,
    NoScriptError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from .plan import Plan
from .script import LUA, SHA1
from .scripted import Call, ScriptedBackend, fail, settle

_T = TypeVar("_T")
_REDIRECTS = 5  # per slot part and call: a slot moves at most once or twice meanwhile
_TRYAGAIN_WAIT_S = 0.005
_REFRESH_EVERY_S = 0.5  # topology refreshes after a lost node, at most this often
_ASKING = b"*1\r\n$6\r\nASKING\r\n"
CLUSTER_SCHEMES = frozenset({"redis+cluster", "rediss+cluster"})


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """``redis+cluster://[user:password@]host:port[,host:port...]`` (``rediss+cluster``
    for TLS): the seed nodes and the connection settings. Any one live seed finds the rest.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in CLUSTER_SCHEMES:
        raise ValueError("a Redis Cluster URL starts with redis+cluster:// or rediss+cluster://")
    netloc = parts.netloc
    kwargs: dict[str, Any] = {}
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        if user:
            kwargs["username"] = unquote(user)
        if password:
            kwargs["password"] = unquote(password)
    seeds: list[tuple[str, int]] = []
    for hostport in netloc.split(","):
        host, sep, port = hostport.rpartition(":")
        if not sep or not host or not port.isdigit():
            # Name no more than the shape: the URL may carry a password.
            raise ValueError("a Redis Cluster URL lists seed nodes as host:port,host:port")
        seeds.append((host.strip("[]"), int(port)))
    if parts.scheme.lower() == "rediss+cluster":
        kwargs["ssl"] = True
    return seeds, kwargs


def split_by_slot(plan: Plan) -> dict[int, Plan]:
    """The plan's reads and writes grouped by the cluster slot of their key."""
    groups: dict[int, Plan] = {}
    slots: dict[str, int] = {}

    def group(key: str) -> Plan:
        slot = slots.get(key)
        if slot is None:
            slot = slots[key] = key_slot(key.encode())
        found = groups.get(slot)
        if found is None:
            found = groups[slot] = Plan([], [], [], [])
        return found

    for read in plan.reads:
        group(read[2]).reads.append(read)
    for write in plan.writes:
        group(write[1]).writes.append(write)
    return groups


class _NodeQueue:
    """One master's calls waiting for its next batch."""

    __slots__ = ("calls", "flush_due", "in_flight", "node")

    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self.calls: list[Call] = []
        self.flush_due = False
        self.in_flight = False


class RedisClusterBackend(ScriptedBackend):
    _what = "redis cluster"
    _client: RedisCluster

    def __init__(
        self,
        url: str,
        *,
        hash_key: bytes,
        timeout_s: float = 0.02,
        max_connections: int = 64,
    ) -> None:
        super().__init__(hash_key=hash_key, timeout_s=timeout_s)
        seeds, kwargs = parse_cluster_url(url)
        self.node_calls = 0  # exchanges with one master (a decision makes one per master)
        self._client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in seeds],
            require_full_coverage=False,
            max_connections=max_connections,
            socket_timeout=self._backstop,
            socket_connect_timeout=self._backstop,
            decode_responses=False,
            **kwargs,
        )
        self._evalsha = b"$7\r\nEVALSHA\r\n$40\r\n" + SHA1.encode("ascii") + b"\r\n"
        self._ready = False
        self._refresh: asyncio.Task[None] | None = None
        self._refreshed_at = 0.0
        self._loading: dict[str, asyncio.Task[None]] = {}
        self._queues: dict[str, _NodeQueue] = {}
        self._batches: set[asyncio.Task[None]] = set()

    @property
    def client(self) -> RedisCluster:
        """The underlying cluster client (tests read keys and TTLs through it)."""
        return self._client

    def _parts(self, plan: Plan) -> list[tuple[int, Plan]]:
        return list(split_by_slot(plan).items())

    def _bad_replies(self, replies: list[object]) -> None:
        if any(isinstance(r, RedisConnectionError | OSError) for r in replies):
            self._schedule_refresh()

    def _failed(self) -> None:
        self._schedule_refresh()

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
        for task in list(self._batches):
            task.cancel()
        await self._client.aclose()

    # -- exchanges ---------------------------------------------------------------------

    async def _exchange(self, commands: list[tuple[int, bytes]]) -> list[object]:
        """Every (slot, command) answered: one write per master, concurrently; then any
        redirected part followed on its own. A reply is a value or an exception instance."""
        if not self._ready:
            await self._client.initialize()
            self._ready = True
        manager = self._client.nodes_manager
        replies: list[object] = [None] * len(commands)
        waiting: list[tuple[int, asyncio.Future[object]]] = []
        for i, (slot, command) in enumerate(commands):
            try:
                node = manager.get_node_from_slot(slot)
            except RedisError as exc:  # a slot nobody serves (its master is gone)
                replies[i] = exc
                continue
            waiting.append((i, self._submit(node, command)))
        for i, future in waiting:
            replies[i] = await future
        redirected = [
            i
            for i, r in enumerate(replies)
            if isinstance(r, AskError | TryAgainError | NoScriptError)  # MovedError is an AskError
        ]
        if redirected:

            async def follow(i: int) -> None:
                replies[i] = await self._follow(commands[i][0], commands[i][1], replies[i])

            await asyncio.gather(*(follow(i) for i in redirected))
        return replies

    async def _follow(self, slot: int, command: bytes, reply: object) -> object:
        """Resend one slot part until it is answered or redirected too often."""
        manager = self._client.nodes_manager
        for _ in range(_REDIRECTS):
            self.stats.round_trips += 1
            if isinstance(reply, MovedError):
                await manager.move_slot(reply)
                node = manager.get_node_from_slot(slot)
                (reply,) = await self._on_node(node, [command])
            elif isinstance(reply, AskError):
                node = self._node(reply.host, reply.port)
                _, reply = await self._on_node(node, [_ASKING, command])
            elif isinstance(reply, TryAgainError):
                # A multi-key script on a slot whose keys are half migrated: Redis asks to
                # come back once the keys it needs are on one side.
                await asyncio.sleep(_TRYAGAIN_WAIT_S)
                (reply,) = await self._on_node(manager.get_node_from_slot(slot), [command])
            elif isinstance(reply, NoScriptError):
                node = manager.get_node_from_slot(slot)
                await self._load_script(node)
                (reply,) = await self._on_node(node, [command])
            else:
                return reply
        return reply

    async def _load_script(self, node: ClusterNode) -> None:
        """SCRIPT LOAD on ``node``, once however many parts met NOSCRIPT there at once."""
        task = self._loading.get(node.name)
        if task is None or task.done():

            async def load() -> None:
                await self._on_node(node, [_script_load()])

            task = self._loading[node.name] = asyncio.get_running_loop().create_task(load())
        await asyncio.shield(task)

    def _submit(self, node: ClusterNode, command: bytes) -> asyncio.Future[object]:
        """Queue one command for ``node``'s next batch: the commands of every decision
        made in the same event-loop iteration leave in one write per master, and while a
        batch is out, the next one gathers (as in :mod:`redis_backend`)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[object] = loop.create_future()
        queue = self._queues.get(node.name)
        if queue is None:
            queue = self._queues[node.name] = _NodeQueue(node)
        queue.calls.append((command, future))
        if not queue.flush_due and not queue.in_flight:
            queue.flush_due = True
            loop.call_soon(self._flush, queue)
        return future

    def _flush(self, queue: _NodeQueue) -> None:
        queue.flush_due = False
        batch = [call for call in queue.calls if not call[1].done()]
        queue.calls = []
        if batch:
            queue.in_flight = True
            task = asyncio.get_running_loop().create_task(self._send(queue.node, batch))
            self._batches.add(task)
            task.add_done_callback(lambda t: self._sent(t, queue))

    def _sent(self, task: asyncio.Task[None], queue: _NodeQueue) -> None:
        self._batches.discard(task)
        queue.in_flight = False
        if queue.calls and not queue.flush_due:
            queue.flush_due = True
            asyncio.get_running_loop().call_soon(self._flush, queue)

    async def _send(self, node: ClusterNode, batch: list[Call]) -> None:
        try:
            # The batch's own limit: its callers give up at timeout_s whatever happens.
            async with asyncio.timeout(self._timeout_s):
                replies = await self._on_node(node, [command for command, _ in batch])
        except BaseException as exc:
            fail(batch, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        settle(batch, replies)

    def _node(self, host: str, port: int) -> ClusterNode:
        manager = self._client.nodes_manager
        node = manager.get_node(host=host, port=port)
        if node is None:  # a master we have not met yet (a new one during a reshard)
            node = ClusterNode(host, port, **manager.connection_kwargs)
            manager.set_nodes(manager.nodes_cache, {node.name: node})
        return node

    async def _on_node(self, node: ClusterNode, commands: list[bytes]) -> list[object]:
        """One write to ``node`` and its replies in order (an error reply as its exception
        instance). A lost connection fails every command of the exchange."""
        self.node_calls += 1
        conn = node.acquire_connection()
        try:
            await conn.send_packed_command(b"".join(commands), check_health=False)
            replies: list[object] = []
            for _ in commands:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:
                    replies.append(exc)
            return replies
        except (RedisConnectionError, OSError) as exc:
            await conn.disconnect()
            self._schedule_refresh()
            return [exc] * len(commands)
        except BaseException:
            # Cut off mid-exchange (the call's timeout): the connection's state is unknown.
            await conn.disconnect(nowait=True)
            raise
        finally:
            node.release(conn)

    def _schedule_refresh(self) -> None:
        """Re-read the topology in the background (a master died or failed over)."""
        now = time.monotonic()
        if self._refresh is not None and not self._refresh.done():
            return
        if now - self._refreshed_at < _REFRESH_EVERY_S:
            return
        self._refreshed_at = now

        async def refresh() -> None:
            with contextlib.suppress(Exception):
                await self._client.nodes_manager.initialize()

        self._refresh = asyncio.get_running_loop().create_task(refresh())


def _script_load() -> bytes:
    body = LUA.encode("utf-8")
    return b"*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n$%d\r\n%s\r\n" % (len(body), body)
