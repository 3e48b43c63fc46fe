"""Idempotency claims for the memory backend: one bounded aiocache TTL cache per tenant.

A claim maps a request id's keyed hash to what its first attempt answered (the values and
the event time), for the idempotency window, counted on the receipt clock (docs/state.md
§8; the server's receipt clock is the wall clock, so aiocache's own per-key expiry frees
the memory at about the same time). Its calls run with ``timeout=None`` because the
default wraps every call in ``asyncio.wait_for`` (measured ≈ 25 µs a call against ≈ 5 µs
without), and because without it a call never suspends: checking and claiming an id
cannot interleave with another request for the same id. Each tenant's cache holds at
most ``per_tenant`` claims (the oldest go first; checked every 32 claims, so the bound may
be passed by that many), so one tenant's flood of ids never drops another tenant's claims.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable

from aiocache import SimpleMemoryCache

from .backend import Applied, Claim
from .keys import KeyHasher

DEFAULT_CLAIMS_PER_TENANT = 100_000
_LEN_CHECK_EVERY = 32


class _Record:
    """What the first attempt answered; ``values`` is None while it is being applied."""

    __slots__ = ("fingerprint", "now", "received", "values")

    def __init__(self, fingerprint: str, now: float, received: float) -> None:
        self.fingerprint = fingerprint
        self.now = now
        self.received = received
        self.values: dict[str, int | None] | None = None


class MemoryClaims:
    def __init__(self, hasher: KeyHasher, per_tenant: int = DEFAULT_CLAIMS_PER_TENANT) -> None:
        if per_tenant < 1:
            raise ValueError("claims per tenant must be at least 1")
        self._hasher = hasher
        self._per_tenant = per_tenant
        self._caches: dict[str, SimpleMemoryCache] = {}
        self._added = 0

    async def run(
        self,
        tenant: str,
        claim: Claim,
        now: float,
        apply: Callable[[], Awaitable[dict[str, int | None]]],
        *,
        received: float | None = None,
    ) -> Applied:
        """Run ``apply`` unless ``claim`` was seen within its window of receipt time;
        remember its values if it runs."""
        cache = self._caches.get(tenant)
        if cache is None:
            cache = self._caches[tenant] = SimpleMemoryCache(timeout=None)
        key = self._hasher.request_key(claim.request_id)
        at = now if received is None else received
        record = _Record(claim.fingerprint, now, at)
        try:
            # One call claims a fresh id (most requests) and finds a seen one.
            await cache.add(key, record, ttl=claim.ttl_s)
        except ValueError:
            found: _Record | None = await cache.get(key)
            if found is not None and at - found.received >= claim.ttl_s:
                found = None  # past the window on the receipt clock: a new request
            if found is not None:
                if found.fingerprint == claim.fingerprint and found.values is not None:
                    return Applied(dict(found.values), True, found.now)
                # The same id with other content is not a retry: decided afresh, and the
                # id stays with its first request.
                return Applied(await apply(), False, now)
            await cache.set(key, record, ttl=claim.ttl_s)  # expired in between
        self._added += 1
        if self._added % _LEN_CHECK_EVERY == 0:
            await self._trim(cache)
        try:
            values = await apply()
        except BaseException:
            await cache.delete(key)  # nothing recorded: a retry must be able to record
            raise
        record.values = values
        return Applied(values, False, now)

    async def _trim(self, cache: SimpleMemoryCache) -> None:
        """Drop the oldest claims past the per-tenant bound (checked every few inserts:
        the bound may be passed by that many)."""
        excess = await cache.raw("__len__") - self._per_tenant
        if excess > 0:
            for oldest in list(itertools.islice(await cache.raw("keys"), excess)):
                await cache.delete(oldest)

    async def clear(self) -> None:
        for cache in self._caches.values():
            await cache.clear()
        self._caches.clear()
