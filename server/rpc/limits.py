"""Per-tenant rate limits: a token bucket per tenant and process.

A tenant over its ``[limits] max_rps`` is answered RESOURCE_EXHAUSTED before any parsing or
state work, so a flood from one tenant costs the others as little as a refusal can.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    __slots__ = ("burst", "clock", "rate", "stamp", "tokens")

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        # One second of traffic may arrive at once: bursts are normal for batch callers.
        self.burst = max(1.0, rate)
        self.tokens = self.burst
        self.clock = clock
        self.stamp = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Limiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: dict[str, TokenBucket] = {}
        self._clock = clock

    def allow(self, tenant: str, max_rps: int) -> bool:
        if max_rps <= 0:
            return True
        bucket = self._buckets.get(tenant)
        if bucket is None or bucket.rate != max_rps:
            bucket = self._buckets[tenant] = TokenBucket(max_rps, self._clock)
        return bucket.take()
