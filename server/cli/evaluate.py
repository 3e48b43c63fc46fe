"""``ringfence eval``: decide one number offline and explain why.

The event time is ``--at`` (RFC 3339 / ISO 8601; without an offset it is a wall-clock time
in the policy's time zone) or now. ``--fact phone.NAME=VALUE`` overrides a parsed phone
fact (``ip.NAME=VALUE`` an IP fact), typed as the policy reads it. ``--ip-db`` (or
``RINGFENCE_IP_DB``) says where ``--ip`` is, as the server's databases would. Aggregates
not given with ``--agg`` are ASSUMED, and shown as such: by default the event is taken as
the first in every window (1 where it feeds the aggregate, 0 where it does not);
``--assume unknown`` makes them unknown instead.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from server.cli.common import open_ip_databases, registry

if TYPE_CHECKING:
    from dsl.aggregates import RefLike
    from dsl.facts import PhoneFacts

# Aggregate values are counts: whole numbers from 0 to the policy language's int64 maximum.
_AGG_VALUE = re.compile(r"[0-9]{1,19}")
_INT64_MAX = 2**63 - 1


def parse_aggs(
    items: list[str],
    known: Sequence[str],
    tenant: str,
    decimals: frozenset[str] = frozenset(),
    signed: frozenset[str] = frozenset(),
) -> dict[str, int | None]:
    """``--agg NAME=VALUE`` options: VALUE is a count, a decimal for a decimal aggregate
    (``avg``, a ``sum`` of event.number()), or ``unknown``; NAME must be one of the
    policy's aggregates. Raises ValueError with a message for people."""
    from dsl.aggregates import given_value

    out: dict[str, int | None] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name, text = name.strip(), text.strip()
        if not sep or not name:
            raise ValueError(f"--agg {item!r}: expected NAME=VALUE")
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            listed = ", ".join(known) or "none"
            raise ValueError(
                f"--agg {name}: tenant {tenant!r} has no aggregate {name!r}{hint} "
                f"(aggregates: {listed})"
            )
        if text in ("unknown", ""):
            out[name] = None
        elif name in decimals or name in signed:
            try:
                out[name] = given_value(text, decimal=name in decimals, signed=name in signed)
            except ValueError as exc:
                raise ValueError(f"--agg {name}={text}: {exc}") from None
        elif _AGG_VALUE.fullmatch(text) and int(text) <= _INT64_MAX:
            out[name] = int(text)
        elif name.startswith("age(") and (seconds := _duration(text)) is not None:
            out[name] = seconds
        elif name.startswith("age("):
            raise ValueError(
                f"--agg {name}={text}: {name} is a time in seconds: give 600 or a duration"
                " such as 10m, 2h or 3d, or 'unknown'"
            )
        else:
            raise ValueError(
                f"--agg {name}={text}: a value is a whole number from 0 to {_INT64_MAX}, "
                "or 'unknown'"
            )
    return out


def _duration(text: str) -> int | None:
    from dsl.durations import DurationError, parse_duration

    try:
        return parse_duration(text)
    except DurationError:
        return None


ASSUME_FIRST = "first"
ASSUME_UNKNOWN = "unknown"
_EVENT_FLAGS = "--scene, --app-id, --ip, --device-id, --attr and --at"


class _BadFlag(Exception):
    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}")


