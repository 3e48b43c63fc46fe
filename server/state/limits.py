"""Size limits both backends share, so they answer the same (documented in docs/state.md)."""

from __future__ import annotations

DISTINCT_EXACT_CAP = 1_000  # members kept exactly per distinct key; HyperLogLog beyond
RUN_WALK_CAP = 1_000  # neighbours examined in each direction: bounds a run query's cost
RUN_MAX_MEMBERS = 100_000  # numbers remembered per run key; the oldest go first beyond
