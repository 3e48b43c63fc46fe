"""What the planner works out once per aggregate spec.

A spec is frozen and comes from a compiled policy, so everything derivable from it — the
storage-key head and tail (its identity), the compiled window arithmetic, its retention —
is worked out the first time it is seen and kept per tenant. Nothing here is learned from
traffic: a spec's retention (``horizon_s``) is part of the compiled policy, so a restart
or another replica plans exactly the same reads, writes and trims.
"""

from __future__ import annotations

from collections.abc import Sequence

from dsl.aggregates import AggregateSpec, RefLike

from .errors import StateError
from .keys import KeyHasher, family_of, readable_key, spec_readable
from .windows import CompiledWindow, compile_window

# Compiled specs kept per tenant; past this the tenant's table starts afresh (a policy
# holds at most 1,000 windows, so only many reloads get here).
MAX_SPECS_PER_TENANT = 10_000


class SpecInfo:
    """One spec, ready for the planning loop. Mutable only in its last-key memo."""

    __slots__ = (
        "error",
        "head",
        "horizon",
        "id",
        "kind",
        "last_key",
        "last_raw",
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


class SpecTable:
    """Compiled specs per tenant, looked up by ``id(spec)``: hashing a nested frozen
    dataclass costs more than the lookup saves, and specs are few per policy."""

    __slots__ = ("tenants",)

    def __init__(self) -> None:
        self.tenants: dict[str, dict[int, SpecInfo]] = {}

    def resolve(
        self, tenant: str, refs: Sequence[RefLike], hasher: KeyHasher
    ) -> list[tuple[RefLike, SpecInfo, str]]:
        """Each ref with its spec info and its storage key; raises StateError for a bad
        window before anything is read or written."""
        by_spec = self.tenants.get(tenant)
        if by_spec is None or len(by_spec) >= MAX_SPECS_PER_TENANT:
            by_spec = self.tenants[tenant] = {}
        out: list[tuple[RefLike, SpecInfo, str]] = []
        for ref in refs:
            spec = ref.spec
            c = by_spec.get(id(spec))
            if c is None or c.spec is not spec:
                c = by_spec[id(spec)] = SpecInfo(tenant, spec)
            if c.window is None:
                raise StateError(c.error)
            raw_key = ref.key
            if raw_key == c.last_raw:
                key = c.last_key
            else:
                key = (
                    c.head
                    + (readable_key(raw_key) if c.readable else hasher.hashed_key(raw_key))
                    + c.tail
                )
                c.last_raw, c.last_key = raw_key, key
            out.append((ref, c, key))
        return out
