"""Window arithmetic: which buckets a window reads, where an event lands, how long keys live.

One rule for every kind (docs/state.md §4): an event belongs to a window when its bucket
lies in the window's bucket range. Sliding windows are cut into buckets of
``w = max(1, size_s // 60)`` seconds; bucket ``b`` holds times in ``((b-1)*w, b*w]``, and
the window ``(T - size, T]`` (``T = now - offset``) reads buckets
``floor((T - size)/w) + 1 .. ceil(T/w)``: every event in the window, plus at most one
bucket's worth older at the old edge (and younger at the new one, off a bucket edge).
Calendar-day windows bucket by the local date in ``timezone`` (DST-aware via zoneinfo), so
"today" starts exactly at local midnight.

Every request does this arithmetic for every aggregate, so a window is compiled once
(:func:`compile_window`) into an object whose methods answer everything a read and a
write need; the free functions below are the same arithmetic, one question at a time.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from dsl.aggregates import Window
from dsl.runtime import LAST_LOCAL
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
        # Times past the calendar's end read as its last day, as the policy's local time
        # does (dsl.runtime.local_time): only a tool passes them, never the server.
        t = min(t, LAST_LOCAL)
        for span in self._spans:
            if span[1] <= t < span[2]:
                self.last = span
                return span
        zone = _zone(self.tz)
        try:
            day = datetime.fromtimestamp(t, zone).date()
            start = _midnight(self.tz, day)
            # The calendar's last day has no next midnight: it runs to the end of time.
            stop = math.inf if day == date.max else _midnight(self.tz, day + timedelta(days=1))
        except (OverflowError, ValueError, OSError):
            raise StateError(f"event time {t:.0f} has no local date in {self.tz}") from None
        found = (day.toordinal(), start, stop)
        if (
            start <= t < stop
            and stop != math.inf
            and _offset(zone, start) == _offset(zone, stop - 0.001)
        ):
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


class _Sliding:
    """Buckets of ``w`` seconds."""

    __slots__ = ("offset", "size", "w")

    def __init__(self, window: Window) -> None:
        self.size = window.size_s
        self.offset = window.offset_s
        self.w = bucket_width(window.size_s)

    def bucket(self, now: float) -> int:
        """The bucket an event at ``now`` lands in."""
        return math.ceil(now / self.w)

    def read(self, now: float) -> tuple[int, int]:
        """The inclusive bucket range the window reads for an event at ``now``."""
        end = now - self.offset
        w = self.w
        return math.floor((end - self.size) / w) + 1, math.ceil(end / w)

    def write(self, now: float, horizon_s: int) -> tuple[int, int, int]:
        """The event's bucket, the oldest bucket to keep (one more than any window over
        the key reads, ``horizon_s`` being the largest offset read) and the key's TTL."""
        w = self.w
        return (
            math.ceil(now / w),
            math.floor((now - horizon_s - self.size) / w),
            self.size + horizon_s + w + SLACK_S,
        )


class _Calendar:
    """One bucket per local day: the date's ordinal."""

    __slots__ = ("days", "offset")

    def __init__(self, window: Window) -> None:
        self.offset = window.offset_s
        self.days = local_days(window.timezone)

    def _day(self, t: float) -> int:
        span = self.days.last
        return span[0] if span[1] <= t < span[2] else self.days.ordinal(t)

    def bucket(self, now: float) -> int:
        return self._day(now)

    def read(self, now: float) -> tuple[int, int]:
        day = self._day(now - self.offset)
        return day, day

    def write(self, now: float, horizon_s: int) -> tuple[int, int, int]:
        day = self._day(now)
        return (
            day,
            (day if horizon_s == 0 else self._day(now - horizon_s)) - 1,
            _DAY_S + _DST_S + horizon_s + SLACK_S,
        )


CompiledWindow = _Sliding | _Calendar


@lru_cache(maxsize=4096)
def compile_window(window: Window) -> CompiledWindow:
    """The window's arithmetic, worked out once. The window must be valid (size > 0
    unless calendar)."""
    return _Calendar(window) if window.calendar_day else _Sliding(window)


def read_range(window: Window, now: float) -> tuple[int, int]:
    """Inclusive bucket range the window reads (calendar: one local-day ordinal)."""
    return compile_window(window).read(now)


def record_bucket(window: Window, now: float) -> int:
    return compile_window(window).bucket(now)


def ttl_s(window: Window, horizon_s: int) -> int:
    """How long a key must outlive its last write for every window over it to be answered."""
    return compile_window(window).write(0.0, horizon_s)[2]
