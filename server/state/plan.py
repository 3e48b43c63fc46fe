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

from .keys import KeyHasher, run_suffix
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
        event time when not given)."""
        reads: list[ReadOp] = []
        writes: dict[tuple[str, bytes], WriteOp] = {}
        fixed: list[tuple[str, int]] = []
        hasher = self.hasher
        for ref, c, key in self._specs.resolve(tenant, refs, hasher):
            window = c.window
            assert window is not None  # resolve() raised for a bad window
            kind = c.kind
            if kind is AggKind.FIRST_SEEN:
                # age(): the receipt clock only, never the event's own time (§6).
                at = int(now if received is None else received)
                memory_s = c.spec.window.size_s
                reads.append((c.id, kind, key, memory_s, at, b"", False))
                if record and ref.feeds and (key, b"") not in writes:
                    writes[(key, b"")] = (kind, key, at, b"", memory_s, memory_s)
                continue
            if kind is AggKind.RUN:
                suffix = run_suffix(ref.key, ref.member)
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
            lo, hi = window.read(now)
            if feeds:
                pos, cutoff, ttl = window.write(now, c.horizon)
                reads.append((c.id, kind, key, lo, hi, member, lo <= pos <= hi))
                if record and (key, member) not in writes:
                    writes[(key, member)] = (kind, key, pos, member, ttl, cutoff)
            else:
                reads.append((c.id, kind, key, lo, hi, member, False))
        return Plan(reads, list(writes.values()), fixed)
