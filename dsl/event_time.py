"""Event times as people write them: RFC 3339 / ISO 8601 text, TOML date-times, epoch seconds.

A time with an offset (``2026-01-05T09:30:00+08:00``, ``...Z``) is that instant. A time
without one is read as a wall-clock time **in the policy's time zone** (the zone that
``today`` and ``event.local_hour`` use), so ``2026-01-05T09:30`` in a policy set to
``Asia/Shanghai`` has ``local_hour`` 9. A wall-clock time the clocks skip (a daylight-saving
gap) is an error; one they pass twice is the first of the two.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from dsl.zones import zone

_EPOCH = re.compile(r"\d{1,12}(?:\.\d+)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
EXAMPLE = "2026-01-05T09:30:00+08:00"
# 9999-12-31T23:59:59Z: later times have no calendar date to give local_hour or `today`.
MAX_EPOCH = 253_402_300_799


def local_epoch(wall: datetime, timezone: str) -> float:
    """Seconds since the epoch of a naive wall-clock time in ``timezone``."""
    found = zone(timezone)
    if found is None:
        raise ValueError(f"unknown time zone {timezone[:60]!r}")
    aware = wall.replace(tzinfo=found, fold=0)
    stamp = _bounded(aware.timestamp())
    if datetime.fromtimestamp(stamp, found).replace(tzinfo=None) != wall.replace(fold=0):
        raise ValueError(
            f"{wall.isoformat()} does not exist in {timezone} (the clocks skip it); "
            "give an offset to say which instant you mean"
        )
    return stamp


def event_epoch(value: object, timezone: str) -> float:
    """Seconds since the epoch from a TOML value: a number, or an (offset or local)
    date-time. Raises ValueError saying what is wrong."""
    if isinstance(value, bool):
        raise ValueError("must be seconds since the epoch or a date-time, not true/false")
    if isinstance(value, int) and not 0 <= value <= MAX_EPOCH:
        return _bounded(-1.0)
    if isinstance(value, int | float):
        return _bounded(float(value)) if math.isfinite(value) else _bounded(-1.0)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return _bounded(value.timestamp())
        return _bounded(local_epoch(value, timezone))
    if isinstance(value, date):
        raise ValueError(
            f"a date without a time of day: write {value.isoformat()}T00:00:00 "
            f"(read in the policy's time zone, {timezone}) or add an offset"
        )
    if isinstance(value, time):
        raise ValueError("a time of day without a date: write a full date-time")
    raise ValueError(f"must be seconds since the epoch or a date-time such as {EXAMPLE}")


def parse_time(text: str, timezone: str) -> float:
    """``--at`` text: RFC 3339 / ISO 8601 (offset optional) or seconds since the epoch."""
    text = text.strip()
    if _EPOCH.fullmatch(text):
        return _bounded(float(text))
    if _DATE.fullmatch(text):
        # Python reads a date alone as its midnight; rule-test files refuse it, and so
        # does --at: midnight where is a question the author should answer.
        return event_epoch(date.fromisoformat(text), timezone)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use RFC 3339 / ISO 8601 such as {EXAMPLE} "
            "(without an offset it is read in the policy's time zone) "
            "or seconds since the epoch"
        ) from None
    if when.tzinfo is not None:
        return _bounded(when.timestamp())
    return _bounded(local_epoch(when, timezone))


def _bounded(epoch: float) -> float:
    if not 0 <= epoch <= MAX_EPOCH:
        raise ValueError("must be between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z")
    return epoch


def describe(epoch: float, timezone: str) -> str:
    """``2026-01-05T09:30:00+08:00 (Asia/Shanghai)``: how a time is shown back."""
    try:
        local = datetime.fromtimestamp(epoch, zone(timezone) or ZoneInfo("UTC"))
    except (OverflowError, ValueError, OSError):
        # Past the last local date of the zone (9999-12-31 ends early east of UTC).
        return f"{epoch:.0f} s since the epoch, past the calendar's end in {timezone}"
    return f"{local.isoformat(timespec='seconds')} ({timezone})"
