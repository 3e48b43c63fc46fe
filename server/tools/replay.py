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
events with its own state and reports the decisions that differ. What is counted (for
``--json``, the tables and the HTML report) is :mod:`server.tools.summary`'s.

Speed (docs/benchmarks.md): when a core is idle, lines are parsed and planned in a worker
process (``replay_workers``) while this one decides, so the two overlap instead of adding
up; on a busy machine they are parsed here, which costs less CPU in all. A file already in
time order (the server's decision log, most exports) is decided as it streams in; if an
event turns out earlier than one already decided, the decisions made so far are dropped
and the whole file is decided again in sorted order, so the result is always the sorted
replay's.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from dsl.aggregates import AggregateRef
from dsl.decision import Decision
from dsl.facts import NO_IP, EventFacts, Facts, IpFacts, PhoneFacts
from dsl.pipeline import Decided, decide_now
from server.bundle.load import TenantBundle
from server.phone import PhoneParser
from server.state import MemoryBackend
from server.tools.decisions import DecisionSink, record
from server.tools.outcomes import Labelling, LabelReader
from server.tools.summary import SAMPLES, Diff, Summary

from .replay_input import (
    EMPTY,
    ReplayEvent,
    ReplayInputError,
    chunks,
    first_tenant,
    lists_for,
    parse_line,
    parse_lines,
)
from .replay_workers import (
    Locate,
    PlannedRef,
    Wire,
    WireDecoder,
    default_workers,
    usable_workers,
    wire_chunks,
)

# Told how many more lines or events were handled, now and then (a progress bar's step).
Progress = Callable[[int], object]
# Events between two calls of a progress callback while deciding sorted events.
PROGRESS_EVERY = 1000

__all__ = [
    "Diff",
    "LabelReader",
    "Labelling",
    "ReplayEvent",
    "ReplayInputError",
    "Replayer",
    "Summary",
    "default_workers",
    "first_tenant",
    "parse_line",
    "read_events",
    "replay",
    "replay_file",
    "run_replay_sync",
    "stream_events",
]


def stream_events(
    path: Path,
    parser: PhoneParser,
    default_tenant: str,
    errors: list[str],
    *,
    workers: int | None = None,
) -> Iterator[ReplayEvent]:
    """Every good line's event in file order (not sorted), parsed ``workers`` processes
    ahead of the consumer (default: one per spare core; 0 parses here); bad lines are
    appended to ``errors`` as they are met."""
    if usable_workers(workers) <= 0:
        for first, lines in chunks(path):
            events, errs = parse_lines(path, first, lines, parser, default_tenant)
            errors.extend(errs)
            yield from events
        return
    decoder = WireDecoder(None)
    for wire, errs in wire_chunks(path, parser, default_tenant, workers=workers):
        errors.extend(errs)
        for w in wire:
            yield decoder.event(w)


def read_events(
    path: Path,
    parser: PhoneParser,
    default_tenant: str,
    errors: list[str],
    *,
    workers: int | None = None,
) -> list[ReplayEvent]:
    """Every good line's event, sorted by event time (then line); bad lines go to
    ``errors``."""
    out = list(stream_events(path, parser, default_tenant, errors, workers=workers))
    out.sort(key=lambda e: (e.occurred_at, e.line))
    return out


class Replayer:
    """One policy, one fresh memory state. ``locate`` looks addresses up in the IP
    databases (``--ip-db``), for a policy that reads ip.* facts."""

    def __init__(
        self, bundle: TenantBundle, hash_key: bytes = b"replay", locate: Locate | None = None
    ) -> None:
        self.bundle = bundle
        self.backend = MemoryBackend(hash_key=hash_key, max_keys=5_000_000)
        self.summary = Summary.for_policy(bundle.policy)
        self.locate = locate if bundle.policy.reads_ip else None
        self.ids = bundle.policy.aggregate_ids

    async def decide(self, ev: ReplayEvent) -> Decision:
        return self.decide_now(ev)

    def decide_now(self, ev: ReplayEvent) -> Decision:
        return self.decide_facts(ev.phone, ev.event, ev.recorded_lists, ip=ev.ip).decision

    def decide_facts(
        self,
        phone: PhoneFacts,
        event: EventFacts,
        recorded: Mapping[str, Mapping[str, str]] | None,
        planned: Sequence[AggregateRef | PlannedRef] | None = None,
        fraud: bool | None = None,
        ip: IpFacts = NO_IP,
    ) -> Decided:
        """Decide one event; ``planned`` is the policy's plan for it when a parsing
        worker has already made it; ``fraud`` its outcome (None: unlabelled); ``ip`` where
        its address is, when known already."""
        b = self.bundle
        lists = lists_for(b, phone.e164, recorded, event.ip)
        if ip is NO_IP and self.locate is not None:
            ip = self.locate(event.ip)
        facts = Facts(tenant=b.name, phone=phone, event=event, ip=ip)
        decided = decide_now(b.policy, lists, facts, self.backend, record=True, refs=planned)
        self.summary.add(event, decided.decision, fraud)
        return decided


class _Comparison:
    """One policy's replay, or two side by side over the same events, one event at a time;
    each labelled from ``labels`` and written to ``sink`` when given."""

    def __init__(
        self,
        base: TenantBundle,
        other: TenantBundle | None,
        samples: int,
        locate: Locate | None = None,
        labels: Labelling | None = None,
        sink: DecisionSink | None = None,
    ) -> None:
        self.locate = locate
        self.a = Replayer(base, locate=locate)
        self.b = Replayer(other, locate=locate) if other is not None else None
        self.diff = Diff(sample_limit=samples)
        self.labels = labels
        self.sink = sink

    def step(self, ev: ReplayEvent) -> None:
        self.step_facts(
            ev.phone,
            ev.event,
            ev.recorded_lists,
            ev.key,
            None,
            ev.line,
            ev.label,
            ev.request_id,
            ip=ev.ip,
        )

    def step_facts(
        self,
        phone: PhoneFacts,
        event: EventFacts,
        recorded: Mapping[str, Mapping[str, str]] | None,
        key: str,
        planned: Sequence[PlannedRef] | None = None,
        line: int = 0,
        label: str | None = None,
        request_id: str = "",
        ip: IpFacts = NO_IP,
    ) -> None:
        fraud = None
        if self.labels is not None:
            label, fraud = self.labels.of(label, request_id)
        da = self.a.decide_facts(phone, event, recorded, planned, fraud, ip)
        db = None
        if self.b is not None:
            db = self.b.decide_facts(phone, event, recorded, None, fraud, ip)
            ev = ReplayEvent(
                line, event.occurred_at, self.a.bundle.name, phone, event, recorded, key
            )
            self.diff.add(ev, da.decision, db.decision)
        if self.sink is not None:
            self.sink.write(
                record(
                    line=line,
                    request_id=request_id,
                    key=key,
                    occurred_at=event.occurred_at,
                    e164=phone.e164,
                    label=label,
                    fraud=fraud,
                    decided=da,
                    ids=self.a.ids,
                    against=None if db is None or self.b is None else (db, self.b.ids),
                )
            )

    def result(self, elapsed: float) -> tuple[Summary, Summary | None, Diff]:
        self.a.summary.seconds = elapsed
        if self.b is not None:
            self.b.summary.seconds = elapsed
        return self.a.summary, (self.b.summary if self.b is not None else None), self.diff


async def replay(
    events: Iterable[ReplayEvent],
    base: TenantBundle,
    other: TenantBundle | None = None,
    *,
    samples: int = SAMPLES,
    progress: Progress | None = None,
    locate: Locate | None = None,
    labels: Labelling | None = None,
    decisions: DecisionSink | None = None,
) -> tuple[Summary, Summary | None, Diff]:
    """Replay ``events`` in the order given (callers sort them: :func:`read_events`)."""
    run = _Comparison(base, other, samples, locate, labels, decisions)
    return _replay_sorted(events, run, progress, time.perf_counter())


def _replay_sorted(
    events: Iterable[ReplayEvent],
    run: _Comparison,
    progress: Progress | None,
    t0: float,
) -> tuple[Summary, Summary | None, Diff]:
    step = run.step
    done = 0
    for done, ev in enumerate(events, 1):
        step(ev)
        if progress is not None and done % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
    if progress is not None:
        progress(done % PROGRESS_EVERY)
    return run.result(time.perf_counter() - t0)


def replay_file(
    path: Path,
    parser: PhoneParser,
    base: TenantBundle,
    other: TenantBundle | None = None,
    *,
    errors: list[str],
    samples: int = SAMPLES,
    progress: Progress | None = None,
    workers: int | None = None,
    locate: Locate | None = None,
    labels: Labelling | None = None,
    decisions: DecisionSink | None = None,
    tenants: Counter[str] | None = None,
) -> tuple[Summary, Summary | None, Diff]:
    """Replay a file's events of ``base``'s tenant, parsing (and planning) in worker
    processes while deciding here (see the module docstring); the time measured covers
    both. Bad lines go to ``errors``; ``locate`` looks addresses up (``--ip-db``);
    ``labels`` gives each event its outcome; every decision is written to ``decisions``;
    the events of other tenants are counted in ``tenants``."""
    tenant = base.name
    t0 = time.perf_counter()
    reads_ip = base.policy.reads_ip or (other is not None and other.policy.reads_ip)
    locate = locate if reads_ip else None
    run = _Comparison(base, other, samples, locate, labels, decisions)
    others: Counter[str] = Counter() if tenants is None else tenants
    if usable_workers(workers) <= 0:
        # Parsing here: no wire format, each event decided as it is parsed.
        kept_events: list[ReplayEvent] = []
        order = _InOrder()
        for first, lines in chunks(path):
            events, errs = parse_lines(path, first, lines, parser, tenant)
            errors.extend(errs)
            for ev in events:
                if ev.tenant == tenant:
                    kept_events.append(ev)
                    if order.next(ev.occurred_at):
                        run.step(ev)
                else:
                    others[ev.tenant] += 1
            if progress is not None and order.in_order:
                progress(len(lines))
        return _finish(run, order, kept_events, progress, t0)
    kept: list[Wire] = []
    step = run.step_facts
    decoder = WireDecoder(base)
    phone_of, refs_of = decoder.phone, decoder.refs
    order = _InOrder()
    ip_of = decoder.ip
    for wire, errs in wire_chunks(
        path, parser, tenant, bundle=base, workers=workers, locate=locate
    ):
        errors.extend(errs)
        for w in wire:
            if w[2] != tenant:
                others[w[2]] += 1
                continue
            kept.append(w)
            at = w[1]
            if not order.next(at):
                continue
            attrs = w[8]
            event = EventFacts(
                w[4], w[5], w[6], w[7], at, MappingProxyType(attrs) if attrs else EMPTY
            )
            plan = w[11]
            step(
                phone_of(w[3]),
                event,
                w[9],
                w[10],
                None if plan is None else refs_of(plan),
                w[0],
                w[13],
                w[14],
                ip_of(w[12]),
            )
        if progress is not None and order.in_order:
            progress(len(wire))
    events = [decoder.event(w) for w in kept] if not order.in_order else []
    return _finish(run, order, events, progress, t0)


class _InOrder:
    """Whether the events met so far are in time order (then each can be decided as it
    comes); after the first one that is not, nothing more is decided until the sort."""

    __slots__ = ("in_order", "last")

    def __init__(self) -> None:
        self.in_order = True
        self.last = float("-inf")

    def next(self, at: float) -> bool:
        if self.in_order:
            if at >= self.last:
                self.last = at
                return True
            self.in_order = False
        return False


def _finish(
    run: _Comparison,
    order: _InOrder,
    kept: list[ReplayEvent],
    progress: Progress | None,
    t0: float,
) -> tuple[Summary, Summary | None, Diff]:
    """The streamed result, or, when the file was out of order, the sorted replay's."""
    if not order.in_order:
        # Progress counted the file's lines once already; the sorted pass adds none.
        kept.sort(key=lambda e: (e.occurred_at, e.line))
        if run.labels is not None:
            run.labels.restart()
        if run.sink is not None:
            run.sink.restart()
        again = _Comparison(
            run.a.bundle,
            run.b.bundle if run.b is not None else None,
            run.diff.sample_limit,
            run.locate,
            run.labels,
            run.sink,
        )
        return _replay_sorted(kept, again, None, t0)
    return run.result(time.perf_counter() - t0)


def run_replay_sync(
    events: list[ReplayEvent],
    base: TenantBundle,
    other: TenantBundle | None,
    progress: Progress | None = None,
    *,
    labels: Labelling | None = None,
    decisions: DecisionSink | None = None,
) -> tuple[Summary, Summary | None, Diff]:
    return asyncio.run(
        replay(events, base, other, progress=progress, labels=labels, decisions=decisions)
    )
