"""Helpers the generated policy code calls. Small, pure and fast: they run per request."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from dsl.decision import Action, Decision, Match, RuleTrace
from dsl.durations import format_duration
from dsl.facts import PhoneFacts
from dsl.masking import mask_e164


class _EmptyList:
    """Stands in for a list the caller did not pass: nobody is on it."""

    def __contains__(self, e164: object) -> bool:
        return False

    def labels(self, e164: str) -> Mapping[str, str] | None:
        return None

    def __len__(self) -> int:
        return 0


EMPTY_LIST = _EmptyList()


def masked(phone: PhoneFacts) -> str:
    """``{phone.masked}``: the masking the server's logs use (:mod:`dsl.masking`)."""
    return mask_e164(phone.e164, phone.country_code)


def label(view: object, e164: str, key: str) -> str:
    labels = view.labels(e164) if hasattr(view, "labels") else None
    if not labels:
        return ""
    return str(labels.get(key, ""))


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_time(ts: float, tz: str) -> tuple[int, int]:
    """(hour 0..23, ISO weekday 1..7) of ``ts`` in time zone ``tz``."""
    dt = datetime.fromtimestamp(ts, _zone(tz))
    return dt.hour, dt.isoweekday()


# Integers in policies are 64-bit: literals and folding are checked at compile time, and
# arithmetic that could leave the range at run time goes through these helpers, which
# answer unknown instead of growing a number without bound.
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1


def _bounded(x: int) -> int | None:
    return x if INT_MIN <= x <= INT_MAX else None


def add(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else _bounded(a + b)


def sub(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else _bounded(a - b)


def mul(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else _bounded(a * b)


def div(a: int | None, b: int | None) -> int | None:
    """Integer division rounding down; unknown when either side is unknown or b is 0."""
    if a is None or b is None or b == 0:
        return None
    return _bounded(a // b)


def fmt(value: object) -> str:
    """How a value reads in a reason or explanation: unknown, true/false, or the number."""
    if value is None:
        return "unknown"
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def fmt_duration(value: int | None) -> str:
    return "unknown" if value is None else format_duration(value)


def decide(
    matched: list[Match],
    unknown: bool,
    override: bool,
    trace: list[RuleTrace] | None,
    *,
    failed: list[str] | None = None,
) -> Decision:
    """Fold the matched rules into one decision (the rules are documented in docs/dsl.md)."""
    action = Action.ALLOW
    risk = 0
    tags: list[str] = []
    for m in matched:
        if m.shadow:
            continue
        if m.action > action:
            action = m.action
        if m.risk_level > risk:
            risk = m.risk_level
        tags.extend(m.tags)
    if override:
        action = Action.ALLOW
    return Decision(
        action,
        risk,
        tuple(dict.fromkeys(tags)) if tags else (),
        tuple(matched),
        unknown,
        tuple(trace) if trace else (),
        tuple(failed) if failed else (),
    )


def phone_starts_with(phone: object, prefix: str) -> bool:
    """``phone.starts_with("+86170")`` or, without the plus, on the digits."""
    e164 = str(getattr(phone, "e164", ""))
    return e164.startswith(prefix if prefix.startswith("+") else "+" + prefix)
