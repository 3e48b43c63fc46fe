"""Turn a request's AggregateRefs into backend-neutral reads and writes.

This is the one statement of the planning semantics (docs/state.md, "What every value
means"): which buckets a window reads, whether the current event counts in it, which
storage keys the event is recorded into (once per key and member, however many windows
over it the policy reads), what is trimmed and how long each key lives. The memory backend
executes the plan in process; the Redis script (``script.py``) executes it in Redis, whole
or split by slot for a cluster. Neither decides any of it again.

Planning runs for every request and every replayed event, so it is kept lean: everything
derivable from a (frozen) spec is worked out once per spec (``specs.py``), and the ops are
plain tuples (a frozen dataclass costs about a microsecond to build; a tuple, a few dozen
ns).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from dsl.aggregates import AggKind, RefLike

from .keys import KeyHasher, readable_key, run_suffix
from .specs import SpecTable

ReadOp = tuple[str, AggKind, str, int, int, bytes, bool]
"""``(ref_id, kind, key, lo, hi, member, include)``: read one aggregate.

COUNT / DISTINCT / RUN: ``lo..hi`` is an inclusive bucket range. FIRST_SEEN: ``hi`` is the
receipt time in whole seconds (the value is ``hi`` minus the first sighting's, 0 when the
key is unknown or was last seen more than ``lo`` seconds before). ``member`` is the hashed
distinct value or the run suffix digits. ``include`` says the current event counts in this
window: it feeds the aggregate and its own bucket lies in ``lo..hi``.
"""

WriteOp = tuple[AggKind, str, int, bytes, int, int]
"""``(kind, key, pos, member, ttl_s, cutoff)``: record the event into one storage key.

``pos`` is the event's bucket (COUNT / DISTINCT / RUN) or the receipt time in seconds
(FIRST_SEEN). ``cutoff`` is the oldest bucket to keep (older ones are trimmed) or, for
FIRST_SEEN, how long a key is remembered without a sighting (seconds). ``ttl_s`` is the
key's lifetime after this write, a backstop for memory: values never depend on it.
"""


_COUNT = AggKind.COUNT
_DISTINCT = AggKind.DISTINCT
_RUN = AggKind.RUN


class Plan(NamedTuple):
    reads: list[ReadOp]
    writes: list[WriteOp]
    fixed: list[tuple[str, int]]  # values known without storage (nothing to read)


class Planner:
    """Builds plans for one backend (its hash key); keeps each tenant's compiled specs."""

    __slots__ = ("_specs", "hasher")

    def __init__(self, hasher: KeyHasher) -> None:
        self.hasher = hasher
        self._specs = SpecTable()

    def plan(
        self,
        tenant: str,
        refs: Sequence[RefLike],
        now: float,
        *,
        record: bool,
        received: float | None = None,
    ) -> Plan:
        """``now`` is the event time, ``received`` the receipt time (docs/state.md §1; the
        event time when not given). Raises StateError for a bad window, before anything is
        read or written."""
        reads: list[ReadOp] = []
        writes: dict[tuple[str, bytes], WriteOp] = {}
        fixed: list[tuple[str, int]] = []
        hasher = self.hasher
        specs = self._specs.for_tenant(tenant)
        # Windows with one bucketing and retention (today's counts, distinct values and
        # runs; the 0-offset window of a sustained()) share their arithmetic in a call.
        arithmetic: dict[tuple[int, int], tuple[int, int, int]] = {}
        for ref in refs:
            spec = ref.spec
            c = specs.get(id(spec))
            if c is None or c.spec is not spec:
                c = self._specs.add(tenant, spec)
            raw_key = ref.key
            if raw_key == c.last_raw:
                key = c.last_key
            else:
                # A list or segment key is the same on every request: neither hashed nor
                # joined again.
                key = (
                    c.head
                    + (readable_key(raw_key) if c.readable else hasher.hashed_key(raw_key))
                    + c.tail
                )
                c.last_raw, c.last_key = raw_key, key
            kind = c.kind
            if kind is _COUNT:
                member = b""
                feeds = ref.feeds
            elif kind is _DISTINCT:
                member = hasher.member(ref.member) if ref.member else b""
                # An empty distinct value (no device id sent) is not a value: never counted.
                feeds = ref.feeds and member != b""
            elif kind is _RUN:
                suffix = run_suffix(raw_key, ref.member)
                if not suffix.isdigit() or not suffix.isascii():
                    fixed.append((c.id, 0))  # not a number: no neighbours to speak of
                    continue
                member = suffix.encode("ascii")
                feeds = ref.feeds
            else:
                # age(): the receipt clock only, never the event's own time (§6).
                at = int(now if received is None else received)
                memory_s = c.memory_s
                reads.append((c.id, kind, key, memory_s, at, b"", False))
                if record and ref.feeds and (key, b"") not in writes:
                    writes[(key, b"")] = (kind, key, at, b"", memory_s, memory_s)
                continue
            window = c.window
            assert window is not None  # add() raised for a bad window
            lo, hi = window.read(now)
            if not feeds:
                reads.append((c.id, kind, key, lo, hi, member, False))
                continue
            shared = (id(c.bucketing), c.horizon)
            done = arithmetic.get(shared)
            if done is None:
                done = arithmetic[shared] = window.write(now, c.horizon)
            pos = done[0]
            reads.append((c.id, kind, key, lo, hi, member, lo <= pos <= hi))
            if record and (key, member) not in writes:
                writes[(key, member)] = (kind, key, pos, member, done[2], done[1])
        return Plan(reads, list(writes.values()), fixed)
