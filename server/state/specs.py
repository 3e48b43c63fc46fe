"""What the planner works out once per aggregate spec.

A spec is frozen and comes from a compiled policy, so everything derivable from it — the
storage-key head and tail (its identity), the compiled window arithmetic, its retention —
is worked out the first time it is seen and kept per tenant. Nothing here is learned from
traffic: a spec's retention (``horizon_s``) is part of the compiled policy, so a restart
or another replica plans exactly the same reads, writes and trims.
"""

from __future__ import annotations

from dataclasses import replace

from dsl.aggregates import AggregateSpec

from .errors import StateError
from .keys import family_of, spec_readable
from .windows import CompiledWindow, compile_window

# Compiled specs kept per tenant; past this the tenant's table starts afresh (a policy
# holds at most 1,000 windows, so only many reloads get here).
MAX_SPECS_PER_TENANT = 10_000


class SpecInfo:
    """One spec, ready for the planning loop. Mutable only in its last-key memo."""

    __slots__ = (
        "bucketing",
        "error",
        "head",
        "horizon",
        "id",
        "kind",
        "last_key",
        "last_raw",
        "memory_s",
        "readable",
        "spec",
        "tail",
        "window",
    )

    def __init__(self, tenant: str, spec: AggregateSpec) -> None:
        self.spec = spec  # kept so a recycled id() can never match another spec
        self.id = spec.id
        self.kind = spec.kind
        family = family_of(tenant, spec)
        self.head = family.head
        self.tail = family.tail
        self.readable = spec_readable(spec)
        # A spec always reads within its own retention.
        self.horizon = max(spec.horizon_s, spec.window.offset_s)
        # The last concrete key and its storage key: a list or segment key is the same on
        # every request, so it is neither hashed nor joined again.
        self.last_raw: str | None = None
        self.last_key = ""
        window = spec.window
        self.error = ""
        if window.size_s <= 0:
            self.error = f"aggregate {spec.id!r}: window size must be positive"
        elif window.offset_s < 0:
            self.error = f"aggregate {spec.id!r}: window offset must not be negative"
        self.window: CompiledWindow | None = None if self.error else compile_window(window)
        # The window read now (offset 0): what an event's bucket, trim and TTL depend on,
        # shared by every window over the same buckets.
        self.bucketing = None if self.error else compile_window(replace(window, offset_s=0))
        self.memory_s = window.size_s  # age(): how long a key is remembered unseen


class SpecTable:
    """Compiled specs per tenant, looked up by ``id(spec)``: hashing a nested frozen
    dataclass costs more than the lookup saves, and specs are few per policy. The planner
    reads ``for_tenant``'s dict inline and calls :meth:`add` on a miss."""

    __slots__ = ("tenants",)

    def __init__(self) -> None:
        self.tenants: dict[str, dict[int, SpecInfo]] = {}

    def for_tenant(self, tenant: str) -> dict[int, SpecInfo]:
        found = self.tenants.get(tenant)
        if found is None or len(found) >= MAX_SPECS_PER_TENANT:
            found = self.tenants[tenant] = {}
        return found

    def add(self, tenant: str, spec: AggregateSpec) -> SpecInfo:
        """Compile ``spec``; raises StateError for a bad window."""
        info = self.for_tenant(tenant)[id(spec)] = SpecInfo(tenant, spec)
        if info.window is None:
            raise StateError(info.error)
        return info
