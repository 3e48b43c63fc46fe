"""Parsing replay input in worker processes, ahead of the process that decides.

Each worker reads the file and takes every n-th chunk of lines: it parses them (JSON, phone
numbers: most of a line's cost) and, given the policy, also plans each event (which
aggregates it reads and feeds: pure, no state), then sends the chunk through a pipe as one
pickled list of plain tuples. The deciding process receives the chunks in file order and
only applies, evaluates and counts. Plain tuples, not the frozen dataclasses: unpickling a
dataclass costs about four times a tuple, and the deciding process is the bottleneck.

Workers are forked, so they start with the parser (segment table, number cache) and the
compiled policy already in memory. Each pipe is widened to hold several chunks (1 MiB), so
a worker hands a chunk over in one write and goes on parsing, rather than waiting for the
deciding process to read it piece by piece (a wake-up per 64 KiB, which costs milliseconds
each on a busy machine); a full pipe bounds how far ahead a worker runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import os
import pickle
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import astuple
from multiprocessing.connection import Connection
from pathlib import Path
from types import MappingProxyType
from typing import Any

from dsl.aggregates import AggregateSpec
from dsl.facts import NO_IP, EventFacts, Facts, IpFacts, PhoneFacts
from server.bundle.load import TenantBundle
from server.host import usable_cpus
from server.phone import PhoneParser

from .replay_input import EMPTY, ReplayEvent, chunks, lists_for, parse_lines

PhoneWire = tuple[str, bool, str, str, str, str, str, int, str, str, str, str, str]
IpWire = tuple[int, str, str, str, str, str, int, str]
PlanWire = tuple[tuple[int, str, str, bool], ...]
Wire = tuple[
    int, float, str, PhoneWire, str, str, str, str, "dict[str, str] | None",
    "dict[str, dict[str, str]] | None", str, "PlanWire | None", "IpWire | None",
    "str | None", str,
]  # fmt: skip
"""(line, time, tenant, phone, scene, app_id, ip, device_id, attributes, recorded lists,
key, plan, ip facts, label, request_id): a parsed event, its plan for the policy given (spec
index, key, member, feeds per aggregate) or None when it was not planned (another tenant,
or no policy), where its address is (None: not looked up), and its outcome label."""
Locate = Callable[[str], IpFacts]
_DONE = b""
_FAILED = b"!"
_PIPE_BYTES = 1 << 20  # Linux's default ceiling for an unprivileged pipe size


class PlannedRef:
    """An aggregate ref rebuilt from a worker's plan: AggregateRef's fields, in a class
    that costs a fifth as much to build (the state backend only reads the four)."""

    __slots__ = ("feeds", "key", "member", "spec")

    def __init__(self, spec: AggregateSpec, key: str, member: str, feeds: bool) -> None:
        self.spec = spec
        self.key = key
        self.member = member
        self.feeds = feeds


WORKERS_ENV = "RINGFENCE_REPLAY_WORKERS"


def default_workers() -> int:
    """Parsing processes beside the deciding one: ``RINGFENCE_REPLAY_WORKERS`` when set,
    else one per core that is idle now (by the one-minute load average), none when the
    machine is busy. A worker only pays with a core to itself: the pipeline spends ~1.5x
    the CPU of parsing in line (every event is pickled and rebuilt), which is pure loss
    when the cores are taken anyway."""
    forced = os.environ.get(WORKERS_ENV, "").strip()
    if forced.isdigit():
        return int(forced)
    cores = usable_cpus()
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(0, min(cores - 1, round(cores - 1 - busy)))


def usable_workers(workers: int | None) -> int:
    """How many workers to fork: the number asked for (default: :func:`default_workers`),
    or none when this process runs other threads. A fork copies only the calling thread:
    a lock another thread holds at that moment (gRPC's, a logging handler's) stays held in
    the child for good. ``ringfence replay`` has no other threads; a server or a test
    process that has started gRPC does, and parses in line instead."""
    n = default_workers() if workers is None else workers
    return n if n > 0 and threading.active_count() == 1 else 0


def _phone_wire(p: PhoneFacts) -> PhoneWire:
    return (
        p.e164, p.valid, p.region, p.number_type, p.carrier, p.segment_kind,
        p.segment_prefix, p.country_code, p.national_number, p.province, p.province_name,
        p.city, p.city_name,
    )  # fmt: skip


def event_ip(ev: ReplayEvent, locate: Locate | None) -> IpFacts:
    """Where an event's address is: as its decision-log line recorded it, else from the
    databases when a policy reads it (``locate``), else unknown."""
    if ev.ip is not NO_IP or locate is None:
        return ev.ip
    return locate(ev.event.ip)


def _to_wire(
    ev: ReplayEvent, bundle: TenantBundle | None, index: dict[int, int], locate: Locate | None
) -> Wire:
    e = ev.event
    plan: PlanWire | None = None
    ip = event_ip(ev, locate)
    if bundle is not None and ev.tenant == bundle.name:
        facts = Facts(tenant=ev.tenant, phone=ev.phone, event=e, ip=ip)
        lists = lists_for(bundle, ev.phone.e164, ev.recorded_lists, e.ip)
        refs = bundle.policy.plan(facts, lists)
        found = [(index.get(id(r.spec)), r.key, r.member, r.feeds) for r in refs]
        if all(i is not None for i, _, _, _ in found):
            plan = tuple((i, k, m, f) for i, k, m, f in found if i is not None)
    recorded = {k: dict(v) for k, v in ev.recorded_lists.items()} if ev.recorded_lists else None
    return (
        ev.line, ev.occurred_at, ev.tenant, _phone_wire(ev.phone), e.scene, e.app_id, e.ip,
        e.device_id, dict(e.attributes) if e.attributes else None, recorded, ev.key, plan,
        None if ip is NO_IP else astuple(ip), ev.label, ev.request_id,
    )  # fmt: skip


def _work(
    conn: Connection,
    path: Path,
    parser: PhoneParser,
    default_tenant: str,
    bundle: TenantBundle | None,
    me: int,
    workers: int,
    locate: Locate | None,
) -> None:
    try:
        index = {id(s): i for i, s in enumerate(bundle.policy.aggregates)} if bundle else {}
        for k, (first, lines) in enumerate(chunks(path)):
            if k % workers != me:
                continue
            events, errors = parse_lines(path, first, lines, parser, default_tenant)
            wire = [_to_wire(ev, bundle, index, locate) for ev in events]
            conn.send_bytes(pickle.dumps((wire, errors), pickle.HIGHEST_PROTOCOL))
        conn.send_bytes(_DONE)
    except BaseException as exc:  # reported by the deciding process, which stops
        conn.send_bytes(_FAILED + f"{type(exc).__name__}: {exc}".encode())
    finally:
        conn.close()


def wire_chunks(
    path: Path,
    parser: PhoneParser,
    default_tenant: str,
    *,
    bundle: TenantBundle | None = None,
    workers: int | None = None,
    locate: Locate | None = None,
) -> Iterator[tuple[list[Wire], list[str]]]:
    """The file's parsed events (and bad-line messages) chunk by chunk, in file order.
    ``workers=0`` parses in this process. ``locate`` looks addresses up (IP facts)."""
    n = usable_workers(workers)
    if n <= 0:
        index = {id(s): i for i, s in enumerate(bundle.policy.aggregates)} if bundle else {}
        for first, lines in chunks(path):
            events, errors = parse_lines(path, first, lines, parser, default_tenant)
            yield [_to_wire(ev, bundle, index, locate) for ev in events], errors
        return
    ctx = multiprocessing.get_context("fork")
    procs: list[Any] = []
    conns: list[Connection] = []
    try:
        for me in range(n):
            receive, send = ctx.Pipe(duplex=False)
            with contextlib.suppress(OSError, AttributeError):  # Linux only; a hint
                fcntl.fcntl(send.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
            proc = ctx.Process(
                target=_work,
                args=(send, path, parser, default_tenant, bundle, me, n, locate),
                daemon=True,
            )
            proc.start()
            send.close()  # the child holds its own end
            procs.append(proc)
            conns.append(receive)
        k = 0
        while True:
            try:
                data = conns[k % n].recv_bytes()
            except EOFError:
                raise RuntimeError("a replay parsing worker died") from None
            if data == _DONE:
                return  # chunk k does not exist, so neither does any after it
            if data.startswith(_FAILED):
                raise RuntimeError(f"replay parsing failed: {data[1:].decode(errors='replace')}")
            yield pickle.loads(data)
            k += 1
    finally:
        for conn in conns:
            conn.close()
        for proc in procs:
            proc.join(timeout=0.5)
            if proc.is_alive():
                proc.terminate()
                proc.join()


class WireDecoder:
    """Rebuilds what deciding needs from wire tuples; a number's PhoneFacts is built once
    and shared by its events (bounded: cleared when it holds 100,000)."""

    __slots__ = ("_phones", "_specs")

    def __init__(self, bundle: TenantBundle | None) -> None:
        self._phones: dict[PhoneWire, PhoneFacts] = {}
        self._specs = bundle.policy.aggregates if bundle is not None else ()

    def phone(self, w: PhoneWire) -> PhoneFacts:
        found = self._phones.get(w)
        if found is None:
            if len(self._phones) >= 100_000:
                self._phones.clear()
            found = self._phones[w] = PhoneFacts(*w)
        return found

    def event(self, w: Wire) -> ReplayEvent:
        attrs = w[8]
        event = EventFacts(
            w[4], w[5], w[6], w[7], w[1], MappingProxyType(attrs) if attrs else EMPTY
        )
        recorded: Mapping[str, Mapping[str, str]] | None = w[9]
        ip = self.ip(w[12])
        return ReplayEvent(
            w[0], w[1], w[2], self.phone(w[3]), event, recorded, w[10], ip,
            label=w[13], request_id=w[14],
        )  # fmt: skip

    @staticmethod
    def ip(w: IpWire | None) -> IpFacts:
        return NO_IP if w is None else IpFacts(*w)

    def refs(self, plan: PlanWire) -> list[PlannedRef]:
        specs = self._specs
        return [PlannedRef(specs[i], k, m, f) for i, k, m, f in plan]
