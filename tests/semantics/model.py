"""The reference model of docs/state.md, "What every value means".

Written from that text alone and deliberately naive: each tenant keeps every event it
recorded, and every value is computed by scanning them. Section numbers (§) are the
specification's. Where the specification lets a path drop history (§9), the model cannot
know whether it did, and answers a range ``(lower, upper)`` instead of one number; a value
it knows exactly is the range ``(v, v)``.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Literal
from zoneinfo import ZoneInfo

LATENESS_S = 86_400.0  # --max-event-lateness, default 1d (§1)
FUTURE_SKEW_S = 60.0  # a caller's clock may run this far ahead (§1)
IDEMPOTENCY_S = 600.0  # --idempotency-window (§8)
AGE_MEMORY_S = 30 * 86_400.0  # a key's age is forgotten this long after its last sighting (§6)
RUN_NEIGHBOURS = 1_000  # a run looks at most this many numbers each way (§5)
DAY_S = 86_400
# What the IP databases say (the live paths and the offline tools are given a database
# built from this table): network -> the city, in the short form ip.city has.
IP_CITIES: Mapping[str, str] = {
    "203.0.113.0/25": "常州",
    "203.0.113.128/25": "南京",
    "198.51.100.0/24": "北京",
    "2001:db8:1:2::/64": "上海",
    "2001:db8:1:3::/64": "常州",
}

# (lower, upper): the value lies between them. (None, None): the value is unknown. ANY:
# anything, unknown too (a numeric value over history a path may have dropped, §9).
Range = tuple[float | None, float | None]
ANY: Range = (-math.inf, math.inf)
UNKNOWN: Range = (None, None)
Kind = Literal["count", "distinct", "run", "sum", "avg", "min", "max"]
NUMERIC = ("sum", "avg", "min", "max")
SUM_LIMIT = 2**53  # §5: a sum's positive or negative part reaching it is unknown
VALUE_LIMIT = 10**15  # §5: a value of this magnitude or more does not feed


@dataclass(frozen=True, kw_only=True)
class Phone:
    e164: str  # "+8617000000001"
    national: str  # "17000000001"
    segment: str = ""  # the CN segment-table prefix that matched ("1700"), "" when none did
    segment_kind: str = ""  # "mvno", "mobile", ..., ""

    @property
    def digits(self) -> str:
        return self.e164.removeprefix("+")


@dataclass(frozen=True, kw_only=True)
class Event:
    """One request as a caller sends it, with the server's clock when it is decided."""

    tenant: str
    phone: Phone
    scene: str = ""
    app_id: str = ""
    ip: str = ""
    device_id: str = ""
    attributes: tuple[tuple[str, str], ...] = ()
    occurred_at: float | None = None  # as the caller set it (None: not set)
    received_at: float  # r: the server's clock (§1)
    request_id: str = ""
    dry_run: bool = False

    def attribute(self, name: str) -> str:
        return dict(self.attributes).get(name, "")


@dataclass(frozen=True, kw_only=True)
class Facts:
    """What a `where` filter reads: the event, its event time, and the lists it is on."""

    event: Event
    t: float
    local_hour: int
    lists: frozenset[str]


@dataclass(frozen=True, kw_only=True)
class Filter:
    """A `where` filter: ``canonical`` is the checked expression in canonical form (what
    identity compares, §3), ``test`` evaluates it."""

    canonical: Hashable
    test: Callable[[Facts], bool] = field(compare=False, hash=False)


@dataclass(frozen=True, kw_only=True)
class Aggregate:
    name: str
    kind: Kind
    # (kind, argument): ("number", ""), ("prefix", "5"), ("ip", "24") for per ip/24
    keys: tuple[tuple[str, str], ...]
    field: str = ""  # distinct: app_id, device_id, ip, scene, phone, ip.city or attr:<key>
    # sum/avg/min/max: ("number", KEY) for event.number("KEY") (a decimal, in millionths),
    # ("hour", "") for event.local_hour (an int)
    value: tuple[str, str] = ("", "")
    where: Filter | None = None
    window: int | None  # sliding window in seconds; None: `today`
    offsets: tuple[int, ...] = (0,)  # every window read: 0, each ago(), each sustained() step


