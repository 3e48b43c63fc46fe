"""Memory backend specifics: bounded size, eviction counting."""

from __future__ import annotations

import pytest

from dsl.aggregates import AggKind, AggregateRef, AggregateSpec, KeyKind, Window
from server.state import MemoryBackend, open_backend

T0 = 1_767_225_600.0


@pytest.mark.parametrize("max_keys", [1, 10, 500])
async def test_a_flood_of_numbers_stays_within_max_keys(max_keys: int) -> None:
    b = open_backend("memory://", hash_key=b"k", max_keys=max_keys)
    assert isinstance(b, MemoryBackend)
    s = AggregateSpec("n", AggKind.COUNT, KeyKind.NUMBER, Window(3600))
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
    s = AggregateSpec("n", AggKind.COUNT, KeyKind.NUMBER, Window(3600))
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
