from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import processes
import pytest
from conftest_redis import RedisClusterServers, RedisServer, RedisUnavailable
from support import Running, copy_rules, running_server


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    """A private copy of the shipped rules/ folder, safe to edit."""
    return copy_rules(tmp_path)


@pytest.fixture
async def demo(rules_copy: Path) -> AsyncIterator[Running]:
    """A server with the shipped rules and memory state, fresh for each test."""
    async with running_server(rules_copy) as running:
        yield running


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on a free 127.0.0.1 port, shared by one test module."""
    with processes.running(
        lambda: RedisServer.start(tmp_path_factory.mktemp("redis")), RedisUnavailable
    ) as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A real 3-master Redis Cluster on free loopback ports, shared by the whole run (tests
    flush it); ~2 s to start."""
    with processes.running(
        lambda: RedisClusterServers.start(tmp_path_factory.mktemp("cluster")), RedisUnavailable
    ) as cluster:
        yield cluster


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[RedisClusterServers]:
    """A Redis Cluster for one test alone: fault tests kill masters and move slots."""
    with processes.running(
        lambda: RedisClusterServers.start(tmp_path / "cluster"), RedisUnavailable
    ) as cluster:
        yield cluster


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for one test alone: fault tests pause, kill and restart it."""
    with processes.running(
        lambda: RedisServer.start(tmp_path / "redis"), RedisUnavailable
    ) as server:
        yield server
