"""The Redis Cluster backend against a real 3-master cluster: keys spread over the masters,
one round-trip time per decision, a master killed and a slot migrated under traffic."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest
from conftest_redis import RedisClusterServers
from redis.crc import key_slot

from dsl.aggregates import AggKind, AggregateRef, AggregateSpec, KeyKind, Window
from server.state import Claim, RedisClusterBackend, StateError, StateTimeout, open_backend

pytestmark = pytest.mark.redis

HASH_KEY = b"cluster-test-key"
T0 = 1_767_225_600.0
GUARD_S = 30  # turns a hang into a failure; the backend's own timeout is far below it
CODES = AggregateSpec(
    id="codes", kind=AggKind.COUNT, key=KeyKind.NUMBER, window=Window(size_s=86_400)
)
APPS = AggregateSpec(
    id="apps",
    kind=AggKind.DISTINCT,
    key=KeyKind.NUMBER,
    window=Window(size_s=86_400),
    field="app_id",
)
DEVICES = AggregateSpec(
    id="devs", kind=AggKind.COUNT, key=KeyKind.DEVICE, window=Window(size_s=3600)
)
LISTED = AggregateSpec(
    id="listed", kind=AggKind.COUNT, key=KeyKind.LIST, window=Window(size_s=3600), key_arg="privacy"
)
RUN = AggregateSpec(id="run", kind=AggKind.RUN, key=KeyKind.SEGMENT, window=Window(size_s=86_400))


def number(i: int) -> str:
    return f"+86138{i:08d}"


def refs(i: int) -> list[AggregateRef]:
    n = number(i)
    return [
        AggregateRef(CODES, n),
        AggregateRef(APPS, n, "shop"),
        AggregateRef(DEVICES, f"device-{i % 7}"),
        AggregateRef(LISTED, "privacy"),
        AggregateRef(RUN, "138", n[3:]),
    ]


def cluster_backend(cluster: RedisClusterServers, timeout_s: float = 2.0) -> RedisClusterBackend:
    b = open_backend(cluster.url, hash_key=HASH_KEY, timeout_s=timeout_s)
    assert isinstance(b, RedisClusterBackend)
    return b


async def codes(b: RedisClusterBackend, i: int) -> int:
    ref = AggregateRef(CODES, number(i), feeds=False)
    got = await asyncio.wait_for(b.apply("t1", [ref], T0 + 10, record=False), GUARD_S)
    return got["codes"]


async def number_slot(b: RedisClusterBackend, i: int) -> int:
    await b.apply("t1", refs(i), T0, record=True)
    keys = [k async for k in b.client.scan_iter(count=1000)]
    hashed = b._planner.hasher.hashed_key(number(i))
    (key,) = [k for k in keys if hashed.encode() in k and b":count:number:" in k]
    return key_slot(key)


async def test_keys_spread_over_every_master_in_one_round_trip_time(
    redis_cluster: RedisClusterServers,
) -> None:
    redis_cluster.flush()
    b = cluster_backend(redis_cluster)
    try:
        for i in range(1000, 1020):  # loads the script on every master (on first NOSCRIPT)
            await b.apply("t1", refs(i), T0, record=True)
        trips, calls = b.stats.round_trips, b.node_calls
        for i in range(300):
            await b.apply("t1", refs(i), T0 + i, record=True)
        assert b.stats.round_trips - trips == 300  # one round-trip time per decision
        assert b.node_calls - calls <= 3 * 300  # at most one write per master per decision
        per_master = [int(redis_cluster.cli(n, "dbsize")) for n in redis_cluster.nodes]
        assert all(count > 100 for count in per_master), per_master
        # Tenant-wide keys (the list, the segment) live whole on one master each.
        assert await b.apply("t1", refs(5), T0 + 400, record=False) == {
            "codes": 2,
            "apps": 1,
            "devs": 300 // 7 + 1 + 3,
            "listed": 321,
            "run": 300,
        }
    finally:
        await b.close()


async def test_a_master_killed_mid_traffic_fails_only_its_slots(
    own_cluster: RedisClusterServers,
) -> None:
    b = cluster_backend(own_cluster, timeout_s=0.5)
    try:
        # Warm: every master has keys and the script. The backend's timeout is short (the
        # point is that a dead master costs less than it); a loaded machine may exceed it
        # while warming, which is not what this test is about.
        for i in range(30):
            await _until_answered(b, AggregateRef(CODES, number(i)), T0)
        outcomes: Counter[str] = Counter()

        async def one(i: int) -> None:
            try:
                await asyncio.wait_for(
                    b.apply("t1", [AggregateRef(CODES, number(i))], T0 + 1, record=True),
                    GUARD_S,
                )
                outcomes["ok"] += 1
            except StateError:
                outcomes["error"] += 1

        traffic = [asyncio.create_task(one(i % 30)) for i in range(200)]
        await asyncio.sleep(0)
        victim = own_cluster.nodes[1]
        victim.kill()
        started = time.monotonic()
        await asyncio.gather(*traffic)
        assert sum(outcomes.values()) == 200
        # After the kill: numbers on the live masters still count, the dead master's
        # numbers fail at once (refused), none waits out more than the timeout.
        dead_ports = {victim.port}
        alive, dead = [], []
        for i in range(30):
            slot = key_slot(f"x{{{_tag(b, i)}}}".encode())
            (dead if own_cluster.owner(slot).port in dead_ports else alive).append(i)
        assert alive
        assert dead
        for i in alive:
            await _until_answered(b, AggregateRef(CODES, number(i)), T0 + 2)
        for i in dead:
            # Refused at once, not waited out: the error is not the backend's timeout.
            with pytest.raises(StateError) as refused:
                await b.apply("t1", [AggregateRef(CODES, number(i))], T0 + 2, record=True)
            assert not isinstance(refused.value, StateTimeout), refused.value
        assert time.monotonic() - started < GUARD_S

        victim.restart()  # same port and nodes.conf: it rejoins with its slots, empty
        own_cluster.wait_ok()
        deadline = time.monotonic() + 10
        while True:
            try:
                ref = AggregateRef(CODES, number(dead[0]))
                got = await b.apply("t1", [ref], T0 + 3, record=True)
                break
            except StateError:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        assert got == {"codes": 1}  # the restarted master lost its data (no persistence)
    finally:
        await b.close()


async def _until_answered(b: RedisClusterBackend, ref: AggregateRef, at: float) -> None:
    """Apply ``ref``, again after a timeout (a loaded machine), for up to GUARD_S."""
    deadline = time.monotonic() + GUARD_S
    while True:
        try:
            await b.apply("t1", [ref], at, record=True)
            return
        except StateTimeout:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)


def _tag(b: RedisClusterBackend, i: int) -> str:
    """The hash tag of number i's keys (what decides its slot)."""
    return f"t1:number:{b._planner.hasher.hashed_key(number(i))}"


