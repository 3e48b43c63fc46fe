"""Reading replay input: one JSON object per line, events or decision-log lines
(docs/replay.md), into :class:`ReplayEvent` values. Pure parsing, no deciding: the parts
of it that run in worker processes (``replay_workers``) import nothing else."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from dsl.facts import NO_IP, EventFacts, IpFacts, PhoneFacts
from dsl.lists import NETWORKS, NUMBERS, ListView, kind_of
from server.bundle.load import TenantBundle
from server.phone import PhoneParseError, PhoneParser

EMPTY: Mapping[str, str] = MappingProxyType({})
CHUNK_LINES = 1_000  # a pickled chunk of events is ~120 KiB


class ReplayInputError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ReplayEvent:
    line: int
    occurred_at: float
    tenant: str
    phone: PhoneFacts
    event: EventFacts
    recorded_lists: Mapping[str, Mapping[str, str]] | None  # decision-log input only
    key: str  # what identifies the event in a diff: request_id or line number
    # Where event.ip was, as a decision-log line recorded it; NO_IP: look it up (or not).
    ip: IpFacts = NO_IP
    label: str | None = None  # the outcome as the line gave it (``label``), None: none given
    request_id: str = ""


class RecordedList:
    """A ListView answering from what a decision-log line recorded for one event: its
    number's entry, or its address's on a list of networks."""

    __slots__ = ("_key", "_labels", "kind")

    def __init__(self, key: str, labels: Mapping[str, str] | None, kind: str = NUMBERS) -> None:
        self._key = key
        self._labels = labels
        self.kind = kind

    def __contains__(self, key: object) -> bool:
        return self._labels is not None and key == self._key

    def labels(self, key: str) -> Mapping[str, str] | None:
        return self._labels if key == self._key else None

    def __len__(self) -> int:
        return 0 if self._labels is None else 1


def lists_for(
    bundle: TenantBundle,
    e164: str,
    recorded: Mapping[str, Mapping[str, str]] | None,
    ip: str = "",
) -> Mapping[str, ListView]:
    """The list views an event is decided with: the tenant's lists, or for a decision-log
    line what the line recorded (the number itself is only a hash there)."""
    if recorded is None:
        return bundle.lists
    out: dict[str, ListView] = {}
    for name, view in bundle.lists.items():
        kind = kind_of(view)
        out[name] = RecordedList(ip if kind == NETWORKS else e164, recorded.get(name), kind)
    return out


# 1970-01-01 to 9999-11-30 (UTC): a calendar-day window reaches a day past its event, in
# any zone, and 9999-12-31 leaves no date after it.
_EARLIEST = 0.0
_LATEST = datetime(9999, 12, 1, tzinfo=UTC).timestamp()
_RANGE = "1970-01-01 to 9999-11-30 UTC"


def _timestamp(value: Any, line: int) -> float:
    at: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        at = float(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            at = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    if at is None:
        raise ReplayInputError(f"line {line}: occurred_at must be RFC 3339 or epoch seconds")
    # NaN (json.loads reads it), infinities and times no calendar holds would fail deep in
    # the windows or the report; one line is refused instead.
    if not _EARLIEST <= at < _LATEST:
        raise ReplayInputError(f"line {line}: occurred_at out of range ({_RANGE})")
    return at


_SCALAR = (str, int, float, bool)


def _object(value: Any, what: str, line: int) -> Mapping[str, Any]:
    """A JSON object field; absent or null is empty."""
    if value is None:
        return EMPTY
    if not isinstance(value, Mapping):
        raise ReplayInputError(f"line {line}: {what} must be an object")
    return value


def _text(obj: Mapping[str, Any], key: str, what: str, line: int, default: str = "") -> str:
    """A text field: a string, or a number or boolean written as one."""
    value = obj.get(key, default)
    if value is None:
        return default
    if not isinstance(value, _SCALAR):
        raise ReplayInputError(f"line {line}: {what} must be a string")
    return str(value)


def _texts(value: Any, what: str, line: int) -> Mapping[str, str]:
    """An object of text values (event attributes, a list's labels)."""
    obj = _object(value, what, line)
    if not obj:
        return EMPTY
    if not all(isinstance(v, _SCALAR) for v in obj.values()):
        raise ReplayInputError(f"line {line}: {what} must map names to strings")
    return MappingProxyType({str(k): str(v) for k, v in obj.items()})


def parse_line(
    obj: Mapping[str, Any], line: int, parser: PhoneParser, default_tenant: str
) -> ReplayEvent:
    """One line's event; ReplayInputError (naming the field) for anything else, whatever
    the JSON holds."""
    ev = _object(obj.get("event"), "event", line)
    stamp = ev.get("occurred_at", obj.get("ts"))
    if stamp is None:
        raise ReplayInputError(f"line {line}: no occurred_at")
    at = _timestamp(stamp, line)
    event = EventFacts(
        scene=_text(ev, "scene", "event.scene", line),
        app_id=_text(ev, "app_id", "event.app_id", line),
        ip=_text(ev, "ip", "event.ip", line),
        device_id=_text(ev, "device_id", "event.device_id", line),
        occurred_at=at,
        attributes=_texts(ev.get("attributes"), "event.attributes", line),
    )
    tenant = _text(obj, "tenant", "tenant", line) or default_tenant
    if obj.get("v") == 1 and "phone" in obj:  # a decision-log line
        p = _object(obj["phone"], "phone", line)
        code = p.get("country_code", 0)
        if not isinstance(code, int) or isinstance(code, bool) or not 0 <= code <= 999:
            raise ReplayInputError(f"line {line}: phone.country_code must be a number 0-999")
        phone = PhoneFacts(
            e164=_text(p, "hash", "phone.hash", line),
            valid=p.get("valid") is True,
            region=_text(p, "region", "phone.region", line),
            number_type=_text(p, "number_type", "phone.number_type", line, "unknown"),
            carrier=_text(p, "carrier", "phone.carrier", line),
            segment_kind=_text(p, "segment_kind", "phone.segment_kind", line),
            segment_prefix=_text(p, "segment_prefix", "phone.segment_prefix", line),
            country_code=code,
            national_number="",
            province=_text(p, "province", "phone.province", line),
            province_name=_text(p, "province_name", "phone.province_name", line),
            city=_text(p, "city", "phone.city", line),
            city_name=_text(p, "city_name", "phone.city_name", line),
        )
        recorded = {
            str(name): dict(_texts(labels, "lists", line))
            for name, labels in _object(obj.get("lists"), "lists", line).items()
            if labels is not None  # null: not on that list
        }
        rid = _text(obj, "request_id", "request_id", line)
        ip = _recorded_ip(obj, line)
        return ReplayEvent(
            line,
            at,
            tenant,
            phone,
            event,
            recorded,
            rid or f"line {line}",
            ip,
            label=_label(obj, line),
            request_id=rid,
        )
    raw = obj.get("phone_number")
    if not isinstance(raw, str):
        raise ReplayInputError(f"line {line}: phone_number must be a string")
    try:
        phone = parser.parse(raw, _text(obj, "default_region", "default_region", line))
    except PhoneParseError as exc:
        raise ReplayInputError(f"line {line}: phone_number: {exc.reason}") from None
    rid = _text(obj, "request_id", "request_id", line)
    return ReplayEvent(
        line,
        at,
        tenant,
        phone,
        event,
        None,
        rid or f"line {line}",
        label=_label(obj, line),
        request_id=rid,
    )


def _label(obj: Mapping[str, Any], line: int) -> str | None:
    """The line's outcome label (``"label": "fraud"``), as text; None when it has none."""
    value = obj.get("label")
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, _SCALAR):
        raise ReplayInputError(f"line {line}: label must be a string, a number or a bool")
    text = str(value).strip()
    return text or None


