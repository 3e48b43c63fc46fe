"""Rule-test coverage (``ringfence test --coverage``): which rules and conditions no test
case exercises, like ``opa test --coverage``.

A rule is exercised when some case makes it fire and some case keeps it quiet; a condition
(each operand of a rule's ``and`` / ``or`` / ``not``, each named condition a rule uses, and
each operand inside a named condition) when some case makes it true and some case false.
A condition whose value is unknown in a case (an aggregate the case left unknown) counts
as neither.

How a condition's value is seen: the policy is compiled once more with one shadow rule per
condition, ``when (the condition as written)`` in a file of its own beside the tenant's
(:func:`plan_coverage`). Shadow rules change no decision, and each is explained in the
decision's trace, so every case run against this policy shows the value of every
condition, computed by the same code generator as the real rules: no second evaluator to
drift from the first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from dsl import ast
from dsl.decision import Decision
from dsl.diagnostics import Diagnostic, PolicyError
from dsl.parser import parse_module

COVERAGE_FILE = "__coverage__.rf"
_PREFIX = "coverage__"


@dataclass(frozen=True, slots=True)
class Branch:
    """One condition to see both ways: ``key`` is its shadow rule's name."""

    key: str
    owner: str  # "rule NAME" or "condition NAME"
    text: str  # as written
    span: ast.Span


@dataclass(frozen=True, slots=True)
class CoveragePlan:
    rules: tuple[tuple[str, ast.Span], ...]  # every rule of the tenant, where declared
    branches: tuple[Branch, ...]
    path: str  # the added file's name among the sources
    dropped: tuple[Branch, ...] = ()  # not measured: they did not compile on their own

    def _blocks(self) -> list[tuple[Branch, str]]:
        return [
            (b, f"shadow rule {b.key} {{\n    when ({b.text})\n    then review\n}}\n")
            for b in self.branches
        ]

    def sources(self, sources: Mapping[str, str]) -> dict[str, str]:
        """The tenant's sources with one shadow rule per branch in a file of their own."""
        return {**sources, self.path: "".join(text for _, text in self._blocks())}

    def without(self, diags: Iterable[Diagnostic]) -> CoveragePlan:
        """The plan less the branches an error was found in (a condition the checker
        judges can never be true on its own, say): those are not measured."""
        bad_lines = {d.line for d in diags if d.path == self.path and d.is_error}
        keep: list[Branch] = []
        drop, line = list(self.dropped), 1
        for b, text in self._blocks():
            size = text.count("\n")
            (drop if bad_lines.intersection(range(line, line + size)) else keep).append(b)
            line += size
        return replace(self, branches=tuple(keep), dropped=tuple(drop))


def plan_coverage(
    sources: Mapping[str, str], library: Mapping[str, str], tenant: str
) -> CoveragePlan:
    """What to watch in a tenant's policy (sources that parse; see :func:`compile` for the
    rest)."""
    modules: list[tuple[ast.Module, str]] = []
    for path, text in (*sorted(library.items()), *sorted(sources.items())):
        try:
            modules.append((parse_module(text, path), text))
        except PolicyError:
            continue  # its errors are the test run's to report
    conditions = {
        item.name: (item, text)
        for module, text in modules
        for item in module.items
        if isinstance(item, ast.Condition)
    }
    tenant_paths = set(sources)
    rules: list[tuple[str, ast.Span]] = []
    branches: list[Branch] = []
    seen_conditions: set[str] = set()

    def add(owner: str, e: ast.Expr, text: str) -> None:
        key = f"{_PREFIX}{len(branches)}"
        branches.append(Branch(key, owner, _text(text, e.span), e.span))

    def walk_condition(name: str) -> None:
        if name in seen_conditions or name not in conditions:
            return
        seen_conditions.add(name)
        decl, text = conditions[name]
        for leaf in _leaves(decl.value):
            if leaf is not decl.value:
                add(f"condition {name}", leaf, text)
            _uses(leaf, conditions, walk_condition)

    for module, text in modules:
        if module.path not in tenant_paths:
            continue
        for item in module.items:
            if not isinstance(item, ast.Rule):
                continue
            rules.append((item.name, item.name_span))
            when = next((c for c in item.clauses if isinstance(c, ast.When)), None)
            if when is None:
                continue
            for leaf in _leaves(when.expr):
                if leaf is not when.expr:
                    add(f"rule {item.name}", leaf, text)
                _uses(leaf, conditions, walk_condition)
    folder = next(iter(sorted(sources)), f"{tenant}/x").rpartition("/")[0]
    path = f"{folder}/{COVERAGE_FILE}" if folder else COVERAGE_FILE
    return CoveragePlan(tuple(rules), tuple(branches), path)


