"""``open_backend``: a state backend from a URL in the deployment's configuration."""

from __future__ import annotations

from urllib.parse import urlsplit

from server.urls import check_url

from .backend import StateBackend
from .memory import MemoryBackend
from .redis_backend import RedisBackend
from .redis_cluster import CLUSTER_SCHEMES, RedisClusterBackend

_REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})


def open_backend(
    url: str, *, hash_key: bytes, timeout_s: float = 0.02, max_keys: int = 1_000_000
) -> StateBackend:
    """``memory://`` (embedded, one replica) or ``redis://host:port/db`` / ``rediss://`` /
    ``unix:///path?db=0`` (shared by replicas), or ``redis+cluster://host:port,host:port``
    (``rediss+cluster://``: a Redis Cluster, keys spread over its masters). Opening connects
    lazily: a Redis that is down at start-up surfaces as StateError on the first call."""
    # redis-py percent-decodes the user name and password into its AUTH command.
    check_url(url, "the state backend URL")
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        return MemoryBackend(hash_key=hash_key, max_keys=max_keys)
    if scheme in _REDIS_SCHEMES:
        return RedisBackend(url, hash_key=hash_key, timeout_s=timeout_s)
    if scheme in CLUSTER_SCHEMES:
        return RedisClusterBackend(url, hash_key=hash_key, timeout_s=timeout_s)
    # The URL may carry a password: name only the scheme.
    raise ValueError(
        f"unsupported state backend URL scheme {scheme!r}: expected memory://, redis://, "
        "rediss://, unix://, redis+cluster:// or rediss+cluster://"
    )
