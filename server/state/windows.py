"""Window arithmetic: which buckets a window reads, where an event lands, how long keys live.

Sliding windows are cut into buckets of ``w = max(1, size_s // 60)`` seconds. Bucket ``b``
holds events with time in ``((b-1)*w, b*w]``; the window ``(T - size, T]`` (``T = now -
offset``) reads buckets ``floor((T - size)/w) + 1 .. ceil(T/w)``. It is exact when ``T`` and
``T - size`` fall on bucket edges and otherwise counts up to one bucket more at the old edge
(and, for offset windows, events up to one bucket after ``T``): exact to one bucket, erring
towards counting. Calendar-day windows bucket by the local date in ``timezone``, so "today"
starts exactly at local midnight (DST-aware via zoneinfo). Runs store event times in
milliseconds and are exact.

Every request does this arithmetic for every aggregate, so a window is compiled once
(:func:`compile_window`) into an object whose two methods answer everything a read and a
write need; the free functions below are the same arithmetic, one question at a time.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from dsl.aggregates import Window
from dsl.zones import zone

from .errors import StateError

BUCKETS_PER_WINDOW = 60
SLACK_S = 60  # TTL margin beyond the farthest window, for clock skew between replicas
_DAY_S = 86_400
_DST_S = 3_600  # a local day can last 25 h
_DAY_SPANS_KEPT = 4  # today, yesterday (offset windows, trimming) and a little slack

DaySpan = tuple[int, float, float]  # (date ordinal, local midnight, next local midnight)


def bucket_width(size_s: int) -> int:
    return max(1, size_s // BUCKETS_PER_WINDOW)


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    found = zone(name)
    if found is None:
        raise StateError(f"unknown timezone {name[:60]!r} in a calendar-day window")
    return found


def _midnight(tz: str, day: date) -> float:
    return datetime.combine(day, time(0), tzinfo=_zone(tz)).timestamp()


class LocalDays:
    """The local days of one timezone.

    A zoneinfo conversion costs microseconds and every calendar-day aggregate needs one or
    two per request, while almost every request falls on a day seen a moment ago. So the
    last few ``[midnight, next midnight)`` spans are kept and a lookup is usually two float
    comparisons. A span is only kept when the UTC offset is the same at both ends (no
    transition inside it, so the local date is that day throughout); a DST-change day is
    converted every time, exactly as before.
    """

    __slots__ = ("_spans", "last", "tz")

    def __init__(self, tz: str) -> None:
        self.tz = tz  # resolved on first use: an unknown zone fails the call that uses it
        self._spans: tuple[DaySpan, ...] = ()
        # The span found last: callers test it inline before paying for a call.
        self.last: DaySpan = (0, 0.0, -1.0)

    def span(self, t: float) -> DaySpan:
        for span in self._spans:
            if span[1] <= t < span[2]:
                self.last = span
                return span
        zone = _zone(self.tz)
        day = datetime.fromtimestamp(t, zone).date()
        start = _midnight(self.tz, day)
        stop = _midnight(self.tz, day + timedelta(days=1))
        found = (day.toordinal(), start, stop)
        if start <= t < stop and _offset(zone, start) == _offset(zone, stop - 0.001):
            # Replaced whole, never mutated: a reader never sees a half-updated tuple.
            self._spans = (found, *self._spans[: _DAY_SPANS_KEPT - 1])
            self.last = found
        return found

    def ordinal(self, t: float) -> int:
        return self.span(t)[0]


def _offset(zone: ZoneInfo, t: float) -> timedelta | None:
    return datetime.fromtimestamp(t, zone).utcoffset()


@lru_cache(maxsize=64)
def local_days(tz: str) -> LocalDays:
    return LocalDays(tz)


@lru_cache(maxsize=4096)
def _midnight_of(tz: str, ordinal: int) -> float:
    return _midnight(tz, date.fromordinal(ordinal))


class _Sliding:
    """Buckets of ``w`` seconds (counts, distinct counts)."""

    __slots__ = ("offset", "size", "w")

    def __init__(self, window: Window) -> None:
        self.size = window.size_s
        self.offset = window.offset_s
        self.w = bucket_width(window.size_s)

    def read(self, now: float) -> tuple[int, int, bool]:
        """Inclusive bucket range, and whether the window contains ``now``."""
        end = now - self.offset
        w = self.w
        return math.floor((end - self.size) / w) + 1, math.ceil(end / w), self.offset == 0

    def write(self, now: float, max_offset_s: int) -> tuple[int, int, int]:
        """The event's bucket, the oldest bucket any window over the key still reads, and
        the key's TTL."""
        w = self.w
        return (
            math.ceil(now / w),
            math.floor((now - max_offset_s - self.size) / w),
            self.size + max_offset_s + w + SLACK_S,
        )