def _leaves(e: ast.Expr) -> list[ast.Expr]:
    """The operands of and / or / not, down to what is neither."""
    out: list[ast.Expr] = []
    stack = [e]
    while stack:
        x = stack.pop()
        if isinstance(x, ast.BoolOp):
            stack.extend(reversed(x.operands))
        elif isinstance(x, ast.Not):
            stack.append(x.operand)
        else:
            out.append(x)
    return out


def _uses(e: ast.Expr, conditions: Mapping[str, object], walk: Callable[[str], None]) -> None:
    """Walk the named conditions ``e`` is (a leaf that names one)."""
    if isinstance(e, ast.Name) and e.name in conditions:
        walk(e.name)


def _text(source: str, span: ast.Span) -> str:
    lines = source.splitlines()
    if span.line == span.end_line:
        return lines[span.line - 1][span.column - 1 : span.end_column - 1]
    first = lines[span.line - 1][span.column - 1 :]
    middle = lines[span.line : span.end_line - 1]
    last = lines[span.end_line - 1][: span.end_column - 1]
    return "\n".join([first, *middle, last])


def _short(text: str) -> str:
    shown = " ".join(text.split())
    return shown if len(shown) <= 80 else shown[:77] + "..."


@dataclass
class Coverage:
    """What the cases run so far exercised (:meth:`add` each case's explained decision)."""

    plan: CoveragePlan
    fired: set[str] = field(default_factory=set)
    quiet: set[str] = field(default_factory=set)
    true: set[str] = field(default_factory=set)
    false: set[str] = field(default_factory=set)
    cases: int = 0

    def add(self, decision: Decision) -> None:
        self.cases += 1
        for t in decision.trace:
            if t.rule.startswith(_PREFIX):
                if t.value is True:
                    self.true.add(t.rule)
                elif t.value is False:
                    self.false.add(t.rule)
            elif t.matched:
                self.fired.add(t.rule)
            else:
                self.quiet.add(t.rule)

    def gaps(self) -> list[tuple[ast.Span, str]]:
        """(where, what no case does), in file order."""
        out: list[tuple[ast.Span, str]] = []
        for name, span in self.plan.rules:
            missing = [
                w for w, s in (("fire", self.fired), ("stay quiet", self.quiet)) if name not in s
            ]
            if missing:
                out.append((span, f"rule {name}: no case makes it {' or '.join(missing)}"))
        for b in self.plan.branches:
            missing = [w for w, s in (("true", self.true), ("false", self.false)) if b.key not in s]
            if missing:
                out.append(
                    (
                        b.span,
                        f"{b.owner}: '{_short(b.text)}' is never {' or '.join(missing)} in any"
                        " case",
                    )
                )
        for b in self.plan.dropped:
            out.append(
                (
                    b.span,
                    f"{b.owner}: '{_short(b.text)}' is not measured: it does not"
                    " compile on its own (ringfence check says why)",
                )
            )
        return sorted(out, key=lambda x: (x[0].path, x[0].line, x[0].column))

    def counts(self) -> tuple[int, int]:
        """(outcomes seen, outcomes there are): two per rule and two per condition."""
        names = [n for n, _ in self.plan.rules]
        keys = [b.key for b in self.plan.branches]
        seen = sum((n in self.fired) + (n in self.quiet) for n in names)
        seen += sum((k in self.true) + (k in self.false) for k in keys)
        return seen, 2 * (len(names) + len(keys))

    def summary(self) -> str:
        names = [n for n, _ in self.plan.rules]
        fired = sum(n in self.fired for n in names)
        both = sum(n in self.fired and n in self.quiet for n in names)
        keys = [b.key for b in self.plan.branches]
        seen = sum(k in self.true and k in self.false for k in keys)
        got, total = self.counts()
        share = f"{100 * got / total:.1f}%" if total else "100.0%"
        return (
            f"coverage {share}: {fired} of {len(names)} rules fire in some case ({both} also"
            f" stay quiet in one); {seen} of {len(keys)} conditions are both true and false"
        )
