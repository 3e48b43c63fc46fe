"""Turn a request's AggregateRefs into backend-neutral reads and writes.

Both backends execute the same plan, so they cannot drift apart in semantics: which
buckets a window reads, whether the current event counts, which storage keys an event is
recorded into (once per key, however many windows over it the policy reads), and how long
each key lives.

Planning runs for every request and every replayed event, so it is kept lean: everything
derivable from a (frozen) spec is worked out once per spec, and the ops are plain tuples
(a frozen dataclass costs about a microsecond to build; a tuple, a few dozen ns).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from dsl.aggregates import AggKind, AggregateRef

from .keys import KeyHasher, run_suffix
from .specs import SpecTable

ReadOp = tuple[str, AggKind, str, int, int, bytes, bool]
"""``(ref_id, kind, key, lo, hi, member, include)``: read one aggregate.

COUNT / DISTINCT: ``lo..hi`` is an inclusive bucket range. RUN: ``(lo, hi]`` in epoch ms.
FIRST_SEEN: ``hi`` is now in epoch seconds (the value is ``hi`` minus the first sighting).
``member`` is the hashed distinct value or the run suffix digits. ``include`` says the
current event counts in this window (it feeds and the window covers now).
"""

WriteOp = tuple[AggKind, str, int, bytes, int, int]
"""``(kind, key, pos, member, ttl_s, cutoff)``: record the event into one storage key.

``pos`` is the bucket (COUNT / DISTINCT), the event time in ms (RUN) or in seconds
(FIRST_SEEN, stored only if the key holds none yet); ``cutoff`` is the
oldest bucket to keep (older are trimmed) or, for RUN, the time at or before which entries
are dropped; ``ttl_s`` is the key's lifetime after this write.
"""


class Plan(NamedTuple):
    reads: list[ReadOp]
    writes: list[WriteOp]
    fixed: list[tuple[str, int]]  # values known without storage (nothing to read)


class Planner:
    """Builds plans; remembers the largest offset seen per aggregate family so that TTLs
    and trimming keep what every window over the same buckets needs, even when one request
    plans only some of them."""

    __slots__ = ("_specs", "hasher")

    def __init__(self, hasher: KeyHasher) -> None:
        self.hasher = hasher
        self._specs = SpecTable()

    def plan(self, tenant: str, refs: Sequence[AggregateRef], now: float, *, record: bool) -> Plan:
        reads: list[ReadOp] = []
        writes: dict[tuple[str, bytes], WriteOp] = {}
        fixed: list[tuple[str, int]] = []
        hasher = self.hasher
        for ref, c, max_offset, key in self._specs.resolve(tenant, refs, hasher):
            window = c.window
            assert window is not None  # resolve() raised for a bad window
            raw_key = ref.key
            kind = c.kind
            if kind is AggKind.FIRST_SEEN:
                # age(): read the first sighting against now (seconds); a write sets it
                # if absent and keeps the key for the window after this sighting.
                now_s = int(now)
                reads.append((c.id, kind, key, 0, now_s, b"", False))
                if record and ref.feeds and (key, b"") not in writes:
                    writes[(key, b"")] = (kind, key, now_s, b"", c.seen_ttl, 0)
                continue
            if kind is AggKind.RUN:
                suffix = run_suffix(raw_key, ref.member)
                if not suffix.isdigit() or not suffix.isascii():
                    fixed.append((c.id, 0))  # not a number: no neighbours to speak of
                    continue
                member = suffix.encode("ascii")
                feeds = ref.feeds
            elif kind is AggKind.DISTINCT:
                member = hasher.member(ref.member) if ref.member else b""
                # An empty distinct value (no device id sent) is not a value: never counted.
                feeds = ref.feeds and member != b""
            else:
                member = b""
                feeds = ref.feeds
            lo, hi, covers = window.read(now)
            reads.append((c.id, kind, key, lo, hi, member, feeds and covers))
            if record and feeds and (key, member) not in writes:
                pos, cutoff, ttl = window.write(now, max_offset)
                writes[(key, member)] = (kind, key, pos, member, ttl, cutoff)
        return Plan(reads, list(writes.values()), fixed)
