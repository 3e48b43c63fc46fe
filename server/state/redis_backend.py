"""Redis state backend: one EVALSHA per apply, shared by every replica.

The script is loaded lazily and re-loaded when Redis answers NOSCRIPT (after a restart or
SCRIPT FLUSH). Every call runs under ``asyncio.timeout(timeout_s)``, so a stopped or
unreachable Redis costs at most ``timeout_s`` per call and never blocks the event loop;
the pool reconnects on its own once Redis is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dsl.aggregates import AggKind, AggregateRef

from .backend import StateStats
from .errors import StateError, StateTimeout
from .keys import KeyHasher
from .limits import DISTINCT_EXACT_CAP, RUN_MAX_MEMBERS, RUN_WALK_CAP
from .plan import Plan, Planner
from .script import LUA, SHA1

_KIND_CODE = {AggKind.COUNT: "c", AggKind.DISTINCT: "d", AggKind.RUN: "r"}
_HEAD = (str(DISTINCT_EXACT_CAP), str(RUN_WALK_CAP), str(RUN_MAX_MEMBERS))
Arg = str | bytes
_T = TypeVar("_T")


def encode(plan: Plan) -> tuple[list[str], list[Arg]]:
    """KEYS (each once) and ARGV for the script."""
    index: dict[str, int] = {}
    keys: list[str] = []

    def key_index(key: str) -> str:
        n = index.get(key)
        if n is None:
            keys.append(key)
            n = index[key] = len(keys)
        return str(n)

    args: list[Arg] = [*_HEAD, str(len(plan.reads)), str(len(plan.writes))]
    for _, kind, key, lo, hi, member, include in plan.reads:
        args += (_KIND_CODE[kind], key_index(key), str(lo), str(hi), member)
        args.append("1" if include else "0")
    for kind, key, pos, member, ttl_s, cutoff in plan.writes:
        args += (_KIND_CODE[kind], key_index(key), str(pos), member, str(ttl_s), str(cutoff))
    return keys, args


class RedisBackend:
    def __init__(
        self,
        url: str,
        *,
        hash_key: bytes,
        timeout_s: float = 0.02,
        max_connections: int = 64,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.stats = StateStats()
        self._planner = Planner(KeyHasher(hash_key))
        self._timeout_s = timeout_s
        backstop = max(1.0, 10 * timeout_s)  # asyncio.timeout is the real limit
        self._client = Redis.from_url(
            url,
            max_connections=max_connections,
            socket_timeout=backstop,
            socket_connect_timeout=backstop,
            # One immediate retry on a fresh connection: a pooled socket that died with a
            # Redis restart fails once, then the pool reconnects. No backoff: the caller's
            # timeout budget is milliseconds.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            decode_responses=False,
        )

    @property
    def client(self) -> Redis:
        """The underlying client (tests inspect TTLs through it)."""
        return self._client

    async def apply(
        self, tenant: str, refs: Sequence[AggregateRef], now: float, *, record: bool
    ) -> dict[str, int]:
        self.stats.calls += 1
        try:
            plan = self._planner.plan(tenant, refs, now, record=record)
        except StateError:
            self.stats.errors += 1
            raise
        values = dict(plan.fixed)
        if not plan.reads and not plan.writes:
            return values
        keys, args = encode(plan)
        raw = await self._guarded(self._eval(keys, args))
        if not isinstance(raw, list) or len(raw) != len(plan.reads):
            self.stats.errors += 1
            raise StateError("state script returned an unexpected reply")
        for op, value in zip(plan.reads, raw, strict=True):
            values[op[0]] = int(value)
        return values

    async def ping(self) -> bool:
        try:
            self.stats.keys = int(await self._guarded(self._dbsize()))
        except StateError:
            return False
        return True

    async def close(self) -> None:
        await self._client.aclose()

    async def _dbsize(self) -> int:
        self.stats.round_trips += 1
        return int(await self._client.dbsize())

    async def _eval(self, keys: list[str], args: list[Arg]) -> object:
        self.stats.round_trips += 1
        try:
            return await self._client.evalsha(SHA1, len(keys), *keys, *args)
        except NoScriptError:
            self.stats.round_trips += 2
            await self._client.script_load(LUA)
            return await self._client.evalsha(SHA1, len(keys), *keys, *args)

    async def _guarded(self, call: Awaitable[_T]) -> _T:
        """Run one network exchange under the per-call timeout; map failures to StateError."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await call
        except (TimeoutError, RedisTimeoutError) as exc:
            self.stats.errors += 1
            self.stats.timeouts += 1
            raise StateTimeout(f"redis did not answer within {self._timeout_s:g} s") from exc
        except (RedisError, OSError) as exc:
            self.stats.errors += 1
            raise StateError(f"redis failed: {type(exc).__name__}: {exc}") from exc
