"""The public entry points: check or compile a tenant's policy from source texts."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import cast

from dsl import ast, runtime
from dsl.aggregates import AggregateRef
from dsl.checker import Checker, Unit
from dsl.codegen import generate
from dsl.decision import Action, Match, RuleTrace
from dsl.diagnostics import Diagnostic, PolicyError, Severity
from dsl.ir import CheckedPolicy
from dsl.options import CompileOptions
from dsl.parser import parse_module
from dsl.policy import CompiledPolicy, EvalFn, ListDecl, PlanFn, RuleInfo

_NO_LIBRARY: Mapping[str, str] = MappingProxyType({})
_DEFAULT_OPTIONS = CompileOptions()
_ACTIONS = {"allow": Action.ALLOW, "review": Action.REVIEW, "block": Action.BLOCK}

# What generated code may call; it gets nothing else (no builtins beyond these).
_RUNTIME: dict[str, object] = {
    "AggregateRef": AggregateRef,
    "Match": Match,
    "RuleTrace": RuleTrace,
    "ALLOW": Action.ALLOW,
    "REVIEW": Action.REVIEW,
    "BLOCK": Action.BLOCK,
    "EMPTY_LIST": runtime.EMPTY_LIST,
    "masked": runtime.masked,
    "label": runtime.label,
    "local_time": runtime.local_time,
    "div": runtime.div,
    "fmt": runtime.fmt,
    "fmt_duration": runtime.fmt_duration,
    "decide": runtime.decide,
    "phone_starts_with": runtime.phone_starts_with,
    "__builtins__": {"int": int, "len": len, "frozenset": frozenset},
}


def _load(
    sources: Mapping[str, str], library: Mapping[str, str], options: CompileOptions
) -> tuple[list[Unit], list[Diagnostic]]:
    """Parse the tenant files (sorted by path) and, first, every library file they import."""
    diags: list[Diagnostic] = []
    units: list[Unit] = []
    loaded: set[str] = set()

    def parse(path: str, text: str) -> ast.Module | None:
        try:
            return parse_module(text, path, max_depth=options.max_depth)
        except PolicyError as err:
            diags.extend(err.diagnostics)
            return None

    def visit_imports(module: ast.Module, stack: tuple[str, ...]) -> None:
        for item in module.items:
            if not isinstance(item, ast.Import):
                continue
            target = item.target
            if target in stack:
                chain = " -> ".join([*stack[stack.index(target) :], target])
                diags.append(_at(item.span, f"import cycle: {chain}"))
                continue
            if target in loaded:
                continue
            if target not in library:
                known = ", ".join(sorted(library)) or "none"
                diags.append(
                    _at(item.span, f"unknown library file '{target}' (available: {known})")
                )
                continue
            loaded.add(target)
            lib = parse(target, library[target])
            if lib is not None:
                visit_imports(lib, (*stack, target))
                units.append(Unit(lib, library=True))

    tenant_units: list[Unit] = []
    for path in sorted(sources):
        module = parse(path, sources[path])
        if module is None:
            continue
        visit_imports(module, (path,))
        tenant_units.append(Unit(module, library=False))
    return units + tenant_units, diags


def _at(span: ast.Span, message: str) -> Diagnostic:
    return Diagnostic(
        span.path, span.line, span.column, Severity.ERROR, message, span.end_line, span.end_column
    )


def _check(
    sources: Mapping[str, str], library: Mapping[str, str], tenant: str, options: CompileOptions
) -> tuple[CheckedPolicy | None, tuple[Diagnostic, ...]]:
    units, diags = _load(sources, library, options)
    checker = Checker(units, tenant, options)
    checked = checker.check()
    diags.extend(checker.diags)
    ordered = tuple(sorted(set(diags), key=Diagnostic.sort_key))
    return checked, ordered


def check_policy(
    sources: Mapping[str, str],
    *,
    library: Mapping[str, str] = _NO_LIBRARY,
    tenant: str = "",
    options: CompileOptions = _DEFAULT_OPTIONS,
) -> tuple[Diagnostic, ...]:
    """Every diagnostic (errors and warnings) for these files; never raises on bad input."""
    _, diags = _check(sources, library, tenant, options)
    return diags


def compile_policy(
    sources: Mapping[str, str],
    *,
    library: Mapping[str, str] = _NO_LIBRARY,
    tenant: str = "",
    options: CompileOptions = _DEFAULT_OPTIONS,
) -> CompiledPolicy:
    """Compile a tenant's files into an immutable policy; raises PolicyError on any error."""
    checked, diags = _check(sources, library, tenant, options)
    errors = [d for d in diags if d.is_error]
    if errors or checked is None:
        raise PolicyError(errors)
    generated = generate(checked)
    namespace = dict(_RUNTIME)
    namespace.update(generated.namespace)
    filename = f"<ringfence policy {tenant or '?'}>"
    try:
        code = compile(generated.source, filename, "exec")
        exec(code, namespace)  # the source is ours: user text is only ever inside repr()
    except (SyntaxError, RecursionError, MemoryError, ValueError) as err:
        first = next(iter(sorted(sources)), "<policy>")
        raise PolicyError(
            [Diagnostic(first, 1, 1, Severity.ERROR, f"policy too complex to compile: {err}")]
        ) from None
    return CompiledPolicy(
        tenant=tenant,
        rules=tuple(
            RuleInfo(
                r.name,
                _ACTIONS[r.action],
                r.shadow,
                ast.Span(r.path, r.line, 1, r.line, 1),
                r.override,
                r.risk,
                r.tags,
                r.on_error,
            )
            for r in checked.rules
        ),
        aggregates=tuple(a.spec for a in checked.aggregates),
        lists=tuple(
            ListDecl(name, path, ast.Span(file, line, col, line, col))
            for name, path, file, line, col in checked.lists
        ),
        timezone=checked.timezone,
        python_source=generated.source,
        _plan=cast(PlanFn, namespace["plan"]),
        _evaluate=cast(EvalFn, namespace["evaluate"]),
        _explain=cast(EvalFn, namespace["explain"]),
    )
