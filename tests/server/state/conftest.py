"""Fixtures for the state backends: a real redis-server and both backends, fresh per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from conftest_redis import RedisClusterServers, RedisServer
from redis.asyncio import Redis

from server.state import MemoryBackend, RedisBackend, RedisClusterBackend, open_backend

Backend = MemoryBackend | RedisBackend | RedisClusterBackend

HASH_KEY = b"test-hash-key-0123456789abcdef"


async def _flush(url: str) -> None:
    client = Redis.from_url(url)
    try:
        await client.flushall()
    finally:
        await client.aclose()


@pytest.fixture(params=["memory", "redis", "cluster"])
async def backend(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[Backend]:
    """Each backend in turn, empty: memory, one Redis, a 3-master Redis Cluster. The Redis
    timeout is generous: these tests are about semantics, and CI machines stall."""
    if request.param == "memory":
        b = open_backend("memory://", hash_key=HASH_KEY)
    elif request.param == "redis":
        await _flush(redis_server.url)
        b = open_backend(redis_server.url, hash_key=HASH_KEY, timeout_s=10.0)
    else:
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        cluster.flush()
        b = open_backend(cluster.url, hash_key=HASH_KEY, timeout_s=10.0)
    assert isinstance(b, Backend)
    yield b
    await b.close()
