"""Servers for the semantics tests: one per backend and module, each serving many examples
(every example installs its tenants under a fresh prefix)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest_redis import RedisClusterServers, RedisServer
from semantics.paths import Live


def _running(root: Path, state: str) -> Iterator[Live]:
    live = Live.start(root, state)
    try:
        yield live
    finally:
        live.server.stop()


@pytest.fixture(scope="module")
def memory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    yield from _running(tmp_path_factory.mktemp("memory") / "rules", "memory://")


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[Live]:
    yield from _running(tmp_path_factory.mktemp("redis") / "rules", redis_server.url)


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, redis_cluster: RedisClusterServers
) -> Iterator[Live]:
    """Flushed first: the cluster is shared by the whole run."""
    redis_cluster.flush()
    yield from _running(tmp_path_factory.mktemp("cluster") / "rules", redis_cluster.url)
