"""Lists kept in state (``list NAME from state``): what every backend stores for them.

Entries live in the tenant's state backend, so every replica sharing it sees the same list:
a HASH of hashed number -> encoded entry (no raw number is ever stored) and a version
counter bumped by every change, in one Redis Cluster slot. Replicas read a list whole when
its version moves (``server.lists.writable``); the request path never touches this.

Not on the hot path: calls here are rare admin writes and one version poll per second, so
they use the client's own commands under their own, longer timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from redis.exceptions import RedisError

from .errors import StateError, StateTimeout
from .keys import list_keys

ADMIN_TIMEOUT_S = 2.0
_T = TypeVar("_T")

# KEYS: entries, version. ARGV: #puts, then field, value pairs, then fields to remove.
# Returns {added, updated, removed, version}.
WRITE_LUA = """
local n = tonumber(ARGV[1])
local added, updated, removed = 0, 0, 0
for i = 2, 2 * n, 2 do
  if redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    added = added + 1
  else
    updated = updated + 1
  end
end
for i = 2 * n + 2, #ARGV do
  removed = removed + redis.call('HDEL', KEYS[1], ARGV[i])
end
local v = redis.call('INCR', KEYS[2])
return {added, updated, removed, v}
"""

# KEYS: entries, version. Returns {version, field, value, field, value, ...}.
READ_LUA = """
local v = tonumber(redis.call('GET', KEYS[2]) or '0')
local out = {v}
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat do out[#out + 1] = flat[i] end
return out
"""


class ListStore(Protocol):
    async def write(
        self, tenant: str, name: str, puts: Mapping[str, bytes], removes: Sequence[str]
    ) -> tuple[int, int, int, int]:
        """Put and remove entries (by hashed number) in one change; (added, updated,
        removed, the list's new version)."""
        ...

    async def read(self, tenant: str, name: str) -> tuple[int, dict[str, bytes]]:
        """(version, every entry) of one list, as of one moment."""
        ...

    async def versions(self, lists: Sequence[tuple[str, str]]) -> list[int]:
        """The version of each (tenant, list); 0 for a list never written."""
        ...


class MemoryLists:
    """The memory backend's list storage: one dict per (tenant, list)."""

    def __init__(self) -> None:
        self._lists: dict[tuple[str, str], tuple[int, dict[str, bytes]]] = {}

    async def write(
        self, tenant: str, name: str, puts: Mapping[str, bytes], removes: Sequence[str]
    ) -> tuple[int, int, int, int]:
        version, entries = self._lists.get((tenant, name), (0, {}))
        entries = dict(entries)  # readers hold the old dict: replaced, never changed
        added = sum(1 for f in puts if f not in entries)
        entries.update(puts)
        removed = sum(1 for f in removes if entries.pop(f, None) is not None)
        self._lists[(tenant, name)] = (version + 1, entries)
        return added, len(puts) - added, removed, version + 1

    async def read(self, tenant: str, name: str) -> tuple[int, dict[str, bytes]]:
        version, entries = self._lists.get((tenant, name), (0, {}))
        return version, dict(entries)

    async def versions(self, lists: Sequence[tuple[str, str]]) -> list[int]:
        return [self._lists.get(key, (0, {}))[0] for key in lists]

    def clear(self) -> None:
        self._lists.clear()


class RedisLists:
    """The Redis (or Redis Cluster) backends' list storage, through their client."""

    def __init__(self, client: Any, what: str) -> None:
        self._client = client
        self._what = what

    async def write(
        self, tenant: str, name: str, puts: Mapping[str, bytes], removes: Sequence[str]
    ) -> tuple[int, int, int, int]:
        args: list[str | bytes] = [str(len(puts))]
        for f, value in puts.items():
            args += (f, value)
        args += list(removes)
        got = await self._guarded(self._client.eval(WRITE_LUA, 2, *list_keys(tenant, name), *args))
        added, updated, removed, version = (int(x) for x in got)
        return added, updated, removed, version

    async def read(self, tenant: str, name: str) -> tuple[int, dict[str, bytes]]:
        got = await self._guarded(self._client.eval(READ_LUA, 2, *list_keys(tenant, name)))
        version, flat = int(got[0]), got[1:]
        fields = (f.decode() if isinstance(f, bytes) else str(f) for f in flat[0::2])
        return version, dict(zip(fields, flat[1::2], strict=True))

    async def versions(self, lists: Sequence[tuple[str, str]]) -> list[int]:
        # One GET each: in a cluster the version keys live in different slots.
        keys = [list_keys(tenant, name)[1] for tenant, name in lists]
        got = await self._guarded(asyncio.gather(*(self._client.get(k) for k in keys)))
        return [int(v) if v is not None else 0 for v in got]

    async def _guarded(self, call: Awaitable[_T]) -> _T:
        try:
            async with asyncio.timeout(ADMIN_TIMEOUT_S):
                return await call
        except TimeoutError as exc:
            raise StateTimeout(f"{self._what} did not answer within {ADMIN_TIMEOUT_S:g} s") from exc
        except (RedisError, OSError) as exc:
            raise StateError(f"{self._what} failed: {type(exc).__name__}: {exc}") from exc
