"""Lowering: the aggregate windows a checked policy reads, as storage-ready definitions.

The checker checks what the author wrote (kinds, keys, windows, the ``where`` expression);
this stage owns what follows from it, the way a compiler's named stages own their derived
facts:

* each declared aggregate as an :class:`~dsl.aggregates.AggregateSpec` whose ``filter``
  is the canonical text of its checked ``where`` (so two declarations differing only in
  their filter never share storage);
* the offset variants ``x.ago(1h)`` and ``sustained()`` read (id ``x@1h``), which feed
  exactly as ``x`` does;
* the first-seen keys ``age(per K)`` reads;
* each identity's retention (``horizon_s``: the largest offset any window of the policy
  reads it at), known when the policy is compiled, never learned from traffic;
* the declarations that count the same thing (a warning: they share one count).

docs/state.md ("What every value means") is the specification.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from dsl import ast, ir
from dsl.aggregates import (
    AggKind,
    AggregateSpec,
    KeyKind,
    Window,
    identity,
    is_decimal,
    sliding,
)
from dsl.durations import format_duration
from dsl.options import CompileOptions

ErrorFn = Callable[[ast.Span, str], ir.Error]
WarnFn = Callable[[ast.Span, str], None]


@dataclass(frozen=True, slots=True)
class _Declared:
    checked: ir.CheckedAggregate
    span: ast.Span


def age_id(kind: KeyKind, arg: str = "") -> str:
    """The id of ``age(per KIND)``: ``age(per number)``, ``age(per attribute "user_id")``."""
    if kind is KeyKind.ATTRIBUTE:
        return f"age(per attribute {_quoted(arg)})"
    return f"age(per {kind.value})"


def value_type(spec: AggregateSpec) -> ir.Type:
    """What an aggregate reads as: an int count; a sum, min or max in the type of its value;
    an average always a decimal (docs/state.md §5)."""
    if is_decimal(spec):
        return ir.Type.DEC
    if spec.kind is AggKind.FIRST_SEEN:
        return ir.Type.DUR
    return ir.Type.INT


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Lowering:
    """The aggregate table of one policy being checked."""

    def __init__(self, options: CompileOptions, error: ErrorFn, warn: WarnFn) -> None:
        self.options = options
        self._error = error
        self._warn = warn
        self.declared: dict[str, _Declared] = {}  # in declaration order
        self.variants: dict[tuple[str, int], ir.CheckedAggregate] = {}
        self.ages: dict[str, ir.CheckedAggregate] = {}  # by id, in first use
        # Where each window was first asked for: its declaration, ago(), sustained(), age().
        self.sites: dict[str, ast.Span] = {}
        self._reported_limit = False

    # -- what the checker asks ---------------------------------------------------------------

    def declare(
        self,
        name: str,
        span: ast.Span,
        *,
        kind: AggKind,
        keys: tuple[tuple[KeyKind, str], ...],
        field: str,
        where: ir.Node | None,
        window: Window,
        value: ir.Node | None = None,
    ) -> None:
        if self.too_many(span):
            return
        (key, key_arg), *more = keys
        spec = AggregateSpec(
            id=name,
            kind=kind,
            key=key,
            key_arg=key_arg,
            more_keys=tuple(more),
            field=field,
            filter="" if where is None else ir.canonical(where),
            after_decision=where is not None
            and any(
                isinstance(n, ir.Fact) and n.path.startswith("decision.") for n in ir.walk(where)
            ),
            window=window,
            decimal=value is not None and value.type is ir.Type.DEC,
        )
        self.declared[name] = _Declared(ir.CheckedAggregate(spec, where, name, value), span)
        self.sites[name] = span

    def value(self, name: str, agg_id: str | None = None) -> ir.AggValue:
        """A read of declaration ``name`` (or of its window ``agg_id``), typed by its kind."""
        return ir.AggValue(agg_id or name, value_type(self.declared[name].checked.spec))

    def has(self, name: str) -> bool:
        return name in self.declared or name in self.ages

    def window(self, name: str) -> Window:
        return self.declared[name].checked.spec.window

    def variant(self, name: str, offset: int, span: ast.Span) -> ir.Node:
        """``name`` read ``offset`` seconds back: an AggValue, or an Error reported here."""
        found = self.declared.get(name)
        if found is None:
            return ir.Error()
        if offset == 0:
            return self.value(name)
        base = found.checked
        reach = base.spec.window.span_s + offset
        if reach > self.options.max_window_s:
            return self._error(
                span,
                f"'{name}' {format_duration(offset)} ago reaches back {format_duration(reach)},"
                f" beyond the maximum {format_duration(self.options.max_window_s)}",
            )
        key = (name, offset)
        if key not in self.variants:
            if self.too_many(span):
                return ir.Error()
            spec = replace(
                base.spec,
                id=f"{name}@{format_duration(offset)}",
                window=replace(base.spec.window, offset_s=offset),
            )
            self.variants[key] = ir.CheckedAggregate(spec, base.where, name)
            self.sites[spec.id] = span
        return self.value(name, self.variants[key].spec.id)

    def age(self, kind: KeyKind, arg: str, span: ast.Span) -> ir.Node:
        """``age(per KIND)``: one first-seen key per kind, kept for the longest window."""
        agg_id = age_id(kind, arg)
        if agg_id not in self.ages:
            if self.too_many(span):
                return ir.Error()
            window = sliding(self.options.max_age_s)
            spec = AggregateSpec(
                id=agg_id, kind=AggKind.FIRST_SEEN, key=kind, key_arg=arg, window=window
            )
            self.ages[agg_id] = ir.CheckedAggregate(spec, None, agg_id)
            self.sites[agg_id] = span
        return ir.AggValue(agg_id, ir.Type.DUR)

    @property
    def window_count(self) -> int:
        """Declared aggregates, their ago() and sustained() windows and age() keys."""
        return len(self.declared) + len(self.variants) + len(self.ages)

    def too_many(self, span: ast.Span) -> bool:
        """Every aggregate window (declared, ago(), sustained(), age()) is state read per
        decision: bounded by ``max_aggregate_reads``."""
        limit = self.options.max_aggregate_reads
        if self.window_count < limit:
            return False
        if not self._reported_limit:
            self._reported_limit = True
            self._error(
                span,
                f"too many aggregate windows: a policy reads at most {limit} per decision"
                " (each ago() and each window of a sustained() counts)",
            )
        return True

    # -- the result ---------------------------------------------------------------------------

    def finish(self, keep: Callable[[str], bool]) -> tuple[ir.CheckedAggregate, ...]:
        """Every window the policy reads, in plan order (each declaration followed by its
        variants by offset, then the age() keys), with ``horizon_s`` filled in.
        ``keep(name)`` says whether a declaration is part of the plan (a library aggregate
        no rule reads only costs writes)."""
        order: list[ir.CheckedAggregate] = []
        for name, found in self.declared.items():
            if not keep(name):
                continue
            order.append(found.checked)
            order.extend(v for (n, _), v in sorted(self.variants.items()) if n == name)
        order.extend(self.ages.values())
        horizon: dict[tuple[object, ...], int] = {}
        for a in order:
            ident = identity(a.spec)
            horizon[ident] = max(horizon.get(ident, 0), a.spec.window.offset_s)
        self._report_same_counts(keep)
        return tuple(
            replace(a, spec=replace(a.spec, horizon_s=horizon[identity(a.spec)])) for a in order
        )

    def _report_same_counts(self, keep: Callable[[str], bool]) -> None:
        first: dict[tuple[object, ...], str] = {}
        for name, found in self.declared.items():
            if not keep(name):
                continue
            ident = identity(found.checked.spec)
            if ident in first:
                # Named, not located: names are unique in a policy, and a line would go
                # stale in an editor that re-checks only the part of a file that changed.
                self._warn(
                    found.span,
                    f"aggregate '{name}' counts the same events as '{first[ident]}':"
                    " the two share one count",
                )
            else:
                first[ident] = name
