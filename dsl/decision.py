"""What an evaluation returns: the action, risk level, tags and the rules that matched."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Action(IntEnum):
    """Ordered by severity so ``max`` picks the most severe; values match the proto enum."""

    UNSPECIFIED = 0
    ALLOW = 1
    REVIEW = 2
    BLOCK = 3


@dataclass(frozen=True, slots=True)
class Match:
    rule: str
    action: Action  # UNSPECIFIED for a rule that only adds a score
    reason: str
    shadow: bool = False
    risk_level: int = 0
    tags: tuple[str, ...] = ()
    priority: int = 0
    score: int = 0


@dataclass(frozen=True, slots=True)
class RuleTrace:
    """One line of an explanation: a rule, what its condition came to, and why.

    ``value`` is True / False, or None when the condition was unknown (a missing aggregate)
    and ``on_error`` decided.
    """

    rule: str
    value: bool | None
    matched: bool
    detail: str = ""
    error: bool = False  # the rule raised while it was evaluated; on_error decided


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    risk_level: int
    tags: tuple[str, ...]
    matches: tuple[Match, ...]
    # True when at least one aggregate the policy read was unknown (backend failed).
    unknown_inputs: bool = False
    trace: tuple[RuleTrace, ...] = ()
    # Rules that raised while being evaluated (each handled by its on_error).
    failed_rules: tuple[str, ...] = ()
    score: int = 0  # the summed scores of the live matches
    decided_by: str = ""  # which step of the combination decided, for explanations
