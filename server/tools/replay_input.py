"""Reading replay input: one JSON object per line, events or decision-log lines
(docs/replay.md), into :class:`ReplayEvent` values. Pure parsing, no deciding: the parts
of it that run in worker processes (``replay_workers``) import nothing else."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
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


_EARLIEST, _LATEST = 0.0, 253402214400.0  # 1970-01-01 and 9999-12-31 (UTC): room for any zone


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
    if not _EARLIEST <= at <= _LATEST:
        raise ReplayInputError(f"line {line}: occurred_at out of range (1970 to 9999)")
    return at


def parse_line(
    obj: Mapping[str, Any], line: int, parser: PhoneParser, default_tenant: str
) -> ReplayEvent:
    ev = obj.get("event") or {}
    if not isinstance(ev, Mapping):
        raise ReplayInputError(f"line {line}: event must be an object")
    attrs = ev.get("attributes") or {}
    stamp = ev.get("occurred_at", obj.get("ts"))
    if stamp is None:
        raise ReplayInputError(f"line {line}: no occurred_at")
    at = _timestamp(stamp, line)
    event = EventFacts(
        scene=str(ev.get("scene", "")),
        app_id=str(ev.get("app_id", "")),
        ip=str(ev.get("ip", "")),
        device_id=str(ev.get("device_id", "")),
        occurred_at=at,
        attributes=MappingProxyType({str(k): str(v) for k, v in attrs.items()}) if attrs else EMPTY,
    )
    tenant = str(obj.get("tenant") or default_tenant)
    if obj.get("v") == 1 and "phone" in obj:  # a decision-log line
        p = obj["phone"]
        phone = PhoneFacts(
            e164=str(p.get("hash", "")),
            valid=bool(p.get("valid")),
            region=str(p.get("region", "")),
            number_type=str(p.get("number_type", "unknown")),
            carrier=str(p.get("carrier", "")),
            segment_kind=str(p.get("segment_kind", "")),
            segment_prefix=str(p.get("segment_prefix", "")),
            country_code=int(p.get("country_code", 0)),
            national_number="",
            province=str(p.get("province", "")),
            province_name=str(p.get("province_name", "")),
            city=str(p.get("city", "")),
            city_name=str(p.get("city_name", "")),
        )
        recorded = {str(k): dict(v) for k, v in (obj.get("lists") or {}).items()}
        key = str(obj.get("request_id") or f"line {line}")
        return ReplayEvent(line, at, tenant, phone, event, recorded, key, _recorded_ip(obj))
    raw = obj.get("phone_number")
    if not isinstance(raw, str):
        raise ReplayInputError(f"line {line}: phone_number must be a string")
    try:
        phone = parser.parse(raw, str(obj.get("default_region", "")))
    except PhoneParseError as exc:
        raise ReplayInputError(f"line {line}: phone_number: {exc.reason}") from None
    key = str(obj.get("request_id") or f"line {line}")
    return ReplayEvent(line, at, tenant, phone, event, None, key)


def _recorded_ip(obj: Mapping[str, Any]) -> IpFacts:
    """The IP facts a decision-log line recorded (as the databases said then)."""
    ip = obj.get("ip")
    if not isinstance(ip, Mapping):
        return NO_IP
    return IpFacts(
        version=int(ip.get("version", 0) or 0),
        country=str(ip.get("country", "")),
        province=str(ip.get("province", "")),
        province_name=str(ip.get("province_name", "")),
        city=str(ip.get("city", "")),
        city_name=str(ip.get("city_name", "")),
        asn=int(ip.get("asn", 0) or 0),
        org=str(ip.get("org", "")),
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
        except ValueError as exc:  # JSONDecodeError and ReplayInputError
            msg = str(exc) if isinstance(exc, ReplayInputError) else f"line {n}: {exc}"
            errors.append(
                f"{path}:{msg.removeprefix('line ')}"
                if msg.startswith("line ")
                else f"{path}: {msg}"
            )
    return out, errors


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
