"""The one interface every velocity state backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from dsl.aggregates import AggregateRef


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


class StateBackend(Protocol):
    stats: StateStats

    async def apply(
        self, tenant: str, refs: Sequence[AggregateRef], now: float, *, record: bool
    ) -> dict[str, int]:
        """Fetch every ref (values include the current event where it feeds and the window
        covers ``now``) and, when ``record``, record the event into every feeding ref, in
        one round trip. Raises StateTimeout / StateError."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...
