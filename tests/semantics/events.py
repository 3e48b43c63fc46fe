"""Hypothesis strategies for event streams: tenants interleaved, a small pool of numbers
(consecutive CN numbers of one segment, so runs happen), back-dated and future-stamped
events, retries, reused request ids, empty fields and dry runs.

A stream is a tuple of :class:`model.Event` in the order the server receives them; their
receipt times (``received_at``) never go back, and events with one receipt time in a row
form a *tick* (one EvaluateBatch, one burst on a stream).
"""

from __future__ import annotations

from dataclasses import replace
from itertools import groupby

from hypothesis import strategies as st
from semantics.model import LATENESS_S, Event, Phone

TENANTS = ("a", "b")

# The pool: (E.164, national number, segment prefix, segment kind), as the server's parser
# and segment table give them (test_differential.py checks that they still do).
POOL = tuple(
    Phone(e164=e, national=n, segment=s, segment_kind=k)
    for e, n, s, k in (
        ("+8617000000001", "17000000001", "1700", "mvno"),
        ("+8617000000002", "17000000002", "1700", "mvno"),
        ("+8617000000003", "17000000003", "1700", "mvno"),
        ("+8617000000005", "17000000005", "1700", "mvno"),
        ("+8613800138000", "13800138000", "138", "mobile"),
        ("+8613800138001", "13800138001", "138", "mobile"),
        ("+8613900000000", "13900000000", "139", "mobile"),  # a run that cannot count down
        ("+8613900000001", "13900000001", "139", "mobile"),
        ("+12025550123", "2025550123", "", ""),  # no CN segment
    )
)
E164 = tuple(p.e164 for p in POOL)

SCENES = ("register", "login", "sms_code", "")
APPS = ("shop", "ride", "")
DEVICES = ("d1", "d2", "")
# Two addresses of one /24 and one of another half of it (another city), an address the
# databases do not know, IPv6 in two /64s, an IPv4-mapped one, and none (Evaluate
# refuses text that is no address).
IPS = (
    "203.0.113.1",
    "203.0.113.2",
    "203.0.113.200",
    "198.51.100.7",
    "192.0.2.1",
    "2001:db8:1:2::1",
    "2001:db8:1:2::2",
    "2001:db8:1:3::1",
    "::ffff:203.0.113.9",
    "",
)
CHANNELS = ((), (("channel", "web"),), (("channel", "app"),), (("channel", ""),))
# event.number("amount"): plain, fractions (a tie at the seventh place rounds to even),
# negative, the largest accepted, and texts that are no number (unknown: no value).
AMOUNTS = (
    None,
    "12",
    "0.5",
    "-3.25",
    "100",
    "0.0000005",
    "0.0000015",
    "999999999.999999",
    "1000000000",
    "1e5",
    "NaN",
    " 5",
    "",
)
USERS = (None, "u1", "u2", "")

# 2030-01-01T00:00:00Z: ahead of the machine's clock, so no key a backend stamps with an
# absolute expiry from these times is ever in the past (receipt times are simulated).
EPOCH = 1_893_456_000.0
DAY = 86_400.0
# Days from EPOCH worth landing on: America/New_York changes its clocks on 2030-03-10 and
# 2030-11-03.
SPECIAL_DAYS = (0, 68, 306)


