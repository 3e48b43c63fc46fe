"""The compiled policy: an immutable value the server shares between tasks and threads."""

from __future__ import annotations

import marshal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dsl.aggregates import (
    NUMERIC_KINDS,
    AggKind,
    AggregateRef,
    AggregateSpec,
    KeyKind,
    Window,
    is_decimal,
)
from dsl.ast import Span
from dsl.decision import Action, Decision, RuleTrace
from dsl.diagnostics import Diagnostic, Severity
from dsl.facts import Facts
from dsl.ir import Combining
from dsl.lists import LabelUse, ListUse, ListView

# (facts, lists, the decision's action or "" before it is made) -> refs.
PlanFn = Callable[[Facts, Mapping[str, ListView], str], tuple[AggregateRef, ...]]
EvalFn = Callable[
    [Facts, Mapping[str, int | None], Mapping[str, ListView], list[RuleTrace] | None, str, float],
    Decision,
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
    from_state: bool = False  # `from state`: entries kept in the tenant's state backend


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
    label_uses: tuple[LabelUse, ...] = ()
    cost: int = 0  # the cost model's estimate of one evaluation, in units (dsl.cost)
    reads_ip: bool = False  # ip.* facts are read: the server looks event.ip up
    list_uses: tuple[ListUse, ...] = ()

    def __reduce__(self) -> tuple[Callable[[bytes], PolicyArtifact], tuple[bytes]]:
        # Pickled as one marshal blob of plain tuples: the server unpickles artifacts on a
        # thread that holds the GIL, and the default pickling of thousands of frozen,
        # slotted dataclasses (Python-level __setstate__ per object) cost ~100 ms for a
        # 5,000-rule policy; marshal reads plain tuples in C.
        return _artifact_from_wire, (marshal.dumps(_artifact_to_wire(self)),)


def _span(s: Span) -> tuple[str, int, int, int, int]:
    return (s.path, s.line, s.column, s.end_line, s.end_column)


def _artifact_to_wire(a: PolicyArtifact) -> tuple[Any, ...]:
    rules = tuple(
        (
            r.name,
            int(r.action),
            r.shadow,
            _span(r.span),
            r.override,
            r.risk_level,
            r.tags,
            r.on_error,
            r.priority,
            r.score,
        )
        for r in a.rules
    )
    aggs = tuple(
        (
            s.id,
            s.kind.value,
            s.key.value,
            s.key_arg,
            tuple((k.value, arg) for k, arg in s.more_keys),
            s.field,
            s.decimal,
            s.filter,
            s.after_decision,
            (s.window.size_s, s.window.offset_s, s.window.calendar_day, s.window.timezone),
            s.horizon_s,
        )
        for s in a.aggregates
    )
    lists = tuple((d.name, d.path, _span(d.span), d.from_state) for d in a.lists)
    combining = (a.combining.default_action, a.combining.review_score, a.combining.block_score)
    labels = tuple((u.list_name, u.label, _span(u.span)) for u in a.label_uses)
    uses = tuple((u.list_name, u.subject, _span(u.span)) for u in a.list_uses)
    warnings = tuple(
        (d.path, d.line, d.column, d.severity.value, d.message, d.end_line, d.end_column)
        for d in a.warnings
    )
    return (
        a.tenant,
        rules,
        aggs,
        lists,
        a.timezone,
        a.patterns,
        combining,
        a.main_code,
        warnings,
        labels,
        a.cost,
        a.reads_ip,
        uses,
    )


def _artifact_from_wire(blob: bytes) -> PolicyArtifact:
    (
        tenant,
        rules,
        aggs,
        lists,
        timezone,
        patterns,
        combining,
        code,
        warnings,
        labels,
        cost,
        reads_ip,
        uses,
    ) = marshal.loads(blob)
    return PolicyArtifact(
        tenant=tenant,
        rules=tuple(
            RuleInfo(n, Action(a), sh, Span(*sp), ov, risk, tags, oe, pr, sc)
            for n, a, sh, sp, ov, risk, tags, oe, pr, sc in rules
        ),
        aggregates=tuple(
            AggregateSpec(
                id=i,
                kind=AggKind(kind),
                key=KeyKind(key),
                key_arg=arg,
                more_keys=tuple((KeyKind(k), karg) for k, karg in more),
                field=fld,
                decimal=dec,
                filter=flt,
                after_decision=after,
                window=Window(size_s=size, offset_s=offset, calendar_day=day, timezone=tz),
                horizon_s=horizon,
            )
            for i, kind, key, arg, more, fld, dec, flt, after, (
                size,
                offset,
                day,
                tz,
            ), horizon in aggs
        ),
        lists=tuple(ListDecl(n, path, Span(*sp), st) for n, path, sp, st in lists),
        timezone=timezone,
        patterns=patterns,
        combining=Combining(*combining),
        main_code=code,
        warnings=tuple(
            Diagnostic(path, line, col, Severity(sev), msg, el, ec)
            for path, line, col, sev, msg, el, ec in warnings
        ),
        label_uses=tuple(LabelUse(n, label, Span(*sp)) for n, label, sp in labels),
        cost=cost,
        reads_ip=reads_ip,
        list_uses=tuple(ListUse(n, subject, Span(*sp)) for n, subject, sp in uses),
    )


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    tenant: str
    rules: tuple[RuleInfo, ...]
    aggregates: tuple[AggregateSpec, ...]
    lists: tuple[ListDecl, ...]
    timezone: str
    warnings: tuple[Diagnostic, ...]
    combining: Combining
    label_uses: tuple[LabelUse, ...]
    cost: int  # the cost model's estimate of one evaluation, in units (dsl.cost)
    _plan: PlanFn = field(repr=False, compare=False)
    _evaluate: EvalFn = field(repr=False, compare=False)
    # ip.* facts are read: the caller must look event.ip up (Facts.ip); otherwise it may
    # leave Facts.ip empty and skip the databases.
    reads_ip: bool = False
    list_uses: tuple[ListUse, ...] = ()

    def plan(self, facts: Facts, lists: Mapping[str, ListView]) -> tuple[AggregateRef, ...]:
        """One ref per aggregate, bound to these facts: what to fetch and what to record.
        An aggregate over past decisions is read without being fed: this decision is not
        made yet (:meth:`plan_decided` feeds it)."""
        return self._plan(facts, lists, "")

    @property
    def records_decisions(self) -> bool:
        """Some aggregate counts past decisions (its ``where`` reads ``decision.*``)."""
        return any(a.after_decision for a in self.aggregates)

    def plan_decided(
        self, facts: Facts, lists: Mapping[str, ListView], action: str
    ) -> tuple[AggregateRef, ...]:
        """The refs of the aggregates over past decisions, fed by this decision (``action``:
        "allow", "review" or "block"): what is recorded once it is made (docs/state.md
        §11). Empty for a policy with none."""
        if not self.records_decisions:
            return ()
        return tuple(r for r in self._plan(facts, lists, action) if r.spec.after_decision)

    def evaluate(
        self,
        facts: Facts,
        values: Mapping[str, int | None],
        lists: Mapping[str, ListView],
        *,
        explain: bool = False,
        unknown_because: str = "",
        deadline: float = 0.0,
    ) -> Decision:
        """Decide. ``values`` maps aggregate id -> value; None or missing is unknown.
        ``unknown_because`` says why values are unknown, when the caller knows (the state
        backend failed): the reason a rule fired by its on_error gives. ``deadline``
        (``dsl.runtime.work_time()`` seconds, 0 for none): past it, evaluation stops between
        rules with :class:`dsl.runtime.EvaluationDeadline`."""
        return self._evaluate(
            facts, values, lists, [] if explain else None, unknown_because, deadline
        )

    @property
    def aggregate_ids(self) -> tuple[str, ...]:
        return tuple(a.id for a in self.aggregates)

    @property
    def decimal_ids(self) -> frozenset[str]:
        """The aggregates whose values are decimals (millionths): averages, and sums,
        mins and maxes of decimal values."""
        return frozenset(a.id for a in self.aggregates if is_decimal(a))

    @property
    def signed_ids(self) -> frozenset[str]:
        """The aggregates whose values may be negative: sums, averages, mins and maxes."""
        return frozenset(a.id for a in self.aggregates if a.kind in NUMERIC_KINDS)
