"""Aggregates over time windows: what a compiled policy reads and what an event feeds.

The policy language never does I/O. A compiled policy *plans*: for given facts it returns
the :class:`AggregateRef` values to fetch and record, in one round trip. The state backend
(server side) answers with one value per ``ref.id``; an aggregate it could not fetch is
``None`` (unknown), never 0. docs/state.md ("What every value means") is the
specification of every value.

**Identity.** Two aggregates count the same events, and so share storage, exactly when
their :func:`identity` is equal. The identity is derived from the declared fields of
:class:`AggregateSpec` and :class:`Window` minus each class's ``IDENTITY_EXCLUDE``, so a
field added later counts by default; only what provably does not change the meaning
(the name, the offset a window is read at, the retention derived from the policy) is
excluded, by name, here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import ClassVar, Protocol


class AggKind(StrEnum):
    COUNT = "count"  # events in the window
    DISTINCT = "distinct"  # distinct values of a field in the window
    RUN = "run"  # length of the run of consecutive numbers around this one, in the window
    # Seconds since the key was first seen, on the receipt clock (0 the first time): age().
    FIRST_SEEN = "first_seen"
    # Over a numeric value of each event (``field`` = "value:<canonical expression>"):
    SUM = "sum"  # the sum of the values in the window (0 for none)
    AVG = "avg"  # their mean, rounded half to even to millionths (unknown for none)
    MIN = "min"  # the least (unknown for none)
    MAX = "max"  # the greatest (unknown for none)


# Kinds over a numeric value of each event: their values may be unknown without the
# state failing (an empty window's min, a sum past SUM_LIMIT).
NUMERIC_KINDS = frozenset({AggKind.SUM, AggKind.AVG, AggKind.MIN, AggKind.MAX})
# An event's value feeds a numeric aggregate only when its magnitude is below this (in
# the value's own unit: millionths for a decimal), and a sum is unknown once its
# positive or its negative part reaches SUM_LIMIT: every value, and every sum that is
# known, is exact in a double (the Redis script's arithmetic) and in an int64.
VALUE_LIMIT = 10**15
SUM_LIMIT = 2**53


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
    ATTRIBUTE = "attribute"  # an event attribute (``key_arg`` = its name): a user id


DAY_S = 86_400


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """A sliding window of ``size_s`` seconds, or (``calendar_day``) the calendar day in
    ``timezone``, read ``offset_s`` seconds back: "sustained" reads the same hourly count
    0h, 1h and 2h ago.

    Canonical by construction (:func:`sliding` and :func:`calendar_day`): a sliding window
    has no time zone and a calendar day's size is one day, so equal meaning is equal data.
    """

    IDENTITY_EXCLUDE: ClassVar[frozenset[str]] = frozenset({"offset_s"})

    size_s: int
    offset_s: int = 0
    calendar_day: bool = False
    timezone: str = ""

    @property
    def span_s(self) -> int:
        """How far back this window reaches from the event."""
        return self.size_s + self.offset_s


def sliding(size_s: int, offset_s: int = 0) -> Window:
    return Window(size_s=size_s, offset_s=offset_s)


def calendar_day(timezone: str, offset_s: int = 0) -> Window:
    return Window(size_s=DAY_S, offset_s=offset_s, calendar_day=True, timezone=timezone)


@dataclass(frozen=True, slots=True, kw_only=True)
class AggregateSpec:
    """One aggregate window a policy reads: a declaration, an ``ago()`` / ``sustained()``
    variant of one (``window.offset_s`` > 0, id ``NAME@1h``), or an ``age()`` key.

    ``filter`` is the canonical text of the checked ``where`` expression
    (:func:`dsl.ir.canonical`), "" for none. ``horizon_s`` is derived by the lowering stage:
    the largest offset of any window of the policy over this identity, so storage keeps
    what every one of them reads (docs/state.md §9).
    """

    # ``decimal`` follows from ``field`` (the value's canonical text names its type) and
    # ``after_decision`` from ``filter`` (it reads ``decision.*``).
    IDENTITY_EXCLUDE: ClassVar[frozenset[str]] = frozenset(
        {"id", "horizon_s", "decimal", "after_decision"}
    )

    id: str
    kind: AggKind
    key: KeyKind
    key_arg: str = ""  # list name for LIST, digit count for PREFIX, name for ATTRIBUTE
    # Further keys counted together with the first: per (number, app) is NUMBER + ((APP, ""),).
    # A ref's key then joins the values, each prefixed with its length (runtime.join_key),
    # so caller text in one part can never pass for another split.
    more_keys: tuple[tuple[KeyKind, str], ...] = ()
    field: str = ""  # for DISTINCT: "app_id", "device_id", "ip", "scene", "phone", "attr:<k>"
    # (for SUM/AVG/MIN/MAX: "value:" and the canonical text of the value's expression)
    decimal: bool = False  # SUM/AVG/MIN/MAX: the value is a decimal (millionths)
    filter: str = ""
    # The filter reads the decision (``decision.action``): the aggregate counts past
    # decisions, so a request reads it without feeding it and feeds it once decided
    # (docs/state.md §11).
    after_decision: bool = False
    window: Window
    horizon_s: int = 0

    @property
    def keys(self) -> tuple[tuple[KeyKind, str], ...]:
        return ((self.key, self.key_arg), *self.more_keys)


def is_decimal(spec: AggregateSpec) -> bool:
    """Whether the aggregate's value is a decimal (millionths, as everywhere in the
    language): an average always, a sum, min or max of decimal values."""
    return spec.kind is AggKind.AVG or (spec.kind in NUMERIC_KINDS and spec.decimal)


def given_value(text: str, *, decimal: bool, signed: bool) -> int:
    """A value written for an aggregate (``eval --agg``, a rule test's ``aggregates``):
    whole digits for a count; a decimal ("12.5", at most six places) for a decimal
    aggregate, in millionths; a minus sign only for sum, avg, min and max. Raises
    ValueError saying what is accepted."""
    body = text[1:] if signed and text.startswith("-") else text
    whole, dot, frac = body.partition(".")
    ok = whole.isdigit() and whole.isascii() and len(whole) <= 19
    if dot:
        ok = ok and decimal and frac.isdigit() and frac.isascii() and len(frac) <= 6
    value = int(whole) * (1_000_000 if decimal else 1) if ok else 0
    if ok and dot:
        value += int(frac.ljust(6, "0"))
    if not ok or value > 2**63 - 1:
        what = "a decimal with at most six places" if decimal else "a whole number"
        sign = ", negative or not" if signed else " from 0"
        raise ValueError(f"a value is {what}{sign}, within 64 bits, or 'unknown'")
    return -value if body is not text else value


IdentityPart = tuple[str, str | int | bool | tuple[object, ...]]


def identity(value: AggregateSpec | Window) -> tuple[IdentityPart, ...]:
    """``(field name, value)`` for every declared field not in the class's
    ``IDENTITY_EXCLUDE``, nested dataclasses flattened as ``window.size_s`` and so on.
    Enums become their values, so the identity is plain data that formats the same
    everywhere (storage keys, marshal, tests)."""
    out: list[IdentityPart] = []
    _identity_into(value, "", out)
    return tuple(out)


def _identity_into(value: object, prefix: str, out: list[IdentityPart]) -> None:
    exclude: frozenset[str] = getattr(value, "IDENTITY_EXCLUDE", frozenset())
    for f in dataclasses.fields(value):  # type: ignore[arg-type]
        if f.name in exclude:
            continue
        v = getattr(value, f.name)
        if dataclasses.is_dataclass(v):
            _identity_into(v, f"{prefix}{f.name}.", out)
        else:
            out.append((prefix + f.name, _plain(v)))


def _plain(v: object) -> str | int | bool | tuple[object, ...]:
    if isinstance(v, Enum):
        return str(v.value)
    if isinstance(v, tuple):
        return tuple(_plain(x) for x in v)
    assert isinstance(v, str | int | bool), f"identity field of type {type(v).__name__}"
    return v


class RefLike(Protocol):
    """What a state backend reads of a ref: :class:`AggregateRef`, or anything with its four
    fields (a replay rebuilds refs a worker process planned, more cheaply than the
    dataclass)."""

    @property
    def spec(self) -> AggregateSpec: ...
    @property
    def key(self) -> str: ...
    @property
    def member(self) -> str: ...
    @property
    def feeds(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class AggregateRef:
    """An aggregate bound to one request.

    ``key`` is the concrete key value (e.g. the E.164 number, the segment prefix ``"170"``,
    the device id, ``""`` for TENANT); the backend hashes numbers before they reach storage.
    ``member`` is what the event adds: the distinct value for DISTINCT, the number's
    national significant number for RUN, ``""`` for COUNT. ``feeds`` says whether this
    event feeds the aggregate's identity (docs/state.md §2): False e.g. for a LIST
    aggregate read for a number that is not on the list, or an event its filter rejects.
    Offset windows feed exactly as the aggregate they are read from.
    """

    spec: AggregateSpec
    key: str
    member: str = ""
    feeds: bool = True

    @property
    def id(self) -> str:
        return self.spec.id