class _SlidingMs(_Sliding):
    """The exact window in epoch milliseconds (runs)."""

    __slots__ = ()

    def read(self, now: float) -> tuple[int, int, bool]:
        """``(lo, hi]`` in ms, and whether the window contains ``now``."""
        end = now - self.offset
        return round((end - self.size) * 1000), round(end * 1000), self.offset == 0

    def write(self, now: float, max_offset_s: int) -> tuple[int, int, int]:
        """The event time (ms), the time at or before which entries go, the key's TTL."""
        return (
            round(now * 1000),
            round((now - max_offset_s - self.size) * 1000),
            self.size + max_offset_s + self.w + SLACK_S,
        )


class _Calendar:
    """One bucket per local day: the date's ordinal (counts, distinct counts)."""

    __slots__ = ("days", "offset")

    def __init__(self, window: Window) -> None:
        self.offset = window.offset_s
        self.days = local_days(window.timezone)

    def covers(self, day: int, now: float) -> bool:
        # "Yesterday" never holds now; an offset that still lands on today does.
        return self.offset == 0 or day == self.days.ordinal(now)

    def read(self, now: float) -> tuple[int, int, bool]:
        t = now - self.offset
        span = self.days.last
        day = span[0] if span[1] <= t < span[2] else self.days.ordinal(t)
        return day, day, self.offset == 0 or self.covers(day, now)

    def write(self, now: float, max_offset_s: int) -> tuple[int, int, int]:
        days = self.days
        span = days.last
        day = span[0] if span[1] <= now < span[2] else days.ordinal(now)
        return (
            day,
            (day if max_offset_s == 0 else days.ordinal(now - max_offset_s)) - 1,
            _DAY_S + _DST_S + max_offset_s + SLACK_S,
        )


class _CalendarMs(_Calendar):
    """The local day in epoch milliseconds (runs)."""

    __slots__ = ()

    def read(self, now: float) -> tuple[int, int, bool]:
        day, start, stop = self.days.span(now - self.offset)
        return round(start * 1000) - 1, round(stop * 1000) - 1, self.covers(day, now)

    def write(self, now: float, max_offset_s: int) -> tuple[int, int, int]:
        yesterday = self.days.ordinal(now - max_offset_s) - 1
        return (
            round(now * 1000),
            round(_midnight_of(self.days.tz, yesterday) * 1000) - 1,
            _DAY_S + _DST_S + max_offset_s + SLACK_S,
        )


CompiledWindow = _Sliding | _Calendar


@lru_cache(maxsize=4096)
def compile_window(window: Window, *, in_ms: bool = False) -> CompiledWindow:
    """The window's arithmetic, worked out once. ``in_ms``: exact times in ms (runs)
    rather than bucket numbers. The window must be valid (size > 0 unless calendar)."""
    if window.calendar_day:
        return _CalendarMs(window) if in_ms else _Calendar(window)
    return _SlidingMs(window) if in_ms else _Sliding(window)


def read_range(window: Window, now: float) -> tuple[int, int]:
    """Inclusive bucket range the window reads (calendar: one local-day ordinal)."""
    lo, hi, _ = compile_window(window).read(now)
    return lo, hi


def record_bucket(window: Window, now: float) -> int:
    return compile_window(window).write(now, 0)[0]


def covers_now(window: Window, now: float) -> bool:
    """Whether the window contains ``now``: only then does the current event count in it."""
    return compile_window(window).read(now)[2]


def time_bounds_ms(window: Window, now: float) -> tuple[int, int]:
    """``(lo, hi]`` in epoch milliseconds: the exact window, for runs."""
    lo, hi, _ = compile_window(window, in_ms=True).read(now)
    return lo, hi


def ttl_s(window: Window, max_offset_s: int) -> int:
    """How long a key must outlive its last write for every window over it to be answered."""
    if window.calendar_day:
        return _DAY_S + _DST_S + max_offset_s + SLACK_S
    return window.size_s + max_offset_s + bucket_width(window.size_s) + SLACK_S


def keep_from_bucket(window: Window, now: float, max_offset_s: int) -> int:
    """Oldest bucket any window (up to ``max_offset_s`` back) still reads; older ones go."""
    return compile_window(window).write(now, max_offset_s)[1]


def keep_after_ms(window: Window, now: float, max_offset_s: int) -> int:
    """Run entries seen at or before this time (ms) can no longer be in any window."""
    return compile_window(window, in_ms=True).write(now, max_offset_s)[1]
