"""Replay and backtest: feed recorded events through a policy with a fresh memory state.

Two input formats, one JSON object per line (both documented in docs/replay.md):

* **events** — what a caller sends: ``{"tenant", "phone_number", "default_region",
  "event": {"scene", "app_id", "ip", "device_id", "occurred_at", "attributes"}}`` with
  ``occurred_at`` as RFC 3339 or epoch seconds. Full fidelity: numbers are parsed, lists
  looked up, runs of consecutive numbers counted.
* **decision log** — lines the server wrote (``"v": 1``). The number is only a hash there,
  so phone facts come from the line, list memberships from its ``lists`` field, and runs
  of consecutive numbers cannot be rebuilt (those aggregates replay as 0 ... documented).

Events are replayed in event-time order. ``--against`` runs a second policy over the same
events with its own state and reports the decisions that differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from dsl.decision import Decision
from dsl.facts import EventFacts, Facts, PhoneFacts
from dsl.lists import ListView
from server.bundle.load import TenantBundle
from server.phone import PhoneParseError, PhoneParser
from server.state import MemoryBackend
from server.tools.summary import SAMPLES, Diff, Summary

__all__ = ["Diff", "ReplayEvent", "ReplayInputError", "Replayer", "Summary", "read_events"]

_EMPTY: Mapping[str, str] = MappingProxyType({})
PROGRESS_EVERY = 1000
_EARLIEST, _LATEST = 0.0, 253402214400.0  # 1970-01-01 and 9999-12-31 (UTC): room for any zone


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


class _RecordedList:
    """A ListView answering from what a decision-log line recorded for one number."""

    __slots__ = ("_e164", "_labels")

    def __init__(self, e164: str, labels: Mapping[str, str] | None) -> None:
        self._e164 = e164
        self._labels = labels

    def __contains__(self, e164: object) -> bool:
        return self._labels is not None and e164 == self._e164

    def labels(self, e164: str) -> Mapping[str, str] | None:
        return self._labels if e164 == self._e164 else None

    def __len__(self) -> int:
        return 0 if self._labels is None else 1


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
        attributes=MappingProxyType({str(k): str(v) for k, v in attrs.items()})
        if attrs
        else _EMPTY,
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
        )
        recorded = {str(k): dict(v) for k, v in (obj.get("lists") or {}).items()}
        key = str(obj.get("request_id") or f"line {line}")
        return ReplayEvent(line, at, tenant, phone, event, recorded, key)
    raw = obj.get("phone_number")
    if not isinstance(raw, str):
        raise ReplayInputError(f"line {line}: phone_number must be a string")
    try:
        phone = parser.parse(raw, str(obj.get("default_region", "")))
    except PhoneParseError as exc:
        raise ReplayInputError(f"line {line}: phone_number: {exc.reason}") from None
    key = str(obj.get("request_id") or f"line {line}")
    return ReplayEvent(line, at, tenant, phone, event, None, key)


def read_events(
    path: Path, parser: PhoneParser, default_tenant: str, errors: list[str]
) -> list[ReplayEvent]:
    out: list[ReplayEvent] = []
    with path.open(encoding="utf-8") as f:
        for n, text in enumerate(f, 1):
            text = text.strip()
            if not text or text.startswith("#"):
                continue
            try:
                obj = json.loads(text)
                if not isinstance(obj, dict):
                    raise ReplayInputError(f"line {n}: not a JSON object")
                out.append(parse_line(obj, n, parser, default_tenant))
            except ValueError as exc:  # JSONDecodeError and ReplayInputError
                msg = str(exc) if isinstance(exc, ReplayInputError) else f"line {n}: {exc}"
                errors.append(
                    f"{path}:{msg.removeprefix('line ')}"
                    if msg.startswith("line ")
                    else f"{path}: {msg}"
                )
    out.sort(key=lambda e: (e.occurred_at, e.line))
    return out


class Replayer:
    """One policy, one fresh memory state."""

    def __init__(self, bundle: TenantBundle, hash_key: bytes = b"replay") -> None:
        self.bundle = bundle
        self.backend = MemoryBackend(hash_key=hash_key, max_keys=5_000_000)
        self.summary = Summary.for_policy(bundle.policy)

    async def decide(self, ev: ReplayEvent) -> Decision:
        b = self.bundle
        lists: Mapping[str, ListView] = b.lists
        if ev.recorded_lists is not None:
            lists = {
                name: _RecordedList(ev.phone.e164, ev.recorded_lists.get(name)) for name in b.lists
            }
        facts = Facts(tenant=b.name, phone=ev.phone, event=ev.event)
        refs = b.policy.plan(facts, lists)
        values = await self.backend.apply(b.name, refs, ev.occurred_at, record=True) if refs else {}
        decision = b.policy.evaluate(facts, values, lists)
        self.summary.add(ev, decision)
        return decision


async def replay(
    events: Iterable[ReplayEvent],
    base: TenantBundle,
    other: TenantBundle | None = None,
    *,
    samples: int = SAMPLES,
    progress: Callable[[int], object] | None = None,
) -> tuple[Summary, Summary | None, Diff]:
    """Decide every event under ``base`` (and ``other``); ``progress(n)`` is told every
    :data:`PROGRESS_EVERY` events, and once more with the rest at the end."""
    a = Replayer(base)
    b = Replayer(other) if other is not None else None
    diff = Diff(sample_limit=samples)
    t0 = time.perf_counter()
    done = 0
    for done, ev in enumerate(events, 1):
        da = await a.decide(ev)
        if b is not None:
            diff.add(ev, da, await b.decide(ev))
        if progress is not None and done % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
    elapsed = time.perf_counter() - t0
    if progress is not None:
        progress(done % PROGRESS_EVERY)
    a.summary.seconds = elapsed
    if b is not None:
        b.summary.seconds = elapsed
    return a.summary, (b.summary if b is not None else None), diff


def run_replay_sync(
    events: list[ReplayEvent],
    base: TenantBundle,
    other: TenantBundle | None,
    progress: Callable[[int], object] | None = None,
) -> tuple[Summary, Summary | None, Diff]:
    return asyncio.run(replay(events, base, other, progress=progress))