def run_eval(ns: argparse.Namespace) -> int:
    import time

    from dsl.event_time import parse_time
    from dsl.facts import EventFacts, Facts
    from dsl.pipeline import decide_now
    from dsl.testing import explain_text
    from server.phone import PhoneParseError
    from server.state import MemoryBackend

    reg = registry(Path(ns.rules))
    outcome = reg.load_sync([ns.tenant])[0]
    if not outcome.ok:
        print(outcome.error, file=sys.stderr)
        return 1
    bundle = reg.get(ns.tenant)
    assert bundle is not None
    policy = bundle.policy
    try:
        phone = reg.parser.parse(ns.phone, ns.region or bundle.config.default_region)
    except PhoneParseError as exc:
        print(f"ringfence eval: --phone: {exc.reason}", file=sys.stderr)
        return 2
    attrs: dict[str, str] = {}
    for kv in ns.attr:
        key, sep, value = kv.partition("=")
        if not sep or not key:
            print(f"ringfence eval: --attr {kv!r}: expected KEY=VALUE", file=sys.stderr)
            return 2
        attrs[key] = value
    try:
        given = parse_aggs(
            ns.agg, policy.aggregate_ids, ns.tenant, policy.decimal_ids, policy.signed_ids
        )
    except ValueError as exc:
        print(f"ringfence eval: {exc}", file=sys.stderr)
        return 2
    locator = open_ip_databases(ns.ip_db, "eval")
    if locator is None:
        return 2
    try:
        phone, ip_changes = _with_facts(phone, ns.fact)
        ip = replace(locator.facts(ns.ip), **ip_changes)  # type: ignore[arg-type]
        at = time.time()
        if ns.at is not None:
            try:
                at = parse_time(ns.at, policy.timezone)
            except ValueError as exc:
                raise _BadFlag(f"--at {ns.at}", str(exc)) from None
    except _BadFlag as exc:
        print(f"ringfence eval: {exc}", file=sys.stderr)
        return 2
    event = EventFacts(
        scene=ns.scene,
        app_id=ns.app_id,
        ip=ns.ip,
        device_id=ns.device_id,
        occurred_at=at,
        attributes=attrs,
    )
    facts = Facts(tenant=ns.tenant, phone=phone, event=event, ip=ip)
    decided = decide_now(
        policy,
        bundle.lists,
        facts,
        # docs/state.md §7: an assumed value is what the event reads as the first the state
        # has seen, so eval computes it on an empty state, as rule tests do.
        MemoryBackend(hash_key=b"eval") if ns.assume == ASSUME_FIRST else _Unknown(),
        record=False,
        given=given,
        explain=True,
    )
    refs, values, decision = decided.refs, dict(decided.values), decided.decision
    print(f"policy {ns.tenant} version {bundle.version}")
    print(_time_line(at, policy.timezone, ns.at is not None))
    print(
        f"phone  {phone.e164 if ns.show_number else '(hidden)'} valid={phone.valid} "
        f"region={phone.region} type={phone.number_type} carrier={phone.carrier!r} "
        f"segment={phone.segment_kind or '-'} home={phone.province or '-'}/{phone.city or '-'}"
    )
    if policy.reads_ip or ns.ip:
        where = "--ip-db" if locator.configured else "no --ip-db: location unknown"
        print(
            f"ip     {ns.ip or '(none)'} version={ip.version} country={ip.country or '-'} "
            f"province={ip.province or '-'} city={ip.city or '-'} asn={ip.asn or '-'} "
            f"org={ip.org or '-'}  [{where}]"
        )
    for kv in ns.fact:
        print(f"fact   {kv.strip()}  (set with --fact)")
    print(_aggregate_lines(refs, values, given, at, ns.assume))
    print(explain_text(decision))
    return 0


class _Unknown:
    """A state that knows nothing: ``--assume unknown``."""

    def apply_now(
        self,
        tenant: str,
        refs: Sequence[RefLike],
        now: float,
        *,
        record: bool,
        received: float | None = None,
    ) -> dict[str, int | None]:
        return {}


def _with_facts(phone: PhoneFacts, settings: list[str]) -> tuple[PhoneFacts, dict[str, object]]:
    """The phone facts with each ``--fact phone.NAME=VALUE`` applied, type-checked, and
    the ``--fact ip.NAME=VALUE`` changes to the IP facts."""
    from dsl.schema import EVENT_FIELDS
    from dsl.suggest import closest
    from dsl.testing import PHONE_OVERRIDES, phone_fact_value

    changes: dict[str, object] = {}
    ip_changes: dict[str, object] = {}
    for kv in settings:
        flag = f"--fact {kv}"
        name, eq, text = kv.partition("=")
        name = name.strip()
        if not eq:
            raise _BadFlag(flag, "expected NAME=VALUE, such as phone.segment_kind=mvno")
        obj, dot, field = name.partition(".")
        if obj == "event" and dot:
            what = "--at" if field in ("occurred_at", "local_hour", "local_weekday") else None
            hint = f"set it with {what}" if what else f"event facts come from {_EVENT_FLAGS}"
            known = "" if field in EVENT_FIELDS else f" (no event.{field} either)"
            raise _BadFlag(flag, f"only phone and ip facts can be set here: {hint}{known}")
        if obj == "ip" and dot:
            try:
                ip_changes[field] = phone_fact_value(field, text, "ip")
            except ValueError as exc:
                raise _BadFlag(flag, str(exc)) from None
            continue
        if obj != "phone" or not dot:
            guess = closest(name, PHONE_OVERRIDES)
            suggestion = f"; did you mean 'phone.{guess}'?" if guess else ""
            raise _BadFlag(flag, f"unknown fact '{name}': write phone.NAME or ip.NAME{suggestion}")
        try:
            changes[field] = phone_fact_value(field, text)
        except ValueError as exc:
            raise _BadFlag(flag, str(exc)) from None
    return replace(phone, **changes), ip_changes  # type: ignore[arg-type]


