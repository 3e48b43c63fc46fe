"""Helpers the generated policy code calls. Small, pure and fast: they run per request."""

from __future__ import annotations

import gc
import re
import threading
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from time import thread_time
from zoneinfo import ZoneInfo

from dsl.aggregates import VALUE_LIMIT
from dsl.decision import Action, Decision, Match, RuleTrace
from dsl.durations import format_duration
from dsl.facts import PhoneFacts
from dsl.lists import NETWORKS, NUMBERS
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


class _Pending:
    """The value of a memoised local (a named condition, a matches() call) before it is
    computed: None already means unknown."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PENDING"


PENDING = _Pending()


class EvaluationDeadline(Exception):
    """An evaluation ran past its deadline. Raised between rules, outside their ``try``
    blocks, so it ends the evaluation rather than one rule."""


class _Collections(threading.local):
    started = 0.0
    spent = 0.0


_collections = _Collections()


def _collection(phase: str, info: object) -> None:
    # A collection runs in the thread whose allocation triggered it, and walks every
    # object the process holds: with a large state it takes tens of milliseconds, which
    # is the process's housekeeping, not the policy's cost.
    if phase == "start":
        _collections.started = thread_time()
    else:
        _collections.spent += thread_time() - _collections.started


gc.callbacks.append(_collection)


def work_time() -> float:
    """The clock deadlines are kept on: CPU seconds of the calling thread, less the time
    its garbage collections took. CPU, not wall time: a machine busy with other processes
    must not make a cheap evaluation miss its deadline, nor must a collection that
    happened to start during it."""
    return thread_time() - _collections.spent


def past(deadline: float) -> None:
    """Raise :class:`EvaluationDeadline` when ``deadline`` (:func:`work_time` seconds, 0
    for none) has passed."""
    if deadline and work_time() > deadline:
        raise EvaluationDeadline


def masked(phone: PhoneFacts) -> str:
    """``{phone.masked}``: the masking the server's logs use (:mod:`dsl.masking`)."""
    return mask_e164(phone.e164, phone.country_code)


def join_key(*parts: str) -> str:
    """The key of ``per (a, b)``: ``"3:abc2:xy"``, unambiguous whatever the parts hold."""
    return "".join(f"{len(p)}:{p}" for p in parts)


def subject(view: object, e164: str, ip: str) -> str:
    """What a list is looked up with for one event: the number, or for a list of
    networks the event's IP address."""
    return ip if getattr(view, "kind", NUMBERS) == NETWORKS else e164


def label(view: object, e164: str, ip: str, key: str) -> str:
    """``LIST.label("key")``: that label of this event's entry (the number's, or the
    address's on a network list); ``""`` when it has none."""
    labels = view.labels(subject(view, e164, ip)) if hasattr(view, "labels") else None
    if not labels:
        return ""
    return str(labels.get(key, ""))


def listed(view: object, e164: str, ip: str) -> bool:
    """Whether this event is on a list (what feeds ``per list NAME``)."""
    return subject(view, e164, ip) in view  # type: ignore[operator]


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


# The last moment with a local date in every zone (UTC+14 runs past 9999-12-31 earlier).
LAST_LOCAL = 253_402_300_799 - 14 * 3600


def local_time(ts: float, tz: str) -> tuple[int, int]:
    """(hour 0..23, ISO weekday 1..7) of ``ts`` in time zone ``tz``; times past the
    calendar's end read as its last day (the server never passes them: it clamps future
    event times to now, but a tool may)."""
    dt = datetime.fromtimestamp(min(max(ts, 0.0), LAST_LOCAL), _zone(tz))
    return dt.hour, dt.isoweekday()


# Integers in policies are 64-bit: literals and folding are checked at compile time, and
# arithmetic that could leave the range at run time goes through these helpers, which
# answer unknown instead of growing a number without bound.
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
DECIMAL_SCALE = 1_000_000  # decimals are ints counting millionths (dsl.ir.Type.DEC)


def _bounded(x: int) -> int | None:
    return x if INT_MIN <= x <= INT_MAX else None


