"""Keyed hashing of phone numbers for logs, traces and decision logs.

A keyed hash (not a bare SHA-256) because the space of phone numbers is small enough to
brute-force an unkeyed hash. The same key across replicas makes the same number hash the
same everywhere, so an analyst can still follow one number through the logs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from functools import lru_cache


class NumberHasher:
    __slots__ = ("_hash", "_key")

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key else secrets.token_bytes(32)
        key_copy = self._key

        @lru_cache(maxsize=65536)
        def _hash(value: str) -> str:
            digest = hmac.new(key_copy, value.encode(), hashlib.blake2b).hexdigest()
            return "h:" + digest[:20]

        self._hash = _hash

    @property
    def key(self) -> bytes:
        return self._key

    def __call__(self, value: str) -> str:
        return self._hash(value) if value else ""
