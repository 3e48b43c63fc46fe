"""What one decision produced: read by the response, the decision log and telemetry.

A module of its own because the request path (``server.rpc.decide``) makes it and the
telemetry side (``server.observability``) consumes it; neither should import the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dsl.decision import Decision
from dsl.facts import Facts
from server.bundle.load import TenantBundle


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one decision produced, for the response, the decision log and telemetry."""

    bundle: TenantBundle
    facts: Facts
    decision: Decision
    values: Mapping[str, int | None]
    degraded: bool
    request_id: str
    dry_run: bool
    started: float
    replayed: bool = False  # a retried request_id: the first attempt's decision, not recorded

    @property
    def values_read(self) -> tuple[tuple[str, int | None], ...]:
        """Every aggregate of the policy with its value (None: unknown), in policy order."""
        values = self.values
        return tuple((i, values.get(i)) for i in self.bundle.policy.aggregate_ids)