def _recorded_ip(obj: Mapping[str, Any], line: int) -> IpFacts:
    """The IP facts a decision-log line recorded (as the databases said then); NO_IP when
    the decision read none."""
    ip = _object(obj.get("ip"), "ip", line)
    if not ip:
        return NO_IP
    numbers: list[int] = []
    for key, top in (("version", 6), ("asn", 2**32 - 1)):
        value = ip.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
            raise ReplayInputError(f"line {line}: ip.{key} must be a number 0-{top}")
        numbers.append(value)

    def text(key: str) -> str:
        return _text(ip, key, f"ip.{key}", line)

    return IpFacts(
        version=numbers[0],
        country=text("country"),
        province=text("province"),
        province_name=text("province_name"),
        city=text("city"),
        city_name=text("city_name"),
        asn=numbers[1],
        org=text("org"),
    )


def parse_lines(
    path: Path, first: int, lines: list[str], parser: PhoneParser, default_tenant: str
) -> tuple[list[ReplayEvent], list[str]]:
    out: list[ReplayEvent] = []
    errors: list[str] = []
    for n, text in enumerate(lines, first):
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        try:
            obj = json.loads(text)
            if not isinstance(obj, dict):
                raise ReplayInputError(f"line {n}: not a JSON object")
            if obj.get("replayed") is True:
                continue  # a retry answered from its first attempt: not a new event
            out.append(parse_line(obj, n, parser, default_tenant))
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, ReplayInputError
            # json.loads recurses once per level: a line nested thousands deep raises
            # RecursionError, which is that line's problem alone.
            msg = (
                str(exc)
                if isinstance(exc, ReplayInputError)
                else f"line {n}: nested too deeply"
                if isinstance(exc, RecursionError)
                else f"line {n}: {exc}"
            )
            errors.append(
                f"{path}:{msg.removeprefix('line ')}"
                if msg.startswith("line ")
                else f"{path}: {msg}"
            )
    return out, errors


