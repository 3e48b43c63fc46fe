"""Window arithmetic: which buckets a window reads, where an event lands, how long keys live.

Sliding windows are cut into buckets of ``w = max(1, size_s // 60)`` seconds. Bucket ``b``
holds events with time in ``((b-1)*w, b*w]``; the window ``(T - size, T]`` (``T = now -
offset``) reads buckets ``floor((T - size)/w) + 1 .. ceil(T/w)``. It is exact when ``T`` and
``T - size`` fall on bucket edges and otherwise counts up to one bucket more at the old edge
(and, for offset windows, events up to one bucket after ``T``): exact to one bucket, erring
towards counting. Calendar-day windows bucket by the local date in ``timezone``, so "today"
starts exactly at local midnight (DST-aware via zoneinfo). Runs store event times in
milliseconds and are exact.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dsl.aggregates import Window

from .errors import StateError

BUCKETS_PER_WINDOW = 60
SLACK_S = 60  # TTL margin beyond the farthest window, for clock skew between replicas
_DAY_S = 86_400
_DST_S = 3_600  # a local day can last 25 h


def bucket_width(size_s: int) -> int:
    return max(1, size_s // BUCKETS_PER_WINDOW)


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise StateError(f"unknown timezone {name!r} in a calendar-day window") from exc


def _local_date(tz: str, t: float) -> date:
    return datetime.fromtimestamp(t, _zone(tz)).date()


def _midnight(tz: str, day: date) -> float:
    return datetime.combine(day, time(0), tzinfo=_zone(tz)).timestamp()


def read_range(window: Window, now: float) -> tuple[int, int]:
    """Inclusive bucket range the window reads (calendar: one local-day ordinal)."""
    end = now - window.offset_s
    if window.calendar_day:
        day = _local_date(window.timezone, end).toordinal()
        return day, day
    w = bucket_width(window.size_s)
    return math.floor((end - window.size_s) / w) + 1, math.ceil(end / w)


def record_bucket(window: Window, now: float) -> int:
    if window.calendar_day:
        return _local_date(window.timezone, now).toordinal()
    return math.ceil(now / bucket_width(window.size_s))


def covers_now(window: Window, now: float) -> bool:
    """Whether the window contains ``now``: only then does the current event count in it."""
    if window.offset_s == 0:
        return True
    if window.calendar_day:
        return _local_date(window.timezone, now - window.offset_s) == _local_date(
            window.timezone, now
        )
    return False


def time_bounds_ms(window: Window, now: float) -> tuple[int, int]:
    """``(lo, hi]`` in epoch milliseconds: the exact window, for runs."""
    end = now - window.offset_s
    if window.calendar_day:
        day = _local_date(window.timezone, end)
        start = _midnight(window.timezone, day)
        stop = _midnight(window.timezone, day + timedelta(days=1))
        return round(start * 1000) - 1, round(stop * 1000) - 1
    return round((end - window.size_s) * 1000), round(end * 1000)


def ttl_s(window: Window, max_offset_s: int) -> int:
    """How long a key must outlive its last write for every window over it to be answered."""
    if window.calendar_day:
        return _DAY_S + _DST_S + max_offset_s + SLACK_S
    return window.size_s + max_offset_s + bucket_width(window.size_s) + SLACK_S


def keep_from_bucket(window: Window, now: float, max_offset_s: int) -> int:
    """Oldest bucket any window (up to ``max_offset_s`` back) still reads; older ones go."""
    if window.calendar_day:
        return _local_date(window.timezone, now - max_offset_s).toordinal() - 1
    w = bucket_width(window.size_s)
    return math.floor((now - max_offset_s - window.size_s) / w)


def keep_after_ms(window: Window, now: float, max_offset_s: int) -> int:
    """Run entries seen at or before this time (ms) can no longer be in any window."""
    if window.calendar_day:
        day = _local_date(window.timezone, now - max_offset_s) - timedelta(days=1)
        return round(_midnight(window.timezone, day) * 1000) - 1
    return round((now - max_offset_s - window.size_s) * 1000)