def add(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else _bounded(a + b)


def sub(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else _bounded(a - b)


def mul(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else _bounded(a * b)


def dmul(a: int | None, b: int | None) -> int | None:
    """Two decimals (millionths) multiplied, rounded toward minus infinity."""
    return None if a is None or b is None else _bounded(a * b // DECIMAL_SCALE)


def ddiv(a: int | None, b: int | None) -> int | None:
    """A decimal divided by a decimal, rounded toward minus infinity; unknown by 0."""
    if a is None or b is None or b == 0:
        return None
    return _bounded(a * DECIMAL_SCALE // b)


def div(a: int | None, b: int | None) -> int | None:
    """Integer division rounding down; unknown when either side is unknown or b is 0."""
    if a is None or b is None or b == 0:
        return None
    return _bounded(a // b)


# What event.number() accepts (docs/dsl.md, "Numbers in attributes"): an optional minus,
# ASCII digits, and an optional point followed by digits; nothing else (no spaces, no "+",
# no exponent, no "NaN" or "inf"), at most NUMBER_CHARS characters.
_NUMBER = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")
NUMBER_CHARS = 40
# A number's magnitude stays below 10**9 (in millionths, below VALUE_LIMIT): a larger one
# is unknown, so every number a request sends can feed a sum.
NUMBER_LIMIT = 10**9 * DECIMAL_SCALE


def number(attributes: Mapping[str, str], key: str) -> int | None:
    """``event.number(key)``: the attribute as a decimal (millionths), or None (unknown)
    when it is absent, not a number, or of magnitude 10**9 or more. A fraction longer than
    six places is rounded to the nearest millionth, a tie to the even one."""
    text = attributes.get(key)
    if not text or len(text) > NUMBER_CHARS:
        return None
    m = _NUMBER.fullmatch(text)
    if m is None:
        return None
    sign, whole, frac = m.groups()
    value = int(whole) * DECIMAL_SCALE
    if frac is not None:
        kept, rest = frac[:6], frac[6:]
        value += int(kept.ljust(6, "0"))
        if rest:
            first, tail = rest[0], rest[1:].strip("0")
            if first > "5" or (first == "5" and (tail or value % 2)):
                value += 1
    if value >= NUMBER_LIMIT:
        return None
    return -value if sign else value


def amount(value: int | None) -> str:
    """What an event adds to a sum/avg/min/max: its value as text, or "" (it does not
    feed) when the value is unknown or its magnitude reaches VALUE_LIMIT."""
    if value is None or not -VALUE_LIMIT < value < VALUE_LIMIT:
        return ""
    return str(value)


def fmt(value: object) -> str:
    """How a value reads in a reason or explanation: unknown, true/false, or the number."""
    if value is None:
        return "unknown"
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def detail(
    values: Mapping[str, int | None],
    reads: tuple[str, ...],
    value: bool | None,
    on_error: str,
    conditions: tuple[tuple[str, bool | None], ...] = (),
    decimals: tuple[str, ...] = (),
) -> str:
    """An explanation line's detail: ``hits=5, age(per number)=10m, busy=true``, and, when
    the condition was unknown, which on_error decided (``on_error`` is "" when it cannot be)."""
    parts = [
        f"{i}={fmt_duration(values.get(i)) if i.startswith('age(') else fmt(values.get(i))}"
        if i not in decimals
        else f"{i}={fmt_decimal(values.get(i))}"
        for i in reads
    ]
    parts += [f"{name}={fmt(v)}" for name, v in conditions]
    text = ", ".join(parts)
    if value is None and on_error:
        text += f"; condition unknown: on_error {on_error}"
    return text


def unknown_reason(why: str, values: Mapping[str, int | None], reads: tuple[str, ...]) -> str:
    """The reason of a rule whose condition was unknown and that fired by its on_error:
    what was unknown, never the author's reason (it would quote values nobody knows)."""
    if not why:
        missing = [i for i in reads if values.get(i) is None]
        why = (", ".join(missing) + " unknown") if missing else "condition unknown"
    return f"fired on error: {why}"


def fmt_decimal(value: int | None) -> str:
    """Millionths as a decimal: 250000 -> ``0.25``, 3000000 -> ``3``."""
    if value is None:
        return "unknown"
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), DECIMAL_SCALE)
    digits = f"{frac:06d}".rstrip("0")
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


def fmt_duration(value: int | None) -> str:
    return "unknown" if value is None else format_duration(value)


def decide(
    matched: list[Match],
    unknown: bool,
    override: bool,
    trace: list[RuleTrace] | None,
    *,
    failed: list[str] | None = None,
    default: Action = Action.ALLOW,
    review_score: int = 0,
    block_score: int = 0,
) -> Decision:
    """Fold the matched rules into one decision. The order, as docs/dsl.md states it:

    1. shadow rules never count;
    2. a live ``then allow override`` makes the decision allow;
    3. otherwise the live rules with an action, and the score threshold reached (as if a
       rule of priority 0), compete: the highest priority wins, and among equal
       priorities the most severe action;
    4. if nothing competes, the policy's default action.
    Risk is the highest risk of the live matches; tags are theirs, in rule order.
    """
    trace_t = tuple(trace) if trace else ()
    failed_t = tuple(failed) if failed else ()
    if not matched:
        return Decision(default, 0, (), (), unknown, trace_t, failed_t, 0, "default action")
    risk = 0
    score = 0
    tags: list[str] = []
    best: Match | None = None
    for m in matched:
        if m.shadow:
            continue
        if m.risk_level > risk:
            risk = m.risk_level
        score += m.score
        tags.extend(m.tags)
        if m.action and (
            best is None
            or m.priority > best.priority
            or (m.priority == best.priority and m.action > best.action)
        ):
            best = m
    threshold = Action.UNSPECIFIED
    if block_score and score >= block_score:
        threshold = Action.BLOCK
    elif review_score and score >= review_score:
        threshold = Action.REVIEW
    if override:
        action, why = Action.ALLOW, "an allow override"
    elif threshold and (
        best is None or best.priority < 0 or (best.priority == 0 and threshold > best.action)
    ):
        limit = block_score if threshold is Action.BLOCK else review_score
        action, why = threshold, f"score {score} reached {limit}"
    elif best is not None:
        action = best.action
        why = f"rule {best.rule}" + (f" (priority {best.priority})" if best.priority else "")
    else:
        action, why = default, "default action"
    return Decision(
        action,
        risk,
        tuple(dict.fromkeys(tags)) if tags else (),
        tuple(matched),
        unknown,
        trace_t,
        failed_t,
        score,
        why,
    )
