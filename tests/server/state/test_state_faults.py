"""The Redis backend against a real redis-server that hangs, dies and comes back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dsl.aggregates import AggKind, AggregateRef, AggregateSpec, KeyKind, Window
from server.state import RedisBackend, StateError, StateTimeout, open_backend

pytestmark = pytest.mark.redis

HASH_KEY = b"fault-test-key"
T0 = 1_767_225_600.0
COUNT = AggregateSpec(id="c", kind=AggKind.COUNT, key=KeyKind.NUMBER, window=Window(size_s=3600))
REF = AggregateRef(COUNT, "+8613800138000")
# A hang must be bounded by the backend's own timeout; this outer guard only turns a
# regression (a hang) into a failure instead of a stuck test run.
GUARD_S = 30


def redis_backend(url: str, timeout_s: float) -> RedisBackend:
    b = open_backend(url, hash_key=HASH_KEY, timeout_s=timeout_s)
    assert isinstance(b, RedisBackend)
    return b


async def apply(b: RedisBackend, t: float = T0) -> dict[str, int]:
    return await asyncio.wait_for(b.apply("t1", [REF], t, record=True), GUARD_S)


async def until_ok(b: RedisBackend) -> tuple[dict[str, int], int]:
    """Apply until Redis answers within the timeout (a healthy Redis on a loaded machine may
    miss a 20 ms timeout now and then): the answer, and how many attempts it took."""
    async with asyncio.timeout(GUARD_S):
        attempts = 0
        while True:
            attempts += 1
            try:
                return await apply(b), attempts
            except StateTimeout:
                continue


@pytest.mark.parametrize("timeout_s", [0.02, 0.1])
async def test_paused_redis_times_out_then_recovers(own_redis: Any, timeout_s: float) -> None:
    b = redis_backend(own_redis.url, timeout_s)
    try:
        first, _ = await until_ok(b)
        before = first["c"]  # 1, or more if attempts that timed out were recorded anyway
        timeouts = b.stats.timeouts
        own_redis.pause()
        try:
            for _ in range(3):  # every call gives up on its own, none piles up
                with pytest.raises(StateTimeout):
                    await apply(b)
            assert await asyncio.wait_for(b.ping(), GUARD_S) is False
        finally:
            own_redis.resume()
        assert b.stats.timeouts - timeouts == 4
        # Calls that timed out may have reached Redis before it stopped: at least the
        # first event, at most all of them. The backend itself is usable again.
        after, attempts = await until_ok(b)
        assert before + 1 <= after["c"] <= before + 3 + attempts
        assert await b.ping() is True
    finally:
        await b.close()


async def test_killed_mid_traffic_then_restarted(own_redis: Any) -> None:
    b = redis_backend(own_redis.url, 1.0)
    try:
        outcomes: list[str] = []

        async def one(i: int) -> None:
            try:
                await apply(b, T0 + i * 0.001)
                outcomes.append("ok")
            except StateTimeout:
                outcomes.append("timeout")
            except StateError:
                outcomes.append("error")

        first = [asyncio.create_task(one(i)) for i in range(50)]
        await asyncio.sleep(0)  # let the traffic start, then crash Redis under it
        own_redis.kill()
        await asyncio.gather(*first)
        after = [asyncio.create_task(one(i)) for i in range(50, 60)]
        await asyncio.gather(*after)
        assert len(outcomes) == 60
        assert outcomes[-10:] == ["error"] * 10  # refused at once: no hang, no crash
        assert b.stats.errors >= 10
        assert await b.ping() is False

        own_redis.restart()  # same port, empty, and the script cache is gone
        trips = b.stats.round_trips
        assert await apply(b) == {"c": 1}  # same backend object: reconnects, reloads
        assert b.stats.round_trips - trips == 3  # NOSCRIPT, SCRIPT LOAD, EVALSHA
        trips = b.stats.round_trips
        assert await apply(b) == {"c": 2}
        assert b.stats.round_trips - trips == 1
    finally:
        await b.close()


async def test_redis_down_at_start_then_up(own_redis: Any) -> None:
    url = own_redis.url
    own_redis.kill()
    b = redis_backend(url, 0.5)
    try:
        with pytest.raises(StateError):
            await apply(b)
        own_redis.restart()
        assert await apply(b) == {"c": 1}
    finally:
        await b.close()


async def test_one_round_trip_per_apply(own_redis: Any) -> None:
    b = redis_backend(own_redis.url, 1.0)
    refs = [
        REF,
        AggregateRef(
            AggregateSpec(
                id="d",
                kind=AggKind.DISTINCT,
                key=KeyKind.NUMBER,
                window=Window(size_s=86_400),
                field="app_id",
            ),
            "+8613800138000",
            "app",
        ),
        AggregateRef(
            AggregateSpec(
                id="r", kind=AggKind.RUN, key=KeyKind.SEGMENT, window=Window(size_s=86_400)
            ),
            "138",
            "13800138000",
        ),
    ]
    try:
        await b.apply("t1", refs, T0, record=True)  # loads the script
        before = b.stats.round_trips
        for i in range(10):
            await b.apply("t1", refs, T0 + i, record=i % 2 == 0)
        assert b.stats.round_trips - before == 10
        assert b.stats.calls == 11
    finally:
        await b.close()
