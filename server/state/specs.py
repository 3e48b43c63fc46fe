"""What both backends work out once per aggregate spec.

The Redis backend plans a request (``plan.py``) and ships the plan in one round trip; the
memory backend reads and writes as it walks the refs and never builds a plan. Both start
from the same per-spec facts kept here: the storage-key head and tail, the compiled window
arithmetic, and the largest offset seen per family (so TTLs and trimming keep what every
window over the same buckets needs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from dsl.aggregates import AggKind, AggregateSpec

from .errors import StateError
from .keys import KeyHasher, family_of, readable_key, spec_identity, spec_readable
from .windows import CompiledWindow, compile_window

MAX_FAMILIES = 10_000


class RefLike(Protocol):
    """What a backend reads of a ref: AggregateRef, or anything with its four fields (a
    replay rebuilds refs a worker process planned, more cheaply than the dataclass)."""

    @property
    def spec(self) -> AggregateSpec: ...
    @property
    def key(self) -> str: ...
    @property
    def member(self) -> str: ...
    @property
    def feeds(self) -> bool: ...


class Family:
    """The largest window offset seen for one aggregate family (one key identity)."""

    __slots__ = ("max_offset",)

    def __init__(self) -> None:
        self.max_offset = 0


class SpecInfo:
    """One spec, ready for the apply loop. Mutable only in its last-key memo."""

    __slots__ = (
        "error",
        "family",
        "head",
        "id",
        "kind",
        "last_key",
        "last_raw",
        "offset",
        "readable",
        "seen_ttl",
        "spec",
        "tail",
        "window",
    )

    def __init__(self, spec: AggregateSpec, head: str, tail: str, family: Family) -> None:
        self.spec = spec  # kept so a recycled id() can never match another spec
        self.id = spec.id
        self.kind = spec.kind
        self.head = head
        self.tail = tail
        self.readable = spec_readable(spec)
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
        # age(): a key holds the first time it was seen and lives this long after the last.
        self.seen_ttl = window.size_s


class SpecTable:
    """Compiled specs per tenant, looked up by ``id(spec)``: hashing a nested frozen
    dataclass costs more than the lookup saves, and specs are few per policy. Callers read
    ``tenants`` directly and call :meth:`compile` on a miss."""

    __slots__ = ("_families", "tenants")

    def __init__(self) -> None:
        self._families: dict[str, Family] = {}  # by storage-key head + tail
        self.tenants: dict[str, dict[int, SpecInfo]] = {}

    def compile(self, tenant: str, spec: AggregateSpec) -> SpecInfo:
        """Compile ``spec`` into ``tenants[tenant]`` (which this may replace: re-read it)."""
        if len(self._families) >= MAX_FAMILIES:
            # Bounded; at worst TTLs shrink until the offsets are relearned.
            self._families.clear()
            self.tenants.clear()
        by_spec = self.tenants.get(tenant)
        if by_spec is None or len(by_spec) >= MAX_FAMILIES:
            by_spec = self.tenants[tenant] = {}
        keys = family_of(tenant, spec_identity(spec))
        prefix = keys.head + keys.tail
        family = self._families.get(prefix)
        if family is None:
            family = self._families[prefix] = Family()
        found = by_spec[id(spec)] = SpecInfo(spec, keys.head, keys.tail, family)
        return found

    def resolve(
        self, tenant: str, refs: Sequence[RefLike], hasher: KeyHasher
    ) -> list[tuple[RefLike, SpecInfo, int, str]]:
        """Each ref with its spec info, the family's largest offset so far and its storage
        key; raises StateError for a bad window before anything is read or written.

        The largest offset is updated on every ref, in order, written or not: a TTL worked
        out for this event then covers every offset window over the family seen so far.
        """
        by_spec = self.tenants.get(tenant)
        out: list[tuple[RefLike, SpecInfo, int, str]] = []
        for ref in refs:
            spec = ref.spec
            c = by_spec.get(id(spec)) if by_spec is not None else None
            if c is None or c.spec is not spec:
                c = self.compile(tenant, spec)
                by_spec = self.tenants[tenant]
            if c.window is None:
                raise StateError(c.error)
            family = c.family
            max_offset = family.max_offset
            if c.offset > max_offset:
                family.max_offset = max_offset = c.offset
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
            out.append((ref, c, max_offset, key))
        return out