async def test_a_slot_migrated_mid_traffic_keeps_every_count(
    own_cluster: RedisClusterServers,
) -> None:
    """The number's slot moves to another master one key at a time while the number is
    counted without pause. Every call ends (ok, or StateError while the slot is half
    moved); afterwards the count is exactly the calls that succeeded, on the new master."""
    b = cluster_backend(own_cluster, timeout_s=1.0)
    try:
        slot = await number_slot(b, 1)
        for i in range(2, 40):  # more keys in the same slot? no: other slots, other masters
            await b.apply("t1", refs(i), T0, record=True)
        source = own_cluster.owner(slot)
        target = next(n for n in own_cluster.nodes if n is not source)
        before = await b.apply_claimed("t1", refs(1), T0 + 1, Claim("before", "fp", 600))
        assert not before.replayed
        ok, failed = 2, 0  # number_slot and the claim above recorded one each
        done = threading.Event()

        def migrate() -> None:
            try:
                own_cluster.migrate_slot(slot, target, pause=lambda: time.sleep(0.02))
            finally:
                done.set()

        mover = threading.Thread(target=migrate)
        mover.start()
        claims = 0
        while not done.is_set() or ok + failed < 20:
            try:
                claims += 1
                await asyncio.wait_for(
                    b.apply_claimed("t1", refs(1), T0 + 1, Claim(f"m{claims}", "fp", 600)),
                    GUARD_S,
                )
                ok += 1
            except StateError:
                failed += 1
            await asyncio.sleep(0.001)
        mover.join()
        assert own_cluster.owner(slot) is target
        assert await codes(b, 1) == ok
        assert int(own_cluster.cli(target, "cluster", "countkeysinslot", str(slot))) > 0
        assert int(own_cluster.cli(source, "cluster", "countkeysinslot", str(slot))) == 0
        # A retry of a request decided before the move is recognised after it: the claim
        # moved with the slot.
        again = await b.apply_claimed("t1", refs(1), T0 + 5, Claim("before", "fp", 600))
        assert again.replayed
        assert again.values == before.values
        assert await codes(b, 1) == ok
    finally:
        await b.close()
