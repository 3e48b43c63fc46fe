"""The decision log: one JSON line per decision, written off the request path.

Requests only *offer* an outcome to a bounded queue; a background task formats and writes.
When the writer falls behind, lines are dropped and counted rather than slowing requests.
Numbers appear only as keyed hashes. ``ringfence replay`` reads this format.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from dsl.facts import NO_IP
from dsl.runtime import subject

if TYPE_CHECKING:
    from server.outcome import Outcome
    from server.phone.hashing import NumberHasher

log = logging.getLogger("ringfence.decision_log")
FORMAT_VERSION = 1


def record(outcome: Outcome, hasher: NumberHasher) -> dict[str, Any]:
    f = outcome.facts
    p = f.phone
    d = outcome.decision
    number_hash = hasher(p.e164)

    def scrub(text: str) -> str:
        # A reason may interpolate the number; the log must not carry it.
        for raw in (p.e164, p.national_number):
            if raw and raw in text:
                text = text.replace(raw, number_hash)
        return text

    ts = datetime.fromtimestamp(f.event.occurred_at, UTC)
    return {
        "v": FORMAT_VERSION,
        "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "request_id": outcome.request_id,
        "tenant": f.tenant,
        "policy_version": outcome.bundle.version,
        "dry_run": outcome.dry_run,
        "degraded": outcome.degraded,
        # A retried request_id answered from its first attempt: not a new event.
        "replayed": outcome.replayed,
        "phone": {
            "hash": number_hash,
            "valid": p.valid,
            "region": p.region,
            "number_type": p.number_type,
            "carrier": p.carrier,
            "segment_kind": p.segment_kind,
            "segment_prefix": p.segment_prefix,
            "country_code": p.country_code,
            "province": p.province,
            "province_name": p.province_name,
            "city": p.city,
            "city_name": p.city_name,
        },
        "event": {
            "scene": f.event.scene,
            "app_id": f.event.app_id,
            "ip": f.event.ip,
            "device_id": f.event.device_id,
            "occurred_at": f.event.occurred_at,
            "attributes": dict(f.event.attributes),
        },
        # List memberships as decided (the number's entry, or the address's on a list of
        # networks), so a replay of this log can answer list lookups without the number.
        "lists": {
            name: dict(labels)
            for name, view in outcome.bundle.lists.items()
            if (labels := view.labels(subject(view, p.e164, f.event.ip))) is not None
        },
        "aggregates": dict(outcome.values),
        # Where the address was, when the policy read it (the databases change weekly).
        **({"ip": dataclasses.asdict(f.ip)} if f.ip is not NO_IP else {}),
        "decision": {
            "action": d.action.name.lower(),
            "risk_level": d.risk_level,
            "tags": list(d.tags),
            "matches": [
                {
                    "rule": m.rule,
                    "action": m.action.name.lower(),
                    "shadow": m.shadow,
                    "reason": scrub(m.reason),
                }
                for m in d.matches
            ],
        },
    }


class DecisionLog:
    def __init__(self, target: str, *, max_queue: int = 10_000) -> None:
        self.target = target
        self.queue: asyncio.Queue[tuple[Outcome, NumberHasher]] = asyncio.Queue(max_queue)
        self.dropped = 0
        self.written = 0
        self._task: asyncio.Task[None] | None = None
        self._stream: IO[str] | None = None

    def offer(self, outcome: Outcome, hasher: NumberHasher) -> bool:
        try:
            self.queue.put_nowait((outcome, hasher))
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        return True

    def start(self) -> None:
        if self.target == "-":
            self._stream = sys.stdout
        else:
            self._stream = open(self.target, "a", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115
        self._task = asyncio.create_task(self._run(), name="decision-log")

    async def _run(self) -> None:
        assert self._stream is not None
        while True:
            outcome, hasher = await self.queue.get()
            lines = [json.dumps(record(outcome, hasher), separators=(",", ":"))]
            while not self.queue.empty() and len(lines) < 512:
                o, h = self.queue.get_nowait()
                lines.append(json.dumps(record(o, h), separators=(",", ":")))
            try:
                self._stream.write("\n".join(lines) + "\n")
                self._stream.flush()
                self.written += len(lines)
            except OSError:
                log.exception("decision log write failed; %d lines lost", len(lines))

    async def close(self) -> None:
        """Drain what is queued, then stop."""
        if self._task is None:
            return
        while not self.queue.empty():
            await asyncio.sleep(0)
            if self._task.done():
                break
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._stream is not None and self._stream is not sys.stdout:
            self._stream.close()
