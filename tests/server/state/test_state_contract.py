"""The contract both state backends pass: the same table of cases, memory and real Redis."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from dsl.aggregates import AggKind, AggregateRef, AggregateSpec, KeyKind, Window
from server.state import MemoryBackend, RedisBackend, RedisClusterBackend
from server.state.windows import SLACK_S, bucket_width

Backend = MemoryBackend | RedisBackend | RedisClusterBackend


T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC: on every bucket edge used here
NUMBER = "+8613800138000"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def spec(
    kind: AggKind = AggKind.COUNT,
    key: KeyKind = KeyKind.NUMBER,
    size_s: int = 3600,
    offset_s: int = 0,
    *,
    calendar_day: bool = False,
    timezone: str = "UTC",
    field: str = "",
    key_arg: str = "",
    id: str = "agg",
) -> AggregateSpec:
    window = Window(
        size_s=size_s,
        offset_s=offset_s,
        calendar_day=calendar_day,
        timezone=timezone if calendar_day else "",
    )
    return AggregateSpec(id=id, kind=kind, key=key, window=window, key_arg=key_arg, field=field)


async def record(
    b: Backend, s: AggregateSpec, t: float, key: str = NUMBER, member: str = "", tenant: str = "t1"
) -> int:
    return (await b.apply(tenant, [AggregateRef(s, key, member)], t, record=True))[s.id]


async def peek(
    b: Backend, s: AggregateSpec, t: float, key: str = NUMBER, member: str = "", tenant: str = "t1"
) -> int:
    """The stored value alone: a ref that does not feed, read without recording."""
    ref = AggregateRef(s, key, member, feeds=False)
    return (await b.apply(tenant, [ref], t, record=False))[s.id]


async def storage_keys(b: Backend) -> list[str]:
    if isinstance(b, MemoryBackend):
        return b.keys()
    return [k.decode() async for k in b.client.scan_iter(count=1000)]


# -- counts: the current event, dry runs, window edges, offsets --------------------------


async def test_values_include_the_current_event(backend: Backend) -> None:
    s = spec()
    assert [await record(backend, s, T0 + i) for i in range(5)] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("kind", [AggKind.COUNT, AggKind.DISTINCT, AggKind.RUN])
async def test_dry_run_changes_nothing(backend: Backend, kind: AggKind) -> None:
    key, member = ("170", "17012345678") if kind is AggKind.RUN else (NUMBER, "")
    if kind is AggKind.DISTINCT:
        member = "app-1"
    s = spec(kind, KeyKind.SEGMENT if kind is AggKind.RUN else KeyKind.NUMBER, field="app_id")
    ref = AggregateRef(s, key, member)
    for _ in range(3):  # dry runs still see the current event, and leave no trace
        assert await backend.apply("t1", [ref], T0, record=False) == {"agg": 1}
    assert await storage_keys(backend) == []
    assert await backend.apply("t1", [ref], T0, record=True) == {"agg": 1}
    assert await peek(backend, s, T0 + 1, key, member) == 1


# (window size, seconds between the recorded event and the read, counted?)
EDGES = [
    (60, 0, True),
    (60, 59.5, True),  # just inside
    (60, 60, False),  # exactly one window ago: the window is (now - size, now]
    (60, 60.5, False),  # just outside
    (3600, 3599, True),
    (3600, 3540.001, True),
    (3600, 3600, False),
    (3600, 3601, False),
    (86_400, 86_399, True),
    (86_400, 86_400, False),
]


@pytest.mark.parametrize(("size", "age", "inside"), EDGES)
async def test_sliding_window_edges(backend: Backend, size: int, age: float, inside: bool) -> None:
    s = spec(size_s=size)
    await record(backend, s, T0 - age)
    assert await peek(backend, s, T0) == (1 if inside else 0)


@pytest.mark.parametrize(("size", "shift"), [(3600, 30), (3600, 59), (600, 7)])
async def test_unaligned_edge_is_exact_to_one_bucket(
    backend: Backend, size: int, shift: int
) -> None:
    """Off a bucket edge, an event up to one bucket older than the window still counts:
    the documented precision (errs towards counting)."""
    s = spec(size_s=size)
    now = T0 + shift
    w = bucket_width(size)
    await record(backend, s, now - size - shift + 0.001)  # older than the window, same bucket
    await record(backend, s, now - size - shift - w)  # a whole bucket older: never counted
    assert await peek(backend, s, now) == 1


async def test_offset_windows_share_buckets(backend: Backend) -> None:
    now0 = spec(id="h0")
    now1 = spec(offset_s=3600, id="h1")
    now2 = spec(offset_s=7200, id="h2")
    for t in (T0 - 5400, T0 - 1800, T0 - 1700):
        await record(backend, now0, t)
    refs = [AggregateRef(s, NUMBER) for s in (now0, now1, now2)]
    # The current event counts only in the window that contains now; recorded once.
    got = await backend.apply("t1", refs, T0, record=True)
    assert got == {"h0": 3, "h1": 1, "h2": 0}
    assert await peek(backend, now0, T0) == 3
    # An hour later the same events have moved into the 1h-ago window.
    got = await backend.apply("t1", refs, T0 + 3600, record=False)
    assert got == {"h0": 1, "h1": 3, "h2": 1}


@pytest.mark.parametrize(
    ("ages", "expected"),
    [
        ([0, 1800, 1800, 3599], 4),  # late events land in older buckets, in any order
        ([600, 0, 3000, 600, 100], 5),
        ([0, 3600, 1800], 2),  # a late event already outside the window is not counted
    ],
)
async def test_late_events_count_in_their_own_buckets(
    backend: Backend, ages: list[int], expected: int
) -> None:
    s = spec()
    for age in ages:
        await record(backend, s, T0 - age)
    assert await peek(backend, s, T0) == expected
    # An hour on, the same events are exactly the 1h-ago window's.
    ago = spec(offset_s=3600, id="ago")
    assert await peek(backend, ago, T0 + 3600) == expected


async def test_old_events_fall_out_and_keys_expire(backend: Backend) -> None:
    s = spec(size_s=60, offset_s=60)
    await record(backend, s, T0)
    assert await peek(backend, s, T0 + 61) == 1
    assert await peek(backend, s, T0 + 121) == 0
    span = 60 + 60
    expected_ttl = span + bucket_width(60) + SLACK_S
    if not isinstance(backend, MemoryBackend):
        (key,) = await storage_keys(backend)
        ttl = await backend.client.ttl(key)
        assert expected_ttl - 5 <= ttl <= expected_ttl
    else:
        (entry,) = backend.entries()
        assert entry.expires_at == T0 + expected_ttl
        await peek(backend, s, T0 + expected_ttl + 1)  # a read past expiry drops the key
        assert len(backend) == 0


# -- calendar days -------------------------------------------------------------------------


def shanghai(day: int, hour: int, minute: int, second: int) -> float:
    return datetime(2026, 3, day, hour, minute, second, tzinfo=SHANGHAI).timestamp()


async def test_calendar_day_starts_at_local_midnight(backend: Backend) -> None:
    today = spec(size_s=86_400, calendar_day=True, timezone="Asia/Shanghai", id="today")
    yesterday = spec(
        size_s=86_400, offset_s=86_400, calendar_day=True, timezone="Asia/Shanghai", id="yday"
    )
    refs = [AggregateRef(today, NUMBER), AggregateRef(yesterday, NUMBER)]
    assert await backend.apply("t1", refs, shanghai(1, 0, 0, 1), record=True) == {
        "today": 1,
        "yday": 0,
    }
    late = shanghai(1, 23, 59, 59)
    assert await backend.apply("t1", refs, late, record=True) == {"today": 2, "yday": 0}
    early = shanghai(2, 0, 0, 1)  # two seconds later, a new day
    assert await backend.apply("t1", refs, early, record=True) == {"today": 1, "yday": 2}
    # 16:00 UTC is Shanghai midnight: a UTC calendar day would still say "same day".
    assert datetime.fromtimestamp(early, ZoneInfo("UTC")).day == 1


# -- distinct counts -----------------------------------------------------------------------

DISTINCT_CASES = [
    (["a"], "a", 1),
    (["a", "a", "a"], "b", 2),
    (["a", "b", "c", "b"], "c", 3),
    ([], "", 0),  # an empty value is no value: not counted
    (["a", ""], "", 1),
]


@pytest.mark.parametrize(("seen", "current", "expected"), DISTINCT_CASES)
async def test_distinct_exact(
    backend: Backend, seen: list[str], current: str, expected: int
) -> None:
    s = spec(AggKind.DISTINCT, field="app_id")
    for i, m in enumerate(seen):
        await record(backend, s, T0 - 100 + i, member=m)
    ref = AggregateRef(s, NUMBER, current)
    assert await backend.apply("t1", [ref], T0, record=False) == {"agg": expected}


async def test_distinct_sliding_window(backend: Backend) -> None:
    s = spec(AggKind.DISTINCT, size_s=60, field="device_id")
    await record(backend, s, T0 - 90, member="d1")
    await record(backend, s, T0 - 30, member="d2")
    await record(backend, s, T0 - 10, member="d2")
    assert await record(backend, s, T0, member="d3") == 2


@pytest.mark.parametrize("n", [999, 1_000, 1_001, 5_000])
async def test_distinct_beyond_the_exact_cap(backend: Backend, n: int) -> None:
    """Up to 1,000 members exact; beyond, HyperLogLog (Redis ±0.81 %, memory ±2.3 % σ)."""
    s = spec(AggKind.DISTINCT, key=KeyKind.SEGMENT, field="phone", size_s=86_400)
    refs = [AggregateRef(s, "170", f"+86170{i:08d}") for i in range(n)]
    for i, ref in enumerate(refs):
        await backend.apply("t1", [ref], T0 + i * 0.01, record=True)
    got = await peek(backend, s, T0 + n, "170", "x")
    if n <= 1_000:
        assert got == n
    else:
        assert abs(got - n) <= 0.06 * n, got
    # Seen-again members do not count twice, whatever the mode.
    again = await backend.apply("t1", [refs[0]], T0 + n + 1, record=True)
    assert abs(again["agg"] - got) <= max(1, 0.01 * n)


# -- runs of consecutive numbers -----------------------------------------------------------

# (suffixes seen in the window, suffixes seen before it, current suffix, expected run)
RUN_CASES = [
    ([], [], "12345678", 1),  # the current number counts itself
    (["12345677", "12345679"], [], "12345678", 3),  # both directions
    (["12345679", "12345680", "12345681"], [], "12345678", 4),  # upwards only
    (["12345675", "12345676", "12345677"], [], "12345678", 4),  # downwards only
    (["12345676", "12345679"], [], "12345678", 2),  # a gap below stops the walk
    (["12345677"], ["12345679", "12345680"], "12345678", 2),  # too old to count
    (["00000001", "00000000"], [], "00000002", 3),  # leading zeros, down to zero
    (["99999998"], [], "99999999", 2),  # top of the segment: no overflow into 9 digits
]


@pytest.mark.parametrize(("inside", "outside", "current", "expected"), RUN_CASES)
async def test_runs_of_consecutive_numbers(
    backend: Backend, inside: list[str], outside: list[str], current: str, expected: int
) -> None:
    s = spec(AggKind.RUN, key=KeyKind.SEGMENT, size_s=3600)
    for suffix in outside:
        await record(backend, s, T0 - 3600, "170", "170" + suffix)
    for i, suffix in enumerate(inside):
        await record(backend, s, T0 - 3599 + i, "170", "170" + suffix)
    ref = AggregateRef(s, "170", "170" + current)
    assert await backend.apply("t1", [ref], T0, record=False) == {"agg": expected}
    not_seen = AggregateRef(s, "170", "170" + current, feeds=False)
    expected_alone = expected if current in inside else 0
    assert await backend.apply("t1", [not_seen], T0, record=False) == {"agg": expected_alone}


async def test_run_with_prefix_key_strips_country_code(backend: Backend) -> None:
    s = spec(AggKind.RUN, key=KeyKind.PREFIX, key_arg="5", size_s=86_400)
    for i in range(5):
        got = await record(backend, s, T0 + i, "86170", f"1701234567{i}")
    assert got == 5


async def test_long_runs_are_capped(backend: Backend) -> None:
    s = spec(AggKind.RUN, key=KeyKind.SEGMENT, size_s=86_400)
    refs = [AggregateRef(s, "171", f"171{i:08d}") for i in range(1_200)]
    for ref in refs:
        await backend.apply("t1", [ref], T0, record=True)
    got = await backend.apply("t1", [refs[600]], T0 + 1, record=False)
    assert got == {"agg": 1_200}
    got = await backend.apply("t1", [refs[0]], T0 + 1, record=False)
    assert got == {"agg": 1 + 1_000}  # the walk stops after 1,000 neighbours


# -- isolation and privacy -----------------------------------------------------------------


async def test_tenants_are_isolated(backend: Backend) -> None:
    s = spec()
    for _ in range(3):
        await record(backend, s, T0, tenant="alpha")
    assert await record(backend, s, T0, tenant="beta") == 1
    assert await peek(backend, s, T0, tenant="alpha") == 3


async def test_storage_never_holds_a_raw_number(backend: Backend) -> None:
    refs = [
        AggregateRef(spec(id="n"), NUMBER),
        AggregateRef(
            spec(AggKind.DISTINCT, KeyKind.DEVICE, field="phone", id="d"), "dev-1", NUMBER
        ),
        AggregateRef(spec(AggKind.DISTINCT, KeyKind.NUMBER, field="ip", id="i"), NUMBER, "1.2.3.4"),
        AggregateRef(
            spec(AggKind.RUN, KeyKind.PREFIX, key_arg="11", id="r"), "86138001380", "13800138000"
        ),
        AggregateRef(spec(AggKind.COUNT, KeyKind.LIST, key_arg="privacy", id="l"), NUMBER),
    ]
    await backend.apply("t1", refs, T0, record=True)
    keys = await storage_keys(backend)
    assert len(keys) == 5
    for key in keys:
        for raw in ("13800138000", "8613800138000", "138001380", "dev-1", "1.2.3.4"):
            assert raw not in key, key
    if not isinstance(backend, MemoryBackend):
        # Distinct members are hashed too (run members hold only the suffix digits).
        for key in keys:
            if ":distinct:" in key:
                members = await backend.client.zrange(key, 0, -1)
                assert all(b"138" not in m and b"1.2.3.4" not in m for m in members)


# -- age(): first sightings; composite keys ------------------------------------------------


async def test_first_seen_is_the_age_of_a_key(backend: Backend) -> None:
    s = spec(AggKind.FIRST_SEEN, size_s=30 * 86_400, id="age")
    assert await record(backend, s, T0) == 0  # the first sighting is now: 0 s old
    assert await record(backend, s, T0 + 600) == 600
    assert await peek(backend, s, T0 + 3600) == 3600
    # Another number, another tenant: their own first sightings.
    assert await record(backend, s, T0 + 3600, key="+8613900139000") == 0
    assert await record(backend, s, T0 + 3600, tenant="t2") == 0


async def test_first_seen_is_not_recorded_by_a_dry_run(backend: Backend) -> None:
    s = spec(AggKind.FIRST_SEEN, size_s=30 * 86_400, id="age")
    ref = AggregateRef(s, NUMBER)
    assert (await backend.apply("t1", [ref], T0, record=False))["age"] == 0
    assert await record(backend, s, T0 + 60) == 0  # still new: the dry run left no trace


async def test_first_seen_is_forgotten_after_its_window_without_a_sighting(
    backend: Backend,
) -> None:
    day = 86_400
    s = spec(AggKind.FIRST_SEEN, size_s=2 * day, id="age")
    await record(backend, s, T0)
    assert await record(backend, s, T0 + day) == day  # seen again: kept two more days
    assert await record(backend, s, T0 + 2 * day) == 2 * day
    # More than two days unseen: forgotten, on every backend (by the receipt times the key
    # holds, not by a TTL on the backend's own clock), and this sighting starts it again.
    assert await record(backend, s, T0 + 5 * day) == 0
    assert await record(backend, s, T0 + 5 * day + 60) == 60


async def test_first_seen_runs_on_the_receipt_clock(backend: Backend) -> None:
    """age() never reads the event time (docs/state.md §6): a back-dated event neither ages
    a key nor starts it earlier."""
    s = spec(AggKind.FIRST_SEEN, size_s=30 * 86_400, id="age")

    async def sighting(event_time: float, received: float) -> int:
        ref = AggregateRef(s, NUMBER)
        values = await backend.apply("t1", [ref], event_time, record=True, received=received)
        return values["age"]

    assert await sighting(T0 - 5 * 365 * 86_400, T0) == 0  # stamped five years back
    assert await sighting(T0 - 86_400, T0 + 60) == 60
    assert await sighting(T0 + 600, T0 + 120) == 120


async def test_retention_comes_from_the_policy_not_from_earlier_requests(
    backend: Backend,
) -> None:
    """A new backend object (a restart) that first sees only the 0-offset window of a
    `sustained()` still keeps the history its 2h-back window reads: the spec carries it."""
    base = dataclasses.replace(spec(id="h0"), horizon_s=7200)
    back = dataclasses.replace(spec(offset_s=7200, id="h2"), horizon_s=7200)
    for i in range(5):
        await record(backend, base, T0 + 10 * i)
    # Two hours on, writes through the 0-offset window alone trim what no window reads.
    later = T0 + 7200 + 120
    await record(backend, base, later)
    await record(backend, base, later + 1)
    assert await peek(backend, back, later + 1) == 5


async def test_composite_keys_count_each_pair_apart(backend: Backend) -> None:
    window = Window(size_s=3600)
    pair = AggregateSpec(
        id="pair",
        kind=AggKind.COUNT,
        key=KeyKind.NUMBER,
        window=window,
        more_keys=((KeyKind.APP, ""),),
    )
    alone = AggregateSpec(id="alone", kind=AggKind.COUNT, key=KeyKind.NUMBER, window=window)

    async def hit(app: str) -> dict[str, int]:
        refs = [AggregateRef(pair, f"14:{NUMBER}{len(app)}:{app}"), AggregateRef(alone, NUMBER)]
        return await backend.apply("t1", refs, T0, record=True)

    assert await hit("shop") == {"pair": 1, "alone": 1}
    assert await hit("shop") == {"pair": 2, "alone": 2}
    assert await hit("ride") == {"pair": 1, "alone": 3}
    keys = await storage_keys(backend)
    assert not [k for k in keys if NUMBER in k or "13800138000" in k]  # hashed, every part
    assert any(":number+app:" in k for k in keys)


# -- sum, avg, min, max (docs/state.md §5) ----------------------------------------------


def numeric(kind: AggKind, size_s: int = 3600, *, decimal: bool = True) -> AggregateSpec:
    return dataclasses.replace(spec(kind, size_s=size_s, field="value:x"), decimal=decimal)


@pytest.mark.parametrize(
    ("kind", "amounts", "expected"),
    [
        (AggKind.SUM, ["5", "-2", "10"], 13),
        (AggKind.MIN, ["5", "-2", "10"], -2),
        (AggKind.MAX, ["5", "-2", "10"], 10),
        # (5 - 2 + 10) / 3 = 4.333333 (decimal values: rounded to a unit of the value)
        (AggKind.AVG, ["5", "-2", "10"], 4),
        (AggKind.AVG, ["5", "-2", "8"], 4),  # 11 / 3 = 3.67 -> 4
        (AggKind.AVG, ["1", "2"], 2),  # 1.5: a tie goes to the even one
        (AggKind.AVG, ["3", "2"], 2),  # 2.5 -> 2
    ],
)
async def test_numeric_values_over_a_window(
    backend: Backend, kind: AggKind, amounts: list[str], expected: int
) -> None:
    s = numeric(kind)
    got = [await record(backend, s, T0 + i, member=a) for i, a in enumerate(amounts)]
    assert got[-1] == expected
    # The stored value alone reads the same (the event's own value was in the last one).
    assert await peek(backend, s, T0 + 10) == expected


async def test_average_of_ints_is_in_millionths(backend: Backend) -> None:
    s = numeric(AggKind.AVG, decimal=False)
    for i, a in enumerate(["1", "1", "2"]):
        got = await record(backend, s, T0 + i, member=a)
    assert got == 1_333_333  # 4 / 3, rounded to the millionth


@pytest.mark.parametrize("kind", [AggKind.SUM, AggKind.AVG, AggKind.MIN, AggKind.MAX])
async def test_an_empty_window(backend: Backend, kind: AggKind) -> None:
    """A sum of nothing is 0; an average, min or max of nothing is unknown."""
    s = numeric(kind)
    assert await peek(backend, s, T0) == (0 if kind is AggKind.SUM else None)
    await record(backend, s, T0, member="7")
    # Two windows later the value has left the window.
    assert await peek(backend, s, T0 + 2 * 3600 + 120) == (0 if kind is AggKind.SUM else None)


async def test_values_leave_the_window(backend: Backend) -> None:
    s = numeric(AggKind.MAX, size_s=600)
    await record(backend, s, T0, member="100")
    await record(backend, s, T0 + 300, member="5")
    assert await peek(backend, s, T0 + 599) == 100
    assert await peek(backend, s, T0 + 700) == 5


async def test_a_sum_past_its_limit_is_unknown_and_never_overflows(backend: Backend) -> None:
    """Each part stops at 2**53: the sum is unknown from then on, whatever comes later."""
    s = numeric(AggKind.SUM)
    big = str(10**15 - 1)
    got = None
    for i in range(10):
        got = await record(backend, s, T0 + i, member=big)
    assert got is None
    assert await peek(backend, s, T0 + 20) is None
    # The negative part is apart: a small negative value is still unknown over it.
    assert await record(backend, s, T0 + 21, member="-1") is None
    t = numeric(AggKind.SUM, size_s=600)
    for i in range(9):
        got = await record(backend, t, T0 + i, member=big)
    assert got == 9 * (10**15 - 1)  # below the limit: exact