def quarters(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Seconds in quarter steps: exact in binary, so differences are exact too."""
    return st.integers(int(lo * 4), int(hi * 4)).map(lambda q: q / 4)


starts = st.builds(
    lambda day, second: EPOCH + day * DAY + second,
    st.one_of(st.sampled_from(SPECIAL_DAYS), st.integers(0, 400)),
    quarters(0, DAY - 0.25),
)
# The gap between two receipt times: most are short, some cross a window or a day.
gaps = st.one_of(
    quarters(0.25, 90),
    quarters(90, 7_200),
    st.sampled_from([599.75, 3_600.0, 10_800.0, DAY - 60, DAY, DAY + 1_440]),
)
# How far before its receipt time an event says it happened (within the lateness bound),
# or after it: up to 60 s is believed, beyond that the receipt time is used.
back_dated = quarters(0.25, LATENESS_S - 3_600)
skews = st.sampled_from([30.0, 59.75, 60.0, 60.25, 300.0])


@st.composite
def new_event(draw: st.DrawFn, r: float, phones: tuple[Phone, ...]) -> Event:
    stamp = draw(
        st.one_of(
            st.just(None),
            st.just(None),
            back_dated.map(lambda b: r - b),
            skews.map(lambda s: r + s),
        )
    )
    return Event(
        tenant=draw(st.sampled_from(TENANTS)),
        phone=draw(st.sampled_from(phones)),
        scene=draw(st.sampled_from(SCENES)),
        app_id=draw(st.sampled_from(APPS)),
        ip=draw(st.sampled_from(IPS)),
        device_id=draw(st.sampled_from(DEVICES)),
        attributes=draw(st.sampled_from(CHANNELS))
        + tuple(
            (k, v)
            for k, v in (
                ("amount", draw(st.sampled_from(AMOUNTS))),
                ("user_id", draw(st.sampled_from(USERS))),
            )
            if v is not None
        ),
        occurred_at=stamp,
        received_at=r,
        dry_run=draw(st.integers(0, 9)) == 0,
    )


@st.composite
def floods(draw: st.DrawFn, r: float, phones: tuple[Phone, ...]) -> tuple[Event, ...]:
    """One number busy for a while: more buckets than a window holds, so what a path
    trims from a key shows (a sustained() window, an ago() read after a restart)."""
    template = draw(new_event(r, phones))
    spacing = draw(st.sampled_from([1.25, 11.0, 50.0, 70.5]))
    count = draw(st.integers(62, 150))
    return tuple(
        replace(template, received_at=r + i * spacing, occurred_at=None, dry_run=False)
        for i in range(count)
    )


@st.composite
def streams(
    draw: st.DrawFn,
    *,
    max_events: int = 30,
    start: float | None = None,
    ids: str = "q",
    flood: bool = True,
) -> tuple[Event, ...]:
    """Events in receipt order, the first at ``start``. Request ids (``ids`` + a number):
    most events have none; some have a fresh one; some reuse one first sent within the
    last 590 s (a retry when the event is the same, a new request when it differs). Dry
    runs never carry an id. With ``flood``, some streams have a stretch where one number
    is busy (:func:`floods`)."""
    phones = tuple(draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=6, unique=True)))
    r = draw(starts) if start is None else start
    out: list[Event] = []
    first_sent: dict[str, float] = {}
    flood_at = draw(st.integers(0, 4 * max_events)) if flood else -1
    for i in range(draw(st.integers(1, max_events))):
        if i and draw(st.integers(0, 2)):
            r += draw(gaps)
        if i == flood_at:
            out += draw(floods(r, phones))
            r = out[-1].received_at + draw(gaps)
        live = [e for e in out if e.request_id and r - first_sent[e.request_id] < 590]
        if live and draw(st.integers(0, 4)) == 0:
            earlier = draw(st.sampled_from(live))
            ev = replace(earlier, received_at=r)  # a retry: same request, same fingerprint
            change = draw(st.sampled_from(["none", "none", "scene", "tenant"]))
            if change == "scene":  # the id reused for another request
                ev = replace(ev, scene=draw(st.sampled_from(SCENES).filter(ev.scene.__ne__)))
            elif change == "tenant":  # ids are each tenant's own
                ev = replace(ev, tenant=draw(st.sampled_from(TENANTS).filter(ev.tenant.__ne__)))
            out.append(ev)
            continue
        ev = draw(new_event(r, phones))
        if not ev.dry_run and draw(st.integers(0, 2)) == 0:
            rid = f"{ids}{len(first_sent)}"
            first_sent[rid] = r
            ev = replace(ev, request_id=rid)
        out.append(ev)
    return tuple(out)


def ticks(stream: tuple[Event, ...]) -> list[list[Event]]:
    """Consecutive events with one receipt time: a batch, a burst on a stream."""
    return [list(group) for _, group in groupby(stream, key=lambda e: e.received_at)]
