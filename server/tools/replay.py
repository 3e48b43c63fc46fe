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
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
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

_EMPTY: Mapping[str, str] = MappingProxyType({})


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
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise ReplayInputError(f"line {line}: occurred_at must be RFC 3339 or epoch seconds")


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
    out.sort(key=lambda e: (e.occurred_at, e.line))
    return out


@dataclass
class RuleStats:
    live: int = 0
    shadow: int = 0
    by_action: Counter[str] = field(default_factory=Counter)


@dataclass
class Summary:
    events: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    rules: dict[str, RuleStats] = field(default_factory=dict)
    tags: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def add(self, d: Decision) -> None:
        self.events += 1
        self.actions[d.action.name.lower()] += 1
        for tag in d.tags:
            self.tags[tag] += 1
        for m in d.matches:
            st = self.rules.setdefault(m.rule, RuleStats())
            if m.shadow:
                st.shadow += 1
            else:
                st.live += 1
            st.by_action[m.action.name.lower()] += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.events / self.seconds) if self.seconds else None,
            "actions": dict(self.actions),
            "tags": dict(self.tags),
            "rules": {
                name: {"live": s.live, "shadow": s.shadow, "actions": dict(s.by_action)}
                for name, s in sorted(self.rules.items())
            },
        }


class Replayer:
    """One policy, one fresh memory state."""

    def __init__(self, bundle: TenantBundle, hash_key: bytes = b"replay") -> None:
        self.bundle = bundle
        self.backend = MemoryBackend(hash_key=hash_key, max_keys=5_000_000)
        self.summary = Summary()

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
        self.summary.add(decision)
        return decision


@dataclass
class Diff:
    total: int = 0
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    samples: list[dict[str, Any]] = field(default_factory=list)


async def replay(
    events: Iterable[ReplayEvent],
    base: TenantBundle,
    other: TenantBundle | None = None,
    *,
    samples: int = 10,
    progress: bool = False,
    total: int = 0,
) -> tuple[Summary, Summary | None, Diff]:
    a = Replayer(base)
    b = Replayer(other) if other is not None else None
    diff = Diff()
    t0 = time.perf_counter()
    for i, ev in enumerate(events, 1):
        da = await a.decide(ev)
        if b is not None:
            db = await b.decide(ev)
            if da.action != db.action or {m.rule for m in da.matches} != {
                m.rule for m in db.matches
            }:
                diff.total += 1
                old, new = da.action.name.lower(), db.action.name.lower()
                diff.transitions[(old, new)] += 1
                if len(diff.samples) < samples:
                    diff.samples.append(
                        {
                            "event": ev.key,
                            "scene": ev.event.scene,
                            "before": {"action": old, "rules": [m.rule for m in da.matches]},
                            "after": {"action": new, "rules": [m.rule for m in db.matches]},
                        }
                    )
        if progress and i % 5000 == 0:
            _progress(i, total, time.perf_counter() - t0)
    elapsed = time.perf_counter() - t0
    if progress:
        _progress(total or a.summary.events, total, elapsed, final=True)
    a.summary.seconds = elapsed
    if b is not None:
        b.summary.seconds = elapsed
    return a.summary, (b.summary if b is not None else None), diff


def _progress(done: int, total: int, elapsed: float, final: bool = False) -> None:
    width = 30
    frac = done / total if total else 1.0
    bar = "#" * int(frac * width)
    rate = done / elapsed if elapsed else 0
    sys.stderr.write(f"\r[{bar:<{width}}] {done}/{total} events {rate:,.0f}/s")
    if final:
        sys.stderr.write("\n")
    sys.stderr.flush()


def format_table(summary: Summary, title: str) -> Iterator[str]:
    yield (
        f"{title}: {summary.events} events in {summary.seconds:.2f} s "
        f"({summary.events / summary.seconds if summary.seconds else 0:,.0f}/s)"
    )
    yield "  actions: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.actions.items()))
    yield f"  {'rule':<40} {'live':>8} {'shadow':>8}  actions"
    for name, s in sorted(summary.rules.items()):
        acts = ", ".join(f"{k} {v}" for k, v in sorted(s.by_action.items()))
        yield f"  {name:<40} {s.live:>8} {s.shadow:>8}  {acts}"


def run_replay_sync(
    events: list[ReplayEvent], base: TenantBundle, other: TenantBundle | None, progress: bool
) -> tuple[Summary, Summary | None, Diff]:
    return asyncio.run(replay(events, base, other, progress=progress, total=len(events)))
