"""Velocity state: windowed counts, distinct counts and runs of numbers per tenant.

``open_backend(url, hash_key=...)`` returns a :class:`StateBackend` whose ``apply`` fetches
every aggregate a request needs and records the event, in one round trip.
"""

from __future__ import annotations

from .backend import Applied, Claim, StateBackend, StateStats
from .errors import StateError, StateTimeout
from .factory import open_backend
from .memory import MemoryBackend
from .redis_backend import RedisBackend
from .redis_cluster import RedisClusterBackend

__all__ = [
    "Applied",
    "Claim",
    "MemoryBackend",
    "RedisBackend",
    "RedisClusterBackend",
    "StateBackend",
    "StateError",
    "StateStats",
    "StateTimeout",
    "open_backend",
]
