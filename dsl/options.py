"""Knobs for compiling a policy."""

from __future__ import annotations

from dataclasses import dataclass

from dsl.parser import DEFAULT_MAX_DEPTH


@dataclass(frozen=True, slots=True)
class CompileOptions:
    # The longest span (window + offset) an aggregate may reach back: what state must keep.
    max_window_s: int = 7 * 86400
    # Deepest expression nesting accepted; guards every recursive pass (and Python's own
    # parser, which refuses ~200 nested parentheses in the generated source).
    max_depth: int = DEFAULT_MAX_DEPTH
    max_risk: int = 4
    # Calendar days ("today") when the policy's settings name no time zone: the tenant's
    # config (tenant.toml) supplies it, so ops can set it without touching the rules.
    default_timezone: str = "UTC"