def _time_line(at: float, timezone: str, given: bool) -> str:
    from dsl.event_time import describe
    from dsl.runtime import local_time

    # local_time reads times past the calendar's end (9999-12-31 ends early east of UTC)
    # as its last day, the way the compiled policy sees them.
    hour, weekday = local_time(at, timezone)
    source = "--at" if given else "now; set it with --at"
    return (
        f"time   {describe(at, timezone)}  local_hour {hour}, "
        f"local_weekday {weekday} ({_WEEKDAYS[weekday - 1]})  [{source}]"
    )


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _window(ref: RefLike, at: float) -> str:
    """The window an aggregate reads at ``at``, as people say it."""
    from datetime import datetime

    from dsl.aggregates import AggKind
    from dsl.durations import format_duration
    from dsl.zones import zone
    from server.state.windows import bucket_width

    w = ref.spec.window
    if ref.spec.kind is AggKind.FIRST_SEEN:
        return "since the server first saw the key (receipt clock)"
    if w.calendar_day:
        back = f", {format_duration(w.offset_s)} back" if w.offset_s else ""
        try:
            day = datetime.fromtimestamp(at - w.offset_s, zone(w.timezone)).date().isoformat()
        except (OverflowError, ValueError, OSError):
            day = "past the calendar's end"
        return f"the day {day} ({w.timezone}){back}"
    end = f"ending {format_duration(w.offset_s)} before the event" if w.offset_s else "to the event"
    # The old edge in an analyst's terms (docs/state.md §4): a straddling bucket is read whole.
    reach = f"{format_duration(w.size_s)} to {format_duration(w.size_s + bucket_width(w.size_s))}"
    return f"{format_duration(w.size_s)} {end} (reaches back {reach})"


def _aggregate_lines(
    refs: Sequence[RefLike],
    values: dict[str, int | None],
    given: dict[str, int | None],
    at: float,
    assume: str,
) -> str:
    from dsl.aggregates import AggKind, is_decimal
    from dsl.durations import format_duration
    from dsl.runtime import fmt_decimal

    if not refs:
        return "aggregates: none"
    if assume == ASSUME_FIRST:
        rule = (
            "ASSUMED: the event is the first the state has seen "
            "(1 where it feeds the aggregate and lands in the window, else 0; age() 0s)"
        )
    else:
        rule = "ASSUMED: unknown (as if the state backend could not answer)"
    lines = [f"aggregates (given with --agg, or {rule}):"]
    width = max(len(r.spec.id) for r in refs)
    for ref in refs:
        value = values.get(ref.spec.id)
        shown = "unknown" if value is None else str(value)
        if value is not None and ref.spec.kind is AggKind.FIRST_SEEN:
            shown = format_duration(value)
        elif is_decimal(ref.spec):
            shown = fmt_decimal(value)
        if ref.spec.id in given:
            how = "given"
        elif assume == ASSUME_FIRST and ref.feeds and value == 0:
            how = "ASSUMED: the first event, which lands outside this window"
        elif assume == ASSUME_FIRST and ref.feeds:
            how = "ASSUMED: this event is the first"
        elif assume == ASSUME_FIRST:
            how = "ASSUMED: the first event, which does not feed it"
        else:
            how = "ASSUMED unknown"
        lines.append(f"  {ref.spec.id:<{width}} = {shown:<7} {how}; window: {_window(ref, at)}")
    return "\n".join(lines)
