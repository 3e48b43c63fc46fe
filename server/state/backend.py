"""The one interface every velocity state backend implements."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from dsl.aggregates import RefLike
from dsl.facts import EventFacts, Facts

from .lists import ListStore


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


# The event's time is what the caller sent, when it sent one: the time decided with is
# bounded by each attempt's own receipt clock, so two attempts of one request would differ.
_STAMP = "occurred_at"


def fingerprint(facts: Facts, *, stamp: float | None, key: bytes) -> str:
    """What a request asks, for :class:`Claim`: a keyed hash of the E.164 number (every
    other phone fact follows from it) and of every field of the event, derived from the
    dataclass's own fields so a field added later counts by default; the event time is
    ``stamp``, the time as the caller sent it (None: not sent). Each part is written with
    its name and length, so no two different requests share a byte stream."""
    h = hashlib.blake2b(key=key[:64], digest_size=12, person=b"rf-fp")

    def part(name: str, text: str) -> None:
        data = text.encode("utf-8", "surrogatepass")
        h.update(b"%s:%d:" % (name.encode(), len(data)))
        h.update(data)

    part("phone.e164", facts.phone.e164)
    event = facts.event
    for f in dataclasses.fields(EventFacts):
        value = getattr(event, f.name) if f.name != _STAMP else stamp
        if value is None:
            continue
        if isinstance(value, Mapping):
            part(f.name, str(len(value)))
            for k in sorted(value):
                part("key", k)
                part("value", value[k])
        else:
            part(f.name, repr(value) if isinstance(value, float) else str(value))
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class Applied:
    """What :meth:`StateBackend.apply_claimed` answers. ``replayed``: the request id had
    been seen with the same fingerprint, so nothing was recorded and ``values`` and
    ``now`` are those of the first attempt (the event time its decision used)."""

    values: dict[str, int | None]
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
    """docs/state.md ("What every value means") specifies every value a backend answers;
    ``now`` is the event time and ``received`` the receipt time (the event time when not
    given), see its §1."""

    stats: StateStats

    @property
    def lists(self) -> ListStore:
        """Where lists kept in state (``list NAME from state``) live on this backend."""
        ...

    async def apply(
        self,
        tenant: str,
        refs: Sequence[RefLike],
        now: float,
        *,
        record: bool,
        received: float | None = None,
    ) -> dict[str, int | None]:
        """Fetch every ref (values include the current event where it feeds the aggregate
        and lands in the window) and, when ``record``, record the event into every identity
        it feeds, in one round trip. Raises StateTimeout / StateError."""
        ...

    async def apply_claimed(
        self,
        tenant: str,
        refs: Sequence[RefLike],
        now: float,
        claim: Claim,
        *,
        received: float | None = None,
    ) -> Applied:
        """``apply(..., record=True)`` once per claim: the first call for a request id
        records and remembers its values for ``claim.ttl_s`` of receipt time; a later call
        with the same id and fingerprint records nothing and answers the remembered values,
        marked ``replayed``. The check rides in the same round trip as the apply."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...
