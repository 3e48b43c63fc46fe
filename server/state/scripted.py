"""What the Redis backends share: plan a request, ship it as script calls, read the replies.

:class:`~server.state.redis_backend.RedisBackend` sends the whole plan as one call to one
server; :class:`~server.state.redis_cluster.RedisClusterBackend` splits it by hash slot and
sends one call per slot (one write per master). Everything around that exchange — the
plan, the encoding, decoding replies and claim records, the counters, the timeout and the
errors it maps to — is the same and lives here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dsl.aggregates import RefLike

from .backend import Applied, Claim, StateStats
from .errors import StateError, StateTimeout
from .keys import KeyHasher
from .lists import RedisLists
from .plan import Plan, Planner
from .script import claim_args, decode, encode, pack

_T = TypeVar("_T")

# A script call waiting in a batch: its packed command and the caller's future.
Call = tuple[bytes, "asyncio.Future[object]"]


def settle(batch: Sequence[Call], replies: Sequence[object]) -> None:
    """Hand each waiting caller its reply (one that gave up is skipped)."""
    for (_, future), reply in zip(batch, replies, strict=True):
        if not future.done():
            future.set_result(reply)


def fail(batch: Sequence[Call], exc: BaseException) -> None:
    """Fail every waiting caller of a batch that could not be sent or read."""
    for _, future in batch:
        if not future.done():
            future.set_exception(_copy(exc))


def _copy(exc: BaseException) -> BaseException:
    """A fresh instance per waiting caller: one exception object raised in several tasks
    would collect all their tracebacks."""
    if isinstance(exc, asyncio.CancelledError):
        return asyncio.CancelledError()
    if isinstance(exc, TimeoutError | RedisTimeoutError):
        return TimeoutError()
    if isinstance(exc, RedisError | OSError):
        return RedisConnectionError(f"{type(exc).__name__}: {exc}")
    return RedisError(f"{type(exc).__name__}: {exc}")


class ScriptedBackend:
    """The shared half of a backend that runs :mod:`server.state.script` in Redis.

    Subclasses call ``__init__``, set ``_evalsha``, ``_client`` and ``_what`` (how
    messages name the store) and implement :meth:`_parts` (how a plan is split) and
    :meth:`_exchange` (how the calls travel)."""

    _evalsha: bytes
    _client: Any
    _what: str = "redis"

    def __init__(self, *, hash_key: bytes, timeout_s: float) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.stats = StateStats()
        self._planner = Planner(KeyHasher(hash_key))
        self._timeout_s = timeout_s
        # The client's socket timeouts: asyncio.timeout(timeout_s) is the real limit.
        self._backstop = max(1.0, 10 * timeout_s)

    async def apply(
        self,
        tenant: str,
        refs: Sequence[RefLike],
        now: float,
        *,
        record: bool,
        received: float | None = None,
    ) -> dict[str, int | None]:
        return (await self._apply(tenant, refs, now, record, None, received)).values

    async def apply_claimed(
        self,
        tenant: str,
        refs: Sequence[RefLike],
        now: float,
        claim: Claim,
        *,
        received: float | None = None,
    ) -> Applied:
        return await self._apply(tenant, refs, now, True, claim, received)

    async def _apply(
        self,
        tenant: str,
        refs: Sequence[RefLike],
        now: float,
        record: bool,
        claim: Claim | None,
        received: float | None,
    ) -> Applied:
        self.stats.calls += 1
        at = now if received is None else received
        try:
            plan = self._planner.plan(tenant, refs, now, record=record, received=at)
        except StateError:
            self.stats.errors += 1
            raise
        values: dict[str, int | None] = dict(plan.fixed)
        if not plan.reads and not plan.writes:
            return Applied(plan.complete(values), False, now)
        hasher = self._planner.hasher
        parts = self._parts(plan)
        commands: list[tuple[int, bytes]] = []
        for route, part in parts:
            keys, args = encode(
                part, None if claim is None else claim_args(hasher, part, claim, now, at)
            )
            commands.append((route, pack(self._evalsha, str(len(keys)), keys, args)))
        self.stats.round_trips += 1
        replies = await self._guarded(self._exchange(commands))
        replayed_at: float | None = None
        try:
            for (_, part), raw in zip(parts, replies, strict=True):
                got, then = decode(part, raw)
                values.update(got)
                if then is not None:
                    replayed_at = then if replayed_at is None else min(replayed_at, then)
        except StateError:
            self.stats.errors += 1
            self._bad_replies(replies)
            raise
        plan.complete(values)
        if replayed_at is None:
            return Applied(values, False, now)
        self.stats.replays += 1
        return Applied(values, True, replayed_at)

    def _parts(self, plan: Plan) -> list[tuple[int, Plan]]:
        """The script calls a plan becomes, each with where it goes (a slot, or 0)."""
        return [(0, plan)]

    async def _exchange(self, commands: list[tuple[int, bytes]]) -> list[object]:
        """Every command answered, in order; a reply is a value or an exception instance."""
        raise NotImplementedError

    def _bad_replies(self, replies: list[object]) -> None:
        """Told of replies that did not decode (the cluster refreshes its slot map)."""

    def _failed(self) -> None:
        """Told of an exchange that failed (the cluster refreshes its slot map)."""

    @property
    def lists(self) -> RedisLists:
        """Lists kept in state, through this backend's client (server/state/lists.py)."""
        return RedisLists(self._client, self._what)

    async def ping(self) -> bool:
        try:
            self.stats.keys = int(await self._guarded(self._dbsize()))
        except StateError:
            return False
        return True

    async def _dbsize(self) -> int:
        self.stats.round_trips += 1
        return int(await self._client.dbsize())

    async def _guarded(self, call: Awaitable[_T]) -> _T:
        """Wait for one network exchange under the per-call timeout; map failures to
        StateError."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await call
        except (TimeoutError, RedisTimeoutError) as exc:
            self.stats.errors += 1
            self.stats.timeouts += 1
            raise StateTimeout(f"{self._what} did not answer within {self._timeout_s:g} s") from exc
        except (RedisError, OSError) as exc:
            self.stats.errors += 1
            self._failed()
            raise StateError(f"{self._what} failed: {type(exc).__name__}: {exc}") from exc
