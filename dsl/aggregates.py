"""Aggregates over time windows: what a compiled policy reads and what an event feeds.

The policy language never does I/O. A compiled policy *plans*: for given facts it returns
the :class:`AggregateRef` values to fetch (one round trip) and to record (one more). The
state backend (server side) answers a fetch with one value per ``ref.id``; an aggregate it
could not fetch is ``None`` (unknown), never 0.

Values **include the current event** when the event feeds the aggregate (``ref.feeds``):
a count is the stored count + 1, a distinct count includes ``ref.member``, a run counts the
current number as present. So ``codes_today > 4`` is true on the fifth code of the day,
whether or not the request is a ``dry_run``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class AggKind(StrEnum):
    COUNT = "count"  # events in the window
    DISTINCT = "distinct"  # distinct values of a field in the window
    RUN = "run"  # length of the run of consecutive numbers around this one, in the window
    # Seconds since the key was first seen within the window (0 the first time): age().
    FIRST_SEEN = "first_seen"


class KeyKind(StrEnum):
    """What an aggregate is counted per."""

    NUMBER = "number"  # the phone number (hashed by the backend)
    LIST = "list"  # a named list: only events whose number is on the list feed it
    SEGMENT = "segment"  # the CN segment-table prefix that matched
    PREFIX = "prefix"  # the first N digits of the E.164 number (``key_arg`` = N)
    DEVICE = "device"
    IP = "ip"
    APP = "app"
    TENANT = "tenant"


@dataclass(frozen=True, slots=True)
class Window:
    """A sliding window of ``size_s`` seconds ending ``offset_s`` seconds ago, or
    (``calendar_day``) the calendar day in ``timezone`` containing (now - offset_s).

    Offsets express "sustained": the same hourly count 0h, 1h and 2h ago.
    """

    size_s: int
    offset_s: int = 0
    calendar_day: bool = False
    timezone: str = "UTC"

    @property
    def span_s(self) -> int:
        """How far back this window reaches: what a key's TTL must cover."""
        return self.size_s + self.offset_s


@dataclass(frozen=True, slots=True)
class AggregateSpec:
    """One aggregate a policy declares. ``id`` is stable and unique within a policy."""

    id: str
    kind: AggKind
    key: KeyKind
    window: Window
    key_arg: str = ""  # list name for LIST, digit count for PREFIX
    field: str = ""  # for DISTINCT: "app_id", "device_id", "ip", "scene", "phone", "attr:<k>"
    # Further keys counted together with the first: per (number, app) is NUMBER + ((APP, ""),).
    # A ref's key then joins the values, each prefixed with its length (runtime.join_key),
    # so caller text in one part can never pass for another split.
    more_keys: tuple[tuple[KeyKind, str], ...] = ()

    @property
    def keys(self) -> tuple[tuple[KeyKind, str], ...]:
        return ((self.key, self.key_arg), *self.more_keys)


@dataclass(frozen=True, slots=True)
class AggregateRef:
    """An aggregate bound to one request.

    ``key`` is the concrete key value (e.g. the E.164 number, the segment prefix ``"170"``,
    the device id, ``""`` for TENANT); the backend hashes numbers before they reach storage.
    ``member`` is what the event adds: the distinct value for DISTINCT, the number's
    national significant number for RUN, ``""`` for COUNT. ``feeds`` says whether this
    event is recorded into the aggregate (False e.g. for a LIST aggregate read for a number
    that is not on the list).
    """

    spec: AggregateSpec
    key: str
    member: str = ""
    feeds: bool = True

    @property
    def id(self) -> str:
        return self.spec.id