@dataclass(frozen=True, slots=True)
class BadLine:
    line: int  # 0 when the problem is the file's, not a line's
    reason: str


class TooManyBadLines(Exception):
    """More bad lines than ``--max-bad-lines`` allows: the replay stops."""

    def __init__(self, limit: int, first_over: BadLine) -> None:
        super().__init__(f"more than {limit} bad line(s); the next was line {first_over.line}")
        self.limit = limit
        self.first_over = first_over


class BadLines(list[str]):
    """The messages of the lines a replay skips (``path:line: reason``, as
    :func:`parse_lines` writes them), handed over chunk by chunk; past ``limit`` it raises
    TooManyBadLines, which ends the replay."""

    def __init__(self, path: Path, limit: int | None = None) -> None:
        super().__init__()
        self.path = str(path)
        self.limit = limit

    def append(self, message: str) -> None:
        self.extend([message])

    def extend(self, messages: Iterable[str]) -> None:
        super().extend(messages)
        if self.limit is not None and len(self) > self.limit:
            raise TooManyBadLines(self.limit, self.parsed(self[self.limit]))

    def __iadd__(self, messages: Iterable[str]) -> BadLines:  # type: ignore[override,misc]
        self.extend(messages)
        return self

    def parsed(self, message: str) -> BadLine:
        rest = message.removeprefix(f"{self.path}:")
        number, sep, reason = rest.partition(": ")
        if sep and number.isdigit():
            return BadLine(int(number), reason)
        return BadLine(0, rest.strip())

    def lines(self, limit: int | None = None) -> list[BadLine]:
        return [self.parsed(m) for m in self[:limit]]


def chunks(path: Path, size: int = CHUNK_LINES) -> Iterator[tuple[int, list[str]]]:
    with path.open(encoding="utf-8") as f:
        first = 1
        while True:
            lines = [line for _, line in zip(range(size), f, strict=False)]
            if not lines:
                return
            yield first, lines
            first += len(lines)


def first_tenant(path: Path, default_tenant: str = "") -> str:
    """The tenant of the first line that names one (or ``default_tenant``): which tenant a
    replay without ``--tenant`` is about."""
    if default_tenant:
        return default_tenant
    with path.open(encoding="utf-8") as f:
        for text in f:
            try:
                obj = json.loads(text)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get("tenant"):
                return str(obj["tenant"])
    return ""
