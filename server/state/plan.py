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

from dsl.aggregates import AggKind, AggregateRef, AggregateSpec

from .errors import StateError
from .keys import KeyHasher, family_of, is_readable, readable_key, run_suffix, spec_identity
from .windows import CompiledWindow, compile_window

_MAX_FAMILIES = 10_000

ReadOp = tuple[str, AggKind, str, int, int, bytes, bool]
"""``(ref_id, kind, key, lo, hi, member, include)``: read one aggregate.

COUNT / DISTINCT: ``lo..hi`` is an inclusive bucket range. RUN: ``(lo, hi]`` in epoch ms.
``member`` is the hashed distinct value or the run suffix digits. ``include`` says the
current event counts in this window (it feeds and the window covers now).
"""

WriteOp = tuple[AggKind, str, int, bytes, int, int]
"""``(kind, key, pos, member, ttl_s, cutoff)``: record the event into one storage key.

``pos`` is the bucket (COUNT / DISTINCT) or the event time in ms (RUN); ``cutoff`` is the
oldest bucket to keep (older are trimmed) or, for RUN, the time at or before which entries
are dropped; ``ttl_s`` is the key's lifetime after this write.
"""


class Plan(NamedTuple):
    reads: list[ReadOp]
    writes: list[WriteOp]
    fixed: list[tuple[str, int]]  # values known without storage (nothing to read)


class _Family:
    """The largest window offset seen for one aggregate family (one storage-key prefix)."""

    __slots__ = ("max_offset",)

    def __init__(self) -> None:
        self.max_offset = 0


class _Compiled:
    """What planning needs from one spec, worked out once."""

    __slots__ = (
        "error",
        "family",
        "id",
        "kind",
        "last_key",
        "last_raw",
        "offset",
        "prefix",
        "readable",
        "spec",
        "window",
    )

    def __init__(self, spec: AggregateSpec, prefix: str, family: _Family) -> None:
        self.spec = spec  # kept so a recycled id() can never match another spec
        self.id = spec.id
        self.kind = spec.kind
        self.prefix = prefix + ":"
        self.readable = is_readable(spec.key)
        self.family = family
        # The last concrete key and its storage key: a list or segment key is the same on
        # every request, so it is neither hashed nor joined again.
        self.last_raw: str | None = None
        self.last_key = ""
        window = spec.window
        self.offset = window.offset_s
        self.error = ""
        if window.size_s <= 0 and not window.calendar_day:
            self.error = f"aggregate {spec.id!r}: window size must be positive"
        elif window.offset_s < 0:
            self.error = f"aggregate {spec.id!r}: window offset must not be negative"
        self.window: CompiledWindow | None = (
            None if self.error else compile_window(window, in_ms=spec.kind is AggKind.RUN)
        )


class Planner:
    """Builds plans; remembers the largest offset seen per aggregate family so that TTLs
    and trimming keep what every window over the same buckets needs, even when one request
    plans only some of them."""

    __slots__ = ("_compiled", "_families", "_hasher")

    def __init__(self, hasher: KeyHasher) -> None:
        self._hasher = hasher
        self._families: dict[str, _Family] = {}  # by storage-key prefix
        # tenant -> id(spec) -> compiled. Keyed by identity: hashing a nested frozen
        # dataclass costs more than the lookup saves, and specs are few per policy.
        self._compiled: dict[str, dict[int, _Compiled]] = {}

    def _compile(self, tenant: str, spec: AggregateSpec) -> _Compiled:
        if len(self._families) >= _MAX_FAMILIES:
            # Bounded; at worst TTLs shrink until the offsets are relearned.
            self._families.clear()
            self._compiled.clear()
        by_spec = self._compiled.get(tenant)
        if by_spec is None or len(by_spec) >= _MAX_FAMILIES:
            by_spec = self._compiled[tenant] = {}
        prefix = family_of(tenant, spec_identity(spec)).prefix
        family = self._families.get(prefix)
        if family is None:
            family = self._families[prefix] = _Family()
        found = by_spec[id(spec)] = _Compiled(spec, prefix, family)
        return found

    def plan(self, tenant: str, refs: Sequence[AggregateRef], now: float, *, record: bool) -> Plan:
        reads: list[ReadOp] = []
        writes: dict[tuple[str, bytes], WriteOp] = {}
        fixed: list[tuple[str, int]] = []
        hasher = self._hasher
        by_spec = self._compiled.get(tenant)
        for ref in refs:
            spec = ref.spec
            c = by_spec.get(id(spec)) if by_spec is not None else None
            if c is None or c.spec is not spec:
                c = self._compile(tenant, spec)
                by_spec = self._compiled[tenant]
            window = c.window
            if window is None:
                raise StateError(c.error)
            # Seen on every ref, written or not, in order: a TTL computed for this event
            # already covers every offset window over the family planned so far.
            family = c.family
            max_offset = family.max_offset
            if c.offset > max_offset:
                family.max_offset = max_offset = c.offset
            raw_key = ref.key
            if raw_key == c.last_raw:
                key = c.last_key
            else:
                key = c.prefix + (
                    readable_key(raw_key) if c.readable else hasher.hashed_key(raw_key)
                )
                c.last_raw, c.last_key = raw_key, key
            kind = c.kind
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
