"""Knobs for compiling a policy, and the limits that bound what any policy can cost."""

from __future__ import annotations

from dataclasses import dataclass

from dsl.parser import DEFAULT_MAX_DEPTH

# The operator's default evaluation budget (ringfence serve --cost-budget) and the most a
# tenant may choose (--cost-ceiling), in cost units: about 2 ms and 20 ms of CPU on the
# reference machine (docs/security.md, the cost model).
DEFAULT_COST_BUDGET = 1_000_000
DEFAULT_COST_CEILING = 10_000_000


@dataclass(frozen=True, slots=True)
class CompileOptions:
    # The longest span (window + offset) an aggregate may reach back: what state must keep.
    max_window_s: int = 30 * 86400
    # How long age() remembers a first sighting: older ones are forgotten (age restarts).
    max_age_s: int = 30 * 86400
    # Deepest expression nesting accepted; guards every recursive pass (and Python's own
    # parser, which refuses ~200 nested parentheses in the generated source).
    max_depth: int = DEFAULT_MAX_DEPTH
    max_risk: int = 4
    # Calendar days ("today") when the policy's settings name no time zone: the tenant's
    # config (tenant.toml) supplies it, so ops can set it without touching the rules.
    default_timezone: str = "UTC"
    # What tenant.toml says ("" when it says nothing): a policy whose settings name another
    # time zone gets a warning (the policy's wins).
    tenant_timezone: str = ""

    # Limits: policies are untrusted input, and each of these bounds time or memory that a
    # few lines of policy could otherwise make unbounded. Each is reported with a position.
    max_source_bytes: int = 1 << 20  # per file
    max_rules: int = 5000
    # Aggregate values read per decision, counting every window of a sustained() or ago():
    # each is state to fetch and keep.
    max_aggregate_reads: int = 1000
    # Windows one sustained() may expand to (7 days of hourly windows).
    max_sustained_steps: int = 168
    # Nodes in one rule's condition once constants and sustained() are expanded.
    max_rule_nodes: int = 20_000
    # ... and in all rules together (the demo policy has ~150; 5,000 ordinary rules ~110k).
    max_policy_nodes: int = 400_000
    max_set_items: int = 10_000
    # Regular expressions: each is compiled when the server loads the policy (RE2 keeps
    # each program within dsl.patterns.MAX_MEMORY).
    max_patterns: int = 256
    max_pattern_chars: int = 1000
    # The most a policy's evaluation may cost per request, in the cost model's units
    # (dsl.cost; about one expression node each): a policy estimated above it is an error.
    # The server sets it per tenant (its operator's default, or the tenant's own choice
    # within the operator's ceiling); 0 turns the check off.
    cost_budget: int = DEFAULT_COST_BUDGET
    # Diagnostics reported per check: past this, one more says how many were left out.
    max_diagnostics: int = 200
    # Characters of one diagnostic's message (a message can quote what the author wrote).
    max_message_chars: int = 500
