"""Pure parts of the state package: bucket arithmetic, key hashing, URL parsing."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from dsl.aggregates import AggKind, AggregateRef, AggregateSpec, KeyKind, Window
from server.state import MemoryBackend, RedisBackend, RedisClusterBackend, StateError, open_backend
from server.state.keys import KeyHasher, run_suffix
from server.state.redis_cluster import parse_cluster_url
from server.state.windows import bucket_width, read_range, record_bucket, ttl_s

SH = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    ("size", "width"), [(1, 1), (59, 1), (60, 1), (119, 1), (120, 2), (3600, 60), (86_400, 1440)]
)
def test_bucket_width(size: int, width: int) -> None:
    assert bucket_width(size) == width


@pytest.mark.parametrize(
    ("window", "now", "expected"),
    [
        (Window(size_s=3600), 7200.0, (61, 120)),  # exactly 60 buckets on edges
        (Window(size_s=3600), 7230.0, (61, 121)),  # off an edge: one extra partial bucket
        (Window(size_s=3600, offset_s=3600), 7200.0, (1, 60)),
        (Window(size_s=60), 100.5, (41, 101)),
    ],
)
def test_read_range(window: Window, now: float, expected: tuple[int, int]) -> None:
    assert read_range(window, now) == expected


def test_calendar_bucket_changes_exactly_at_local_midnight() -> None:
    w = Window(size_s=86_400, calendar_day=True, timezone="Asia/Shanghai")
    midnight = datetime(2026, 3, 2, tzinfo=SH).timestamp()
    assert record_bucket(w, midnight - 0.001) + 1 == record_bucket(w, midnight)
    assert read_range(w, midnight) == (record_bucket(w, midnight),) * 2


def test_ttl_covers_size_offset_and_slack() -> None:
    assert ttl_s(Window(size_s=3600), 7200) == 3600 + 7200 + 60 + 60


def test_unknown_timezone_is_a_state_error() -> None:
    w = Window(size_s=86_400, calendar_day=True, timezone="Mars/Olympus")
    with pytest.raises(StateError, match="Mars/Olympus"):
        record_bucket(w, 0.0)


@pytest.mark.parametrize(
    ("key", "member", "suffix"),
    [
        ("170", "17012345678", "12345678"),
        ("1703", "17031234567", "1234567"),
        ("86170", "17012345678", "12345678"),  # E.164 prefix, national member
        ("86", "17012345678", "17012345678"),  # no overlap: the whole member
    ],
)
def test_run_suffix(key: str, member: str, suffix: str) -> None:
    assert run_suffix(key, member) == suffix


def test_hashing_is_keyed_and_stable() -> None:
    a, b = KeyHasher(b"one"), KeyHasher(b"two")
    assert a.key(KeyKind.NUMBER, "+8613800138000") == a.key(KeyKind.NUMBER, "+8613800138000")
    assert a.key(KeyKind.NUMBER, "+8613800138000") != b.key(KeyKind.NUMBER, "+8613800138000")
    assert a.key(KeyKind.SEGMENT, "170") == "170"  # not personal, kept readable
    assert KeyHasher(b"x" * 100).member("m") != KeyHasher(b"x" * 99).member("m")


@pytest.mark.parametrize("bad", [b"", "text"])
def test_hash_key_must_be_bytes(bad: object) -> None:
    with pytest.raises(ValueError, match="hash_key"):
        KeyHasher(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "cls"),
    [
        ("memory://", MemoryBackend),
        ("redis://127.0.0.1:1/0", RedisBackend),
        ("rediss://127.0.0.1:1/0", RedisBackend),
        ("unix:///tmp/redis.sock?db=1", RedisBackend),
        ("redis+cluster://127.0.0.1:1,127.0.0.1:2", RedisClusterBackend),
        ("rediss+cluster://u:p@127.0.0.1:1", RedisClusterBackend),
    ],
)
async def test_open_backend(url: str, cls: type) -> None:
    b = open_backend(url, hash_key=b"k")
    assert isinstance(b, cls)
    await b.close()


@pytest.mark.parametrize("url", ["memcached://x", "http://user:secret@host", "", "redis"])
def test_open_backend_rejects_unknown_schemes(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported state backend URL") as info:
        open_backend(url, hash_key=b"k")
    assert "secret" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "seeds", "settings"),
    [
        ("redis+cluster://10.0.0.1:7000", [("10.0.0.1", 7000)], {}),
        (
            "redis+cluster://a:7000,b:7001,[::1]:7002",
            [("a", 7000), ("b", 7001), ("::1", 7002)],
            {},
        ),
        (
            "rediss+cluster://app:s%40cret@a:7000,b:7001",
            [("a", 7000), ("b", 7001)],
            {"username": "app", "password": "s@cret", "ssl": True},
        ),
    ],
)
def test_cluster_urls(url: str, seeds: list[tuple[str, int]], settings: dict[str, object]) -> None:
    assert parse_cluster_url(url) == (seeds, settings)


@pytest.mark.parametrize(
    "url", ["redis+cluster://", "redis+cluster://:secret@a", "redis+cluster://a:b:c,:1"]
)
def test_bad_cluster_urls_never_echo_a_password(url: str) -> None:
    with pytest.raises(ValueError, match="host:port") as info:
        parse_cluster_url(url)
    assert "secret" not in str(info.value)


@pytest.mark.parametrize("window", [Window(size_s=0), Window(size_s=60, offset_s=-1)])
async def test_bad_windows_are_state_errors(window: Window) -> None:
    b = MemoryBackend(hash_key=b"k")
    ref = AggregateRef(
        AggregateSpec(id="x", kind=AggKind.COUNT, key=KeyKind.NUMBER, window=window), "+861"
    )
    with pytest.raises(StateError, match="'x'"):
        await b.apply("t1", [ref], 0.0, record=True)
    assert b.stats.errors == 1


@pytest.mark.parametrize("member", ["", "abc", "１２３"])
async def test_run_of_a_non_number_is_zero(member: str) -> None:
    b = MemoryBackend(hash_key=b"k")
    ref = AggregateRef(
        AggregateSpec(id="r", kind=AggKind.RUN, key=KeyKind.SEGMENT, window=Window(size_s=60)),
        "",
        member,
    )
    assert await b.apply("t1", [ref], 0.0, record=True) == {"r": 0}
    assert len(b) == 0
