"""The one interface every velocity state backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from dsl.aggregates import AggregateRef


@dataclass(frozen=True, slots=True)
class Claim:
    """An idempotency claim: record this request's event once per ``request_id``.

    ``request_id`` is the caller's text (bounded by request validation); backends store
    only a keyed hash of it, under the tenant. ``fingerprint`` says what the request asked
    (number and event): a reused id with a different fingerprint is not a retry, so it is
    decided and recorded afresh while the id stays with its first request.
    """

    request_id: str
    fingerprint: str
    ttl_s: float


@dataclass(frozen=True, slots=True)
class Applied:
    """What :meth:`StateBackend.apply_claimed` answers. ``replayed``: the request id had
    been seen with the same fingerprint, so nothing was recorded and ``values`` and
    ``now`` are those of the first attempt (the event time its decision used)."""

    values: dict[str, int]
    replayed: bool
    now: float


@dataclass(slots=True)
class StateStats:
    """Counters for metrics. Mutable on purpose: the backend bumps them on every call.

    ``round_trips`` counts network calls (always 0 for the memory backend); ``keys`` is the
    number of live storage keys (memory: exact; Redis: DBSIZE as of the last ``ping``).
    """

    calls: int = 0
    errors: int = 0
    timeouts: int = 0
    evictions: int = 0
    keys: int = 0
    round_trips: int = 0
    replays: int = 0


class StateBackend(Protocol):
    stats: StateStats

    async def apply(
        self, tenant: str, refs: Sequence[AggregateRef], now: float, *, record: bool
    ) -> dict[str, int]:
        """Fetch every ref (values include the current event where it feeds and the window
        covers ``now``) and, when ``record``, record the event into every feeding ref, in
        one round trip. Raises StateTimeout / StateError."""
        ...

    async def apply_claimed(
        self, tenant: str, refs: Sequence[AggregateRef], now: float, claim: Claim
    ) -> Applied:
        """``apply(..., record=True)`` once per claim: the first call for a request id
        records and remembers its values for ``claim.ttl_s``; a later call with the same id
        and fingerprint records nothing and answers the remembered values, marked
        ``replayed``. The check rides in the same round trip as the apply."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...
