"""The compiled policy: an immutable value the server shares between tasks and threads."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from dsl.aggregates import AggregateRef, AggregateSpec
from dsl.ast import Span
from dsl.decision import Action, Decision, RuleTrace
from dsl.diagnostics import Diagnostic
from dsl.facts import Facts
from dsl.ir import Combining
from dsl.lists import ListView

PlanFn = Callable[[Facts, Mapping[str, ListView]], tuple[AggregateRef, ...]]
EvalFn = Callable[
    [Facts, Mapping[str, int | None], Mapping[str, ListView], list[RuleTrace] | None], Decision
]


@dataclass(frozen=True, slots=True)
class RuleInfo:
    name: str
    action: Action
    shadow: bool
    span: Span
    override: bool = False
    risk_level: int = 0
    tags: tuple[str, ...] = ()
    on_error: str = "skip"
    priority: int = 0
    score: int = 0


@dataclass(frozen=True, slots=True)
class ListDecl:
    """A list the policy reads; ``path`` is as written: relative to the tenant folder, or
    to the rules root when it starts with ``_shared/``. ``span.path`` is the declaring file."""

    name: str
    path: str
    span: Span


@dataclass(frozen=True, slots=True)
class PolicyArtifact:
    """A checked and compiled policy as plain data: everything but the live functions.

    Picklable, so a worker process can build it (parse, check, generate, compile, all with
    a time and memory budget) and hand it to the server, which only has to load the code
    objects (:func:`dsl.compiler.load_policy`). ``main_code`` is a :mod:`marshal` dump
    of the code object compiled from the verified tree by the same Python.
    """

    tenant: str
    rules: tuple[RuleInfo, ...]
    aggregates: tuple[AggregateSpec, ...]
    lists: tuple[ListDecl, ...]
    timezone: str
    patterns: tuple[str, ...]  # regular expressions, compiled by load_policy as RE_n
    combining: Combining
    main_code: bytes
    warnings: tuple[Diagnostic, ...] = ()


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    tenant: str
    rules: tuple[RuleInfo, ...]
    aggregates: tuple[AggregateSpec, ...]
    lists: tuple[ListDecl, ...]
    timezone: str
    warnings: tuple[Diagnostic, ...]
    combining: Combining
    _plan: PlanFn = field(repr=False, compare=False)
    _evaluate: EvalFn = field(repr=False, compare=False)

    def plan(self, facts: Facts, lists: Mapping[str, ListView]) -> tuple[AggregateRef, ...]:
        """One ref per aggregate, bound to these facts: what to fetch and what to record."""
        return self._plan(facts, lists)

    def evaluate(
        self,
        facts: Facts,
        values: Mapping[str, int | None],
        lists: Mapping[str, ListView],
        *,
        explain: bool = False,
    ) -> Decision:
        """Decide. ``values`` maps aggregate id -> value; None or missing is unknown."""
        return self._evaluate(facts, values, lists, [] if explain else None)

    @property
    def aggregate_ids(self) -> tuple[str, ...]:
        return tuple(a.id for a in self.aggregates)
