"""Turn a request's AggregateRefs into backend-neutral reads and writes.

Both backends execute the same plan, so they cannot drift apart in semantics: which
buckets a window reads, whether the current event counts, which storage keys an event is
recorded into (once per key, however many windows over it the policy reads), and how long
each key lives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dsl.aggregates import AggKind, AggregateRef, AggregateSpec

from . import windows
from .errors import StateError
from .keys import Family, KeyHasher, family_of, run_suffix, spec_identity

_MAX_FAMILIES = 10_000


@dataclass(frozen=True, slots=True)
class ReadOp:
    """Read one aggregate.

    COUNT / DISTINCT: ``lo..hi`` is an inclusive bucket range. RUN: ``(lo, hi]`` in epoch
    ms. ``member`` is the hashed distinct value or the run suffix digits. ``include`` says
    the current event counts in this window (it feeds and the window covers now).
    """

    ref_id: str
    kind: AggKind
    key: str
    lo: int
    hi: int
    member: bytes
    include: bool


@dataclass(frozen=True, slots=True)
class WriteOp:
    """Record the event into one storage key.

    ``pos`` is the bucket (COUNT / DISTINCT) or the event time in ms (RUN); ``cutoff`` is
    the oldest bucket to keep (older are trimmed) or, for RUN, the time at or before which
    entries are dropped; ``ttl_s`` is the key's lifetime after this write.
    """

    kind: AggKind
    key: str
    pos: int
    member: bytes
    ttl_s: int
    cutoff: int


@dataclass(frozen=True, slots=True)
class Plan:
    reads: tuple[ReadOp, ...]
    writes: tuple[WriteOp, ...]
    fixed: tuple[tuple[str, int], ...]  # values known without storage (nothing to read)


class Planner:
    """Builds plans; remembers the largest offset seen per aggregate family so that TTLs
    and trimming keep what every window over the same buckets needs, even when one request
    plans only some of them."""

    __slots__ = ("_families", "_hasher", "_max_offset")

    def __init__(self, hasher: KeyHasher) -> None:
        self._hasher = hasher
        self._max_offset: dict[str, int] = {}
        # Specs are frozen and few per policy; their family is worked out once, not per event.
        # Keyed by identity (hashing a nested frozen dataclass costs more than the lookup
        # saves); the spec is kept in the entry so a recycled id can never match.
        self._families: dict[tuple[str, int], tuple[AggregateSpec, Family]] = {}

    def _family(self, tenant: str, spec: AggregateSpec) -> Family:
        found = self._families.get((tenant, id(spec)))
        if found is None or found[0] is not spec:
            if len(self._families) >= _MAX_FAMILIES:
                self._families.clear()
            found = (spec, family_of(tenant, spec_identity(spec)))
            self._families[(tenant, id(spec))] = found
        return found[1]

    def _offset(self, family: Family, offset_s: int) -> int:
        known = self._max_offset.get(family.prefix)
        if known is None or offset_s > known:
            if len(self._max_offset) >= _MAX_FAMILIES:
                self._max_offset.clear()  # bounded; at worst TTLs shrink until relearned
            self._max_offset[family.prefix] = offset_s
            return offset_s
        return known

    def plan(self, tenant: str, refs: Sequence[AggregateRef], now: float, *, record: bool) -> Plan:
        reads: list[ReadOp] = []
        writes: dict[tuple[str, bytes], WriteOp] = {}
        fixed: list[tuple[str, int]] = []
        for ref in refs:
            spec = ref.spec
            window = spec.window
            if window.size_s <= 0 and not window.calendar_day:
                raise StateError(f"aggregate {spec.id!r}: window size must be positive")
            if window.offset_s < 0:
                raise StateError(f"aggregate {spec.id!r}: window offset must not be negative")
            family = self._family(tenant, spec)
            max_offset = self._offset(family, window.offset_s)
            key = f"{family.prefix}:{self._hasher.key(spec.key, ref.key)}"
            kind = spec.kind
            if kind is AggKind.RUN:
                suffix = run_suffix(ref.key, ref.member)
                if not suffix.isdigit() or not suffix.isascii():
                    fixed.append((ref.id, 0))  # not a number: no neighbours to speak of
                    continue
                member = suffix.encode("ascii")
                lo, hi = windows.time_bounds_ms(window, now)
            else:
                if kind is AggKind.DISTINCT:
                    member = self._hasher.member(ref.member) if ref.member else b""
                else:
                    member = b""
                lo, hi = windows.read_range(window, now)
            # An empty distinct value (no device id sent) is not a value: never counted.
            feeds = ref.feeds and not (kind is AggKind.DISTINCT and not member)
            include = feeds and windows.covers_now(window, now)
            reads.append(ReadOp(ref.id, kind, key, lo, hi, member, include))
            if record and feeds and (key, member) not in writes:
                if kind is AggKind.RUN:
                    pos = round(now * 1000)
                    cutoff = windows.keep_after_ms(window, now, max_offset)
                else:
                    pos = windows.record_bucket(window, now)
                    cutoff = windows.keep_from_bucket(window, now, max_offset)
                ttl = windows.ttl_s(window, max_offset)
                writes[(key, member)] = WriteOp(kind, key, pos, member, ttl, cutoff)
        return Plan(tuple(reads), tuple(writes.values()), tuple(fixed))
