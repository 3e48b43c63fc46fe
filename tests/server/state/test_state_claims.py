"""Idempotency claims: the same contract on both backends (memory and a real Redis)."""

from __future__ import annotations

import asyncio

import pytest

from dsl.aggregates import AggKind, AggregateRef, AggregateSpec, KeyKind, Window
from server.state import Claim, MemoryBackend, RedisBackend, RedisClusterBackend, StateError

Backend = MemoryBackend | RedisBackend | RedisClusterBackend


T0 = 1_767_225_600.0
NUMBER = "+8613800138000"
COUNT = AggregateSpec(
    id="codes", kind=AggKind.COUNT, key=KeyKind.NUMBER, window=Window(size_s=86_400)
)
APPS = AggregateSpec(
    id="apps",
    kind=AggKind.DISTINCT,
    key=KeyKind.NUMBER,
    window=Window(size_s=86_400),
    field="app_id",
)
RUN = AggregateSpec(id="run", kind=AggKind.RUN, key=KeyKind.SEGMENT, window=Window(size_s=86_400))


def refs(app: str = "shop", number: str = "17012345678") -> list[AggregateRef]:
    return [
        AggregateRef(COUNT, NUMBER),
        AggregateRef(APPS, NUMBER, app),
        AggregateRef(RUN, "170", number),
    ]


def claim(request_id: str = "req-1", fingerprint: str = "fp-a", ttl_s: float = 600) -> Claim:
    return Claim(request_id, fingerprint, ttl_s)


async def stored(b: Backend, tenant: str = "t1") -> int:
    ref = AggregateRef(COUNT, NUMBER, feeds=False)
    return (await b.apply(tenant, [ref], T0 + 10, record=False))["codes"]


async def test_a_retry_records_nothing_and_answers_the_first_values(backend: Backend) -> None:
    await backend.apply("t1", refs(), T0 - 5, record=True)  # some history
    first = await backend.apply_claimed("t1", refs(), T0, claim())
    assert not first.replayed
    assert first.values == {"codes": 2, "apps": 1, "run": 1}
    assert first.now == T0
    again = await backend.apply_claimed("t1", refs(), T0 + 3, claim())
    assert again.replayed
    assert again.values == first.values
    assert again.now == T0  # the first attempt's event time: its decision is rebuilt exactly
    assert await stored(backend) == 2
    assert backend.stats.replays == 1


async def test_a_new_request_id_records(backend: Backend) -> None:
    await backend.apply_claimed("t1", refs(), T0, claim("a"))
    second = await backend.apply_claimed("t1", refs(), T0 + 1, claim("b"))
    assert not second.replayed
    assert second.values["codes"] == 2


async def test_a_reused_id_with_other_content_is_not_a_retry(backend: Backend) -> None:
    """The id stays with its first request; the other one is decided and recorded."""
    await backend.apply_claimed("t1", refs(), T0, claim(fingerprint="fp-a"))
    other = await backend.apply_claimed("t1", refs("ride"), T0 + 1, claim(fingerprint="fp-b"))
    assert not other.replayed
    assert other.values["codes"] == 2
    assert other.values["apps"] == 2
    retry = await backend.apply_claimed("t1", refs(), T0 + 2, claim(fingerprint="fp-a"))
    assert retry.replayed
    assert retry.values["codes"] == 1
    assert await stored(backend) == 2


async def test_request_ids_are_per_tenant(backend: Backend) -> None:
    await backend.apply_claimed("alpha", refs(), T0, claim())
    beta = await backend.apply_claimed("beta", refs(), T0, claim())
    assert not beta.replayed
    assert await stored(backend, "alpha") == 1
    assert await stored(backend, "beta") == 1


async def test_concurrent_attempts_count_once(backend: Backend) -> None:
    got = await asyncio.gather(
        *(backend.apply_claimed("t1", refs(), T0, claim()) for _ in range(20))
    )
    fresh = sum(not a.replayed for a in got)
    if isinstance(backend, RedisClusterBackend):
        # Each slot's part is claimed on its own master: concurrent attempts may each win
        # some part, so none may be wholly fresh; every part is still recorded once.
        assert fresh <= 1
    else:
        assert fresh == 1
    assert {a.values["codes"] for a in got} == {1}
    assert await stored(backend) == 1


async def test_a_claim_expires_after_its_window(backend: Backend) -> None:
    await backend.apply_claimed("t1", refs(), T0, claim(ttl_s=0.2))
    await asyncio.sleep(0.4)
    later = await backend.apply_claimed("t1", refs(), T0 + 1, claim(ttl_s=0.2))
    assert not later.replayed
    assert await stored(backend) == 2


async def test_a_failed_apply_leaves_no_claim(backend: Backend) -> None:
    bad = AggregateSpec(id="bad", kind=AggKind.COUNT, key=KeyKind.NUMBER, window=Window(size_s=0))
    with pytest.raises(StateError):
        await backend.apply_claimed("t1", [*refs(), AggregateRef(bad, NUMBER)], T0, claim())
    retry = await backend.apply_claimed("t1", refs(), T0, claim())
    assert not retry.replayed
    assert await stored(backend) == 1


@pytest.mark.parametrize(
    "request_id",
    ["x" * 128, "}{rf:{t1}:count", "req\n2", "号码-13800138000", "+8613800138000"],
)
async def test_request_ids_are_hashed_whatever_their_text(
    backend: Backend, request_id: str
) -> None:
    await backend.apply_claimed("t1", refs(), T0, claim(request_id))
    assert (await backend.apply_claimed("t1", refs(), T0, claim(request_id))).replayed
    if not isinstance(backend, MemoryBackend):
        keys = [k.decode() async for k in backend.client.scan_iter(count=1000)]
        rid_keys = [k for k in keys if ":rid:" in k]
        # One claim per call; in a cluster one per slot the decision writes (here the
        # number's and the segment's).
        assert len(rid_keys) == (2 if isinstance(backend, RedisClusterBackend) else 1)
        assert len({k.rsplit(":", 1)[1] for k in rid_keys}) == 1
        for key in rid_keys:
            assert request_id not in key
            assert "13800138000" not in key
            assert 0 < await backend.client.pttl(key) <= 600_000