@dataclass(frozen=True, kw_only=True)
class Policy:
    aggregates: tuple[Aggregate, ...]
    ages: tuple[str, ...] = ()  # age(per K) read by the rules: number, device, ip, app
    timezone: str = "UTC"
    lists: Mapping[str, frozenset[str]] = field(default_factory=dict)  # name -> E.164 numbers


@dataclass(frozen=True, kw_only=True)
class Outcome:
    refused: bool = False  # INVALID_ARGUMENT: the event time is older than the lateness bound
    values: Mapping[str, Range] = field(default_factory=dict)
    replayed: bool = False  # a retry answered from its first attempt (§8)
    t: float | None = None


def format_duration(seconds: int) -> str:
    """How ids name an offset: ``NAME@1h30m``."""
    out, rest = "", seconds
    for unit, size in (("d", DAY_S), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out or "0s"


def value_id(agg: Aggregate, offset: int) -> str:
    return agg.name if offset == 0 else f"{agg.name}@{format_duration(offset)}"


def identity(agg: Aggregate, timezone: str) -> Hashable:
    """What shares events and storage (§3): not the name, not the offset."""
    where = None if agg.where is None else agg.where.canonical
    bucketing = ("today", timezone) if agg.window is None else ("sliding", agg.window)
    return (agg.kind, agg.keys, agg.field, agg.value, where, bucketing)


_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def number(text: str) -> int | None:
    """event.number(): the text as millionths, rounded half to even at the sixth place;
    unknown when absent, not `-?digits[.digits]`, longer than 40 characters, or of
    magnitude 10**9 or more (docs/dsl.md)."""
    if not text or len(text) > 40 or not _NUMBER.fullmatch(text):
        return None
    millionths = int((Decimal(text) * 1_000_000).quantize(Decimal(1), ROUND_HALF_EVEN))
    return None if abs(millionths) >= 10**15 else millionths


def decimal_valued(agg: Aggregate) -> bool:
    """Whether the aggregate reads as a decimal (§5): an average, or over event.number()."""
    return agg.kind == "avg" or (agg.kind in NUMERIC and agg.value[0] == "number")


def numeric_value(agg: Aggregate, facts: Facts) -> int | None:
    source, arg = agg.value
    v = number(facts.event.attribute(arg)) if source == "number" else facts.local_hour
    return None if v is None or abs(v) >= VALUE_LIMIT else v


# §4: windows and buckets ------------------------------------------------------------


def bucket_width(window: int) -> int:
    return max(1, window // 60)


def bucket(window: int | None, timezone: str, s: float) -> int:
    if window is None:
        return datetime.fromtimestamp(s, ZoneInfo(timezone)).date().toordinal()
    return math.ceil(s / bucket_width(window))


def window_buckets(window: int | None, timezone: str, t: float, offset: int) -> tuple[int, int]:
    """The buckets the window read ``offset`` seconds back holds, for an event at ``t``."""
    end = t - offset
    if window is None:
        day = bucket(None, timezone, end)
        return day, day
    w = bucket_width(window)
    return math.floor((end - window) / w) + 1, math.ceil(end / w)


def reach(agg: Aggregate) -> float:
    """How far back from a key's newest event the aggregate can read (§9)."""
    size, one_bucket = (DAY_S, DAY_S) if agg.window is None else (agg.window, agg.window // 60)
    return size + max(agg.offsets) + max(1, one_bucket)


# §2: keys, fields and members ---------------------------------------------------------


def address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``event.ip`` as an address (an IPv4-mapped IPv6 address is its IPv4 address), or
    None when it is not one."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def network(text: str, bits: int) -> str:
    """`per ip/N`: the address's /N network, for IPv4 when N <= 32 and IPv6 above."""
    addr = address(text)
    if addr is None or (addr.version == 4) != (bits <= 32):
        return ""
    return str(ipaddress.ip_network(f"{addr}/{bits}", strict=False))


def ip_city(text: str) -> str:
    """ip.city: the city of the narrowest network in IP_CITIES holding the address."""
    addr = address(text)
    holding = [
        ipaddress.ip_network(n)
        for n in IP_CITIES
        if addr is not None
        and addr.version == ipaddress.ip_network(n).version
        and addr in ipaddress.ip_network(n)
    ]
    if not holding:
        return ""
    return IP_CITIES[str(max(holding, key=lambda n: n.prefixlen))]


def key_part(kind: str, arg: str, ev: Event, lists: frozenset[str]) -> str:
    p = ev.phone
    if kind == "number":
        return p.e164
    if kind == "list":
        return arg  # every event has the list's name; only those on it feed (fed_item)
    if kind == "segment":
        return p.segment
    if kind == "prefix":
        return p.digits[: int(arg)] if len(p.digits) >= int(arg) else ""
    if kind == "tenant":
        return ev.tenant
    if kind == "ip" and arg:
        return network(ev.ip, int(arg))
    if kind == "attribute":
        return ev.attribute(arg)
    return {"device": ev.device_id, "ip": ev.ip, "app": ev.app_id}[kind]


def concrete_key(agg: Aggregate, ev: Event, lists: frozenset[str]) -> tuple[str, ...] | None:
    parts = tuple(key_part(kind, arg, ev, lists) for kind, arg in agg.keys)
    return None if "" in parts else parts


def field_value(name: str, ev: Event) -> str:
    if name == "phone":
        return ev.phone.e164
    if name == "ip.city":
        return ip_city(ev.ip)
    if name.startswith("attr:"):
        return ev.attribute(name.removeprefix("attr:"))
    return str(getattr(ev, name))


def member(agg: Aggregate, ev: Event, key: tuple[str, ...]) -> str:
    """A run's member: the national number's digits after the key's prefix (§5)."""
    national = ev.phone.national
    kind, _ = agg.keys[0]
    if kind == "segment":
        return national.removeprefix(key[0])
    prefix = key[0]  # per prefix N: drop the longest tail of the prefix that starts it
    tail = next(prefix[i:] for i in range(len(prefix) + 1) if national.startswith(prefix[i:]))
    return national[len(tail) :]


def run_length(members: set[str], m: str) -> int:
    if m not in members:
        return 0
    length = 1
    up = down = m
    for _ in range(RUN_NEIGHBOURS):  # counting up may carry into one more digit: 99 -> 100
        up = str(int(up) + 1).zfill(len(up))
        if up not in members:
            break
        length += 1
    for _ in range(RUN_NEIGHBOURS):  # counting down keeps the width and stops at zero
        if int(down) == 0:
            break
        down = str(int(down) - 1).zfill(len(down))
        if down not in members:
            break
        length += 1
    return length


def fed_item(agg: Aggregate, ev: Event, facts: Facts) -> tuple[tuple[str, ...], str] | None:
    """(concrete key, what the event adds) when ``ev`` feeds ``agg`` (§2), else None."""
    key = concrete_key(agg, ev, facts.lists)
    if key is None:
        return None
    if any(kind == "list" and arg not in facts.lists for kind, arg in agg.keys):
        return None  # §2: a list key feeds only for numbers on the list
    item = ""
    if agg.kind in NUMERIC:
        v = numeric_value(agg, facts)
        if v is None:
            return None
        item = str(v)
    elif agg.kind == "distinct":
        item = field_value(agg.field, ev)
    elif agg.kind == "run":
        item = member(agg, ev, key)
        if not (item.isascii() and item.isdigit()):
            return None
    if agg.kind == "distinct" and not item:
        return None
    if agg.where is not None and not agg.where.test(facts):
        return None
    return key, item


# The state -----------------------------------------------------------------------------


@dataclass(kw_only=True)
class Entry:
    t: float
    item: str
    maybe_dropped: bool = False  # §9 lets a path have dropped it


@dataclass(kw_only=True)
class Stored:
    entries: list[Entry] = field(default_factory=list)
    newest: float = -math.inf  # the newest event time recorded into the key
    written_at: float = -math.inf  # receipt time of the last write

    def forget_beyond(self, horizon: float) -> None:
        for e in self.entries:
            if e.t <= horizon:
                e.maybe_dropped = True


@dataclass(kw_only=True)
class Seen:  # age(): first and latest recorded sighting, on the receipt clock (§6)
    first: float
    last: float


@dataclass(frozen=True, kw_only=True)
class Claim:  # an idempotency claim (§8)
    fingerprint: Hashable
    received_at: float
    outcome: Outcome


@dataclass(kw_only=True)
class TenantState:
    policy: Policy
    stored: dict[tuple[Hashable, tuple[str, ...]], Stored] = field(default_factory=dict)
    seen: dict[tuple[str, str], Seen] = field(default_factory=dict)
    claims: dict[str, Claim] = field(default_factory=dict)

    def reaches(self) -> dict[Hashable, float]:
        out: dict[Hashable, float] = {}
        for agg in self.policy.aggregates:
            ident = identity(agg, self.policy.timezone)
            out[ident] = max(out.get(ident, 0.0), reach(agg))
        return out


def fingerprint(ev: Event) -> Hashable:
    return (
        ev.phone.e164,
        ev.scene,
        ev.app_id,
        ev.ip,
        ev.device_id,
        tuple(sorted(ev.attributes)),
        ev.occurred_at,
    )


def event_time(ev: Event) -> float | None:
    """The event time ``t`` of a live request (§1); None when it is refused."""
    r = ev.received_at
    if ev.occurred_at is None or ev.occurred_at > r + FUTURE_SKEW_S:
        return r
    return None if ev.occurred_at < r - LATENESS_S else ev.occurred_at


def local_hour(t: float, timezone: str) -> int:
    return datetime.fromtimestamp(t, ZoneInfo(timezone)).hour


class Model:
    """Every tenant's recorded events. ``offline`` is replay, eval and rule tests: no
    second clock (``r = t``), no lateness bound, no idempotency claims (§1, §7)."""

    def __init__(self, *, offline: bool = False) -> None:
        self.offline = offline
        self.tenants: dict[str, TenantState] = {}

    def load(self, tenant: str, policy: Policy) -> None:
        """A (re)load or an edit (§9): identities the policy still declares keep their
        events, those it no longer declares expire, and a window that now reaches further
        back finds only what the previous policy kept."""
        st = self.tenants.get(tenant)
        if st is None:
            self.tenants[tenant] = TenantState(policy=policy)
            return
        st.policy = policy
        reaches = st.reaches()
        for (ident, _), stored in st.stored.items():
            stored.forget_beyond(stored.newest - reaches.get(ident, math.inf))

    def restart(self, *, keeps_state: bool) -> None:
        """A new server process: Redis keeps everything, memory starts empty (§9)."""
        if not keeps_state:
            for tenant, st in self.tenants.items():
                self.tenants[tenant] = TenantState(policy=st.policy)

    def decide(self, ev: Event) -> Outcome:
        st = self.tenants[ev.tenant]
        if self.offline:
            assert ev.occurred_at is not None
            r = t = ev.occurred_at
        else:
            r, stamped = ev.received_at, event_time(ev)
            if stamped is None:
                return Outcome(refused=True)
            t = stamped
        claim = None
        if ev.request_id and not self.offline:
            claim = st.claims.get(ev.request_id)
            if claim is not None and r - claim.received_at > IDEMPOTENCY_S:
                claim = None
            if claim is not None and claim.fingerprint == fingerprint(ev):
                return replace(claim.outcome, replayed=True)
        policy = st.policy
        lists = frozenset(name for name, nums in policy.lists.items() if ev.phone.e164 in nums)
        facts = Facts(event=ev, t=t, local_hour=local_hour(t, policy.timezone), lists=lists)
        values: dict[str, Range] = {}
        for agg in policy.aggregates:
            for offset in agg.offsets:
                values[value_id(agg, offset)] = self.value(st, agg, offset, facts, r)
        for kind in policy.ages:
            values[f"age(per {kind})"] = self.age(st, kind, ev, r)
        outcome = Outcome(values=values, t=t)
        if not ev.dry_run:
            self.record(st, facts, r)
            if ev.request_id and not self.offline and claim is None:
                st.claims[ev.request_id] = Claim(
                    fingerprint=fingerprint(ev), received_at=r, outcome=outcome
                )
        return outcome

    def value(self, st: TenantState, agg: Aggregate, offset: int, facts: Facts, r: float) -> Range:
        """§5 over E: what fed the identity with this key before, plus this event."""
        ev, tz = facts.event, st.policy.timezone
        key = concrete_key(agg, ev, facts.lists)
        if key is None:  # an empty window (§5)
            return numeric_range(agg, []) if agg.kind in NUMERIC else (0, 0)
        ident = identity(agg, tz)
        stored = st.stored.get((ident, key), Stored())
        if r - stored.written_at > st.reaches()[ident]:
            # Nobody wrote the key for longer than its reach on the receipt clock: a path
            # may have let it expire (Redis keys expire on Redis's clock), which only a
            # back-dated event can notice.
            stored.forget_beyond(math.inf)
        entries = list(stored.entries)
        fed = fed_item(agg, ev, facts)
        if fed is not None:
            entries.append(Entry(t=facts.t, item=fed[1]))
        lo, hi = window_buckets(agg.window, tz, facts.t, offset)
        inside = [e for e in entries if lo <= bucket(agg.window, tz, e.t) <= hi]
        sure = [e for e in inside if not e.maybe_dropped]
        if agg.kind in NUMERIC:
            return numeric_range(agg, inside)
        if agg.kind == "count":
            return len(sure), len(inside)
        if agg.kind == "distinct":
            return len({e.item for e in sure}), len({e.item for e in inside})
        # An event that does not feed still looks its member up. §5 names the digits after
        # the event's own segment; that is how `per segment` stores members, and for
        # `per prefix N` the model looks the member up as that key stores it.
        m = fed[1] if fed is not None else member(agg, ev, key)
        return run_length({e.item for e in sure}, m), run_length({e.item for e in inside}, m)

    def age(self, st: TenantState, kind: str, ev: Event, r: float) -> Range:
        value = key_part(kind, "", ev, frozenset())
        seen = st.seen.get((kind, value)) if value else None
        if seen is None or r - seen.last > AGE_MEMORY_S:
            return (0, 0)
        # §6: between the whole seconds, and never negative (offline, r is the event time).
        age = max(0, math.floor(r) - math.floor(seen.first))
        return age, age

    def record(self, st: TenantState, facts: Facts, r: float) -> None:
        """Once per identity and concrete key, however many windows read it (§8)."""
        ev, policy = facts.event, st.policy
        done: set[Hashable] = set()
        reaches = st.reaches()
        for agg in policy.aggregates:
            ident = identity(agg, policy.timezone)
            fed = fed_item(agg, ev, facts)
            if ident in done or fed is None:
                continue
            done.add(ident)
            stored = st.stored.setdefault((ident, fed[0]), Stored())
            stored.entries.append(Entry(t=facts.t, item=fed[1]))
            stored.newest = max(stored.newest, facts.t)
            stored.written_at = r
            stored.forget_beyond(stored.newest - reaches[ident])
        for kind in policy.ages:
            value = key_part(kind, "", ev, frozenset())
            if not value:
                continue
            seen = st.seen.get((kind, value))
            if seen is None or r - seen.last > AGE_MEMORY_S:
                st.seen[(kind, value)] = Seen(first=r, last=r)
            else:
                seen.last = max(seen.last, r)


def numeric_range(agg: Aggregate, inside: list[Entry]) -> Range:
    """§5 for sum, avg, min and max over the values in the window."""
    if any(e.maybe_dropped for e in inside):
        return ANY
    values = [int(e.item) for e in inside]
    if agg.kind in ("min", "max"):
        if not values:
            return UNKNOWN
        v = min(values) if agg.kind == "min" else max(values)
        return v, v
    positive = sum(v for v in values if v > 0)
    negative = -sum(v for v in values if v < 0)
    if positive >= SUM_LIMIT or negative >= SUM_LIMIT:
        return UNKNOWN
    total = positive - negative
    if agg.kind == "sum":
        return total, total
    if not values:
        return UNKNOWN
    # An average is a decimal: of decimal values (millionths) as it is, of ints scaled.
    scale = 1 if agg.value[0] == "number" else 1_000_000
    exact = Fraction(total * scale, len(values))
    mean = round(exact)  # Python rounds a Fraction's tie to the even integer
    return mean, mean


def assumed(policy: Policy, ev: Event) -> Outcome:
    """§7: the values `ringfence eval` and rule tests assume: the event is the first the
    state has seen (decided on an empty state, offline)."""
    model = Model(offline=True)
    model.load(ev.tenant, policy)
    return model.decide(replace(ev, dry_run=True))
