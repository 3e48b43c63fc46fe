"""Memory backend specifics: bounded size, eviction counting."""

from __future__ import annotations

import pytest

from dsl.aggregates import AggKind, AggregateRef, AggregateSpec, KeyKind, Window
from server.state import Claim, MemoryBackend, open_backend

T0 = 1_767_225_600.0


@pytest.mark.parametrize("max_keys", [1, 10, 500])
async def test_a_flood_of_numbers_stays_within_max_keys(max_keys: int) -> None:
    b = open_backend("memory://", hash_key=b"k", max_keys=max_keys)
    assert isinstance(b, MemoryBackend)
    s = AggregateSpec(id="n", kind=AggKind.COUNT, key=KeyKind.NUMBER, window=Window(size_s=3600))
    for i in range(2 * max_keys):
        await b.apply("t1", [AggregateRef(s, f"+86170{i:08d}")], T0, record=True)
        assert len(b) <= max_keys
    assert len(b) == max_keys
    assert b.stats.evictions == max_keys
    assert b.stats.keys == max_keys
    # Least recently used goes first: the newest numbers are still counted.
    newest = AggregateRef(s, f"+86170{2 * max_keys - 1:08d}", feeds=False)
    assert await b.apply("t1", [newest], T0, record=False) == {"n": 1}
    oldest = AggregateRef(s, f"+86170{0:08d}", feeds=False)
    assert await b.apply("t1", [oldest], T0, record=False) == {"n": 0}


async def test_recently_read_keys_survive_eviction() -> None:
    b = MemoryBackend(hash_key=b"k", max_keys=2)
    s = AggregateSpec(id="n", kind=AggKind.COUNT, key=KeyKind.NUMBER, window=Window(size_s=3600))
    a, c, d = (AggregateRef(s, n) for n in ("+861", "+862", "+863"))
    await b.apply("t1", [a], T0, record=True)
    await b.apply("t1", [c], T0, record=True)
    await b.apply("t1", [a], T0, record=False)  # touch a: c is now least recently used
    await b.apply("t1", [d], T0, record=True)
    got = await b.apply("t1", [AggregateRef(s, "+861", feeds=False)], T0, record=False)
    assert got == {"n": 1}
    got = await b.apply("t1", [AggregateRef(s, "+862", feeds=False)], T0, record=False)
    assert got == {"n": 0}
    assert b.stats.evictions == 1


@pytest.mark.parametrize("max_keys", [0, -1])
def test_max_keys_must_be_positive(max_keys: int) -> None:
    with pytest.raises(ValueError, match="max_keys"):
        MemoryBackend(hash_key=b"k", max_keys=max_keys)


# -- walls between tenants ------------------------------------------------------------------


async def test_a_flood_of_one_tenant_never_evicts_another() -> None:
    """500,000 numbers into an open tenant while a protected tenant holds its counters:
    the flood evicts only its own keys, and the protected counts stay exact."""
    b = MemoryBackend(hash_key=b"k", max_keys=100_000)
    s = AggregateSpec(id="n", kind=AggKind.COUNT, key=KeyKind.NUMBER, window=Window(size_s=86_400))
    protected = [AggregateRef(s, f"+86138{i:08d}") for i in range(500)]
    for _ in range(3):
        for ref in protected:
            await b.apply("protected", [ref], T0, record=True)
    for i in range(500_000):
        await b.apply("open", [AggregateRef(s, f"+86170{i:08d}")], T0 + 1, record=True)
    assert len(b) == 100_000
    assert b.stats.evictions == 500_500 - 100_000
    assert len(b.keys("protected")) == 500
    for ref in protected:
        peek = AggregateRef(s, ref.key, feeds=False)
        assert await b.apply("protected", [peek], T0 + 2, record=False) == {"n": 3}


async def test_a_tenant_below_its_fair_share_keeps_its_keys() -> None:
    """Three tenants share max_keys; the flooder takes what the others do not hold."""
    b = MemoryBackend(hash_key=b"k", max_keys=300)
    s = AggregateSpec(id="n", kind=AggKind.COUNT, key=KeyKind.NUMBER, window=Window(size_s=3600))
    for tenant, n in (("a", 50), ("b", 100)):
        for i in range(n):
            await b.apply(tenant, [AggregateRef(s, f"+861{i:010d}")], T0, record=True)
    for i in range(1_000):
        await b.apply("flood", [AggregateRef(s, f"+862{i:010d}")], T0, record=True)
    assert (len(b.keys("a")), len(b.keys("b")), len(b.keys("flood"))) == (50, 100, 150)


async def test_above_its_fair_share_a_tenant_gives_way_to_a_new_one() -> None:
    """Fair share, not first come: a tenant holding everything yields keys to a newcomer
    down to an equal share, least recently used first."""
    b = MemoryBackend(hash_key=b"k", max_keys=100)
    s = AggregateSpec(id="n", kind=AggKind.COUNT, key=KeyKind.NUMBER, window=Window(size_s=3600))
    for i in range(100):
        await b.apply("big", [AggregateRef(s, f"+861{i:010d}")], T0, record=True)
    for i in range(80):
        await b.apply("new", [AggregateRef(s, f"+862{i:010d}")], T0, record=True)
    assert (len(b.keys("big")), len(b.keys("new"))) == (50, 50)
    newest = AggregateRef(s, f"+861{99:010d}", feeds=False)
    assert await b.apply("big", [newest], T0, record=False) == {"n": 1}


async def test_tenant_max_keys_caps_one_tenant() -> None:
    b = MemoryBackend(hash_key=b"k", max_keys=1_000, tenant_max_keys=10)
    s = AggregateSpec(id="n", kind=AggKind.COUNT, key=KeyKind.NUMBER, window=Window(size_s=3600))
    for i in range(50):
        await b.apply("t1", [AggregateRef(s, f"+861{i:010d}")], T0, record=True)
    assert len(b.keys("t1")) == 10
    assert b.stats.evictions == 40


@pytest.mark.parametrize("tenant_max_keys", [0, -1])
def test_tenant_max_keys_must_be_positive(tenant_max_keys: int) -> None:
    with pytest.raises(ValueError, match="tenant_max_keys"):
        MemoryBackend(hash_key=b"k", tenant_max_keys=tenant_max_keys)


async def test_one_tenants_flood_of_request_ids_keeps_anothers_claims() -> None:
    """Idempotency claims are bounded per tenant (oldest first), like the keys."""
    b = MemoryBackend(hash_key=b"k", claims_per_tenant=50)
    s = AggregateSpec(id="n", kind=AggKind.COUNT, key=KeyKind.NUMBER, window=Window(size_s=3600))
    ref = AggregateRef(s, "+8613800138000")
    assert not (await b.apply_claimed("quiet", [ref], T0, Claim("q-1", "fp", 600))).replayed
    for i in range(500):
        await b.apply_claimed("noisy", [ref], T0, Claim(f"n-{i}", "fp", 600))
    assert (await b.apply_claimed("quiet", [ref], T0, Claim("q-1", "fp", 600))).replayed
    assert (await b.apply_claimed("noisy", [ref], T0, Claim("n-499", "fp", 600))).replayed
    # The noisy tenant's oldest claims made room for its newest.
    assert not (await b.apply_claimed("noisy", [ref], T0, Claim("n-0", "fp", 600))).replayed
