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

from dsl.aggregates import NUMERIC_KINDS, AggKind, RefLike

from .keys import KeyHasher, readable_key, run_suffix
from .specs import SpecTable

ReadOp = tuple[str, AggKind, str, int, int, bytes, bool]
"""``(ref_id, kind, key, lo, hi, member, include)``: read one aggregate.

COUNT / DISTINCT / RUN: ``lo..hi`` is an inclusive bucket range. FIRST_SEEN: ``hi`` is the
receipt time in whole seconds (the value is ``hi`` minus the first sighting's, 0 when the
key is unknown or was last seen more than ``lo`` seconds before). ``member`` is the hashed
distinct value or the run suffix digits. ``include`` says the current event counts in this
window: it feeds the aggregate and its own bucket lies in ``lo..hi``.

SUM: the sum of the values in ``lo..hi`` (``member`` is the event's own value, as decimal
text), or :data:`NONE` once its positive or its negative part reaches ``SUM_LIMIT``. AVG:
how many values lie in ``lo..hi`` (an average is a SUM read and an AVG read of one key,
divided in :meth:`Plan.complete`). MIN / MAX: the least / greatest value, :data:`NONE` for
none.
"""

WriteOp = tuple[AggKind, str, int, bytes, int, int]
"""``(kind, key, pos, member, ttl_s, cutoff)``: record the event into one storage key.

``pos`` is the event's bucket (COUNT / DISTINCT / RUN / SUM / MIN / MAX) or the receipt
time in seconds (FIRST_SEEN). A SUM write keeps what both a sum and an average read (an
average's key is written as a sum's). ``cutoff`` is the oldest bucket to keep (older ones
are trimmed) or, for FIRST_SEEN, how long a key is remembered without a sighting
(seconds). ``ttl_s`` is the key's lifetime after this write, a backstop for memory: values
never depend on it.
"""


_COUNT = AggKind.COUNT
_DISTINCT = AggKind.DISTINCT
_RUN = AggKind.RUN
_SUM = AggKind.SUM
_AVG = AggKind.AVG

NONE = -(2**53)
"""What a backend answers for a numeric read with no value (an empty window's min, a sum
past its limit): no value it can hold (|value| < SUM_LIMIT), and exact in a double and in
the Redis script's integer replies. :meth:`Plan.complete` makes it None (unknown)."""
# Where an average's two reads are answered: its id and one of these.
AVG_SUM = "\x1fsum"
AVG_COUNT = "\x1fcount"


class Plan(NamedTuple):
    reads: list[ReadOp]
    writes: list[WriteOp]
    fixed: list[tuple[str, int]]  # values known without storage (nothing to read)
    # (ref id, the id whose read it shares): two windows that read the same buckets of the
    # same storage key for the same member (aggregates that count the same events, read at
    # the same offset) are read once and answered alike.
    same: list[tuple[str, str]]
    # Numeric reads: (ref id, its kind, scale): AVG (answered by two reads, divided here:
    # ``scale`` is 10**6 for an average of ints, in millionths, else 1), and SUM / MIN /
    # MAX, whose NONE becomes unknown.
    numeric: Sequence[tuple[str, AggKind, int]] = ()

    def complete(self, values: dict[str, int | None]) -> dict[str, int | None]:
        """``values`` of the reads, with the shared ones filled in and numeric ones
        finished (unknown as None, averages divided)."""
        for rid, first in self.same:
            values[rid] = values[first]
        for rid, kind, scale in self.numeric:
            if kind is _AVG:
                total = values.pop(rid + AVG_SUM, NONE)
                n = values.pop(rid + AVG_COUNT, 0)
                if total is None or n is None or total == NONE or n <= 0:
                    values[rid] = None
                else:
                    values[rid] = average(total * scale, n)
            elif values.get(rid) == NONE:
                values[rid] = None
        return values


def average(total: int, n: int) -> int:
    """``total / n`` rounded to the nearest integer, a tie to the even one (exact)."""
    q, r = divmod(total, n)
    twice = 2 * r
    if twice > n or (twice == n and q % 2):
        q += 1
    return q


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
        same: list[tuple[str, str]] = []
        numeric: list[tuple[str, AggKind, int]] = []
        # Each read once: its op without the id -> the id it was made for.
        first: dict[tuple[object, ...], str] = {}
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
            elif kind in NUMERIC_KINDS:
                # The value as text: what a write adds and what the event's own read adds.
                member = ref.member.encode("ascii")
                feeds = ref.feeds and member != b""
                numeric.append((c.id, kind, 1 if c.spec.decimal else 1_000_000))
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
                sig: tuple[object, ...] = (kind, key, memory_s, at, b"", False)
                done_by = first.get(sig)
                if done_by is None:
                    first[sig] = c.id
                    reads.append((c.id, kind, key, memory_s, at, b"", False))
                else:
                    same.append((c.id, done_by))
                if record and ref.feeds and (key, b"") not in writes:
                    writes[(key, b"")] = (kind, key, at, b"", memory_s, memory_s)
                continue
            window = c.window
            assert window is not None  # add() raised for a bad window
            lo, hi = window.read(now)
            if not feeds:
                include = False
            else:
                shared = (id(c.bucketing), c.horizon)
                done = arithmetic.get(shared)
                if done is None:
                    done = arithmetic[shared] = window.write(now, c.horizon)
                pos = done[0]
                include = lo <= pos <= hi
                if record and (key, member) not in writes:
                    stored = _SUM if kind is _AVG else kind
                    writes[(key, member)] = (stored, key, pos, member, done[2], done[1])
            if kind is _AVG:
                # Two reads of one key: its sum and how many values it holds.
                for rid, part in ((c.id + AVG_SUM, _SUM), (c.id + AVG_COUNT, _AVG)):
                    reads.append((rid, part, key, lo, hi, member, include))
                continue
            sig = (kind, key, lo, hi, member, include)
            done_by = first.get(sig)
            if done_by is None:
                first[sig] = c.id
                reads.append((c.id, kind, key, lo, hi, member, include))
            else:
                same.append((c.id, done_by))
        return Plan(reads, list(writes.values()), fixed, same, numeric)
