"""The public entry points: check or compile a tenant's policy from source texts."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import cast

from dsl import ast, runtime
from dsl.aggregates import AggregateRef
from dsl.checker import Checker, Unit
from dsl.codegen import generate
from dsl.decision import Action, Decision, Match, RuleTrace
from dsl.diagnostics import Diagnostic, PolicyError, Severity
from dsl.facts import Facts
from dsl.ir import CheckedPolicy
from dsl.lists import ListView
from dsl.options import CompileOptions
from dsl.parser import parse_module
from dsl.policy import CompiledPolicy, EvalFn, ListDecl, PlanFn, RuleInfo

_NO_LIBRARY: Mapping[str, str] = MappingProxyType({})
# How a file's text becomes a module: parse_module, or (in the language server) a parser
# that reuses the unchanged parts of a file it has seen before. Same result either way.
ModuleParser = Callable[[str, str, int], ast.Module]


def _parse(text: str, path: str, max_depth: int) -> ast.Module:
    return parse_module(text, path, max_depth=max_depth)


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


_gc_lock = threading.Lock()
_gc_users = 0
_gc_was_enabled = False


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while compiling: a big policy allocates hundreds of thousands of
    short-lived, acyclic objects, and collections during that cost ~30 % of compile time.
    Counted, so concurrent compiles in threads restore the collector only when all finish.
    """
    global _gc_users, _gc_was_enabled
    with _gc_lock:
        if _gc_users == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0 and _gc_was_enabled:
                gc.enable()


def _run(source: str, filename: str, namespace: dict[str, object], first: str) -> None:
    try:
        code = compile(source, filename, "exec")
        exec(code, namespace)  # the source is ours: user text is only ever inside repr()
    except (SyntaxError, RecursionError, MemoryError, ValueError) as err:
        raise PolicyError(
            [Diagnostic(first, 1, 1, Severity.ERROR, f"policy too complex to compile: {err}")]
        ) from None


class _LazyExplain:
    """Compiles the explain function on its first call (thread-safe), then delegates."""

    def __init__(self, source: str, filename: str, namespace: dict[str, object], first: str):
        self._source = source
        self._filename = filename
        self._namespace = namespace
        self._first = first
        self._fn: EvalFn | None = None
        self._lock = threading.Lock()

    def __call__(
        self, facts: Facts, values: Mapping[str, int | None], lists: Mapping[str, ListView]
    ) -> Decision:
        fn = self._fn
        if fn is None:
            with self._lock:
                if self._fn is None:
                    # Its own namespace copy: the shared one is never mutated after compile.
                    ns = dict(self._namespace)
                    _run(self._source, self._filename, ns, self._first)
                    self._fn = cast(EvalFn, ns["explain"])
                fn = self._fn
        return fn(facts, values, lists)


def _load(
    sources: Mapping[str, str],
    library: Mapping[str, str],
    options: CompileOptions,
    parser: ModuleParser = _parse,
) -> tuple[list[Unit], list[Diagnostic]]:
    """Parse the tenant files (sorted by path) and, first, every library file they import."""
    diags: list[Diagnostic] = []
    units: list[Unit] = []
    loaded: set[str] = set()

    def parse(path: str, text: str) -> ast.Module | None:
        try:
            return parser(text, path, options.max_depth)
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
    sources: Mapping[str, str],
    library: Mapping[str, str],
    tenant: str,
    options: CompileOptions,
    parser: ModuleParser = _parse,
) -> tuple[CheckedPolicy | None, tuple[Diagnostic, ...]]:
    units, diags = _load(sources, library, options, parser)
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
    parser: ModuleParser = _parse,
) -> tuple[Diagnostic, ...]:
    """Every diagnostic (errors and warnings) for these files; never raises on bad input."""
    with _gc_paused():
        _, diags = _check(sources, library, tenant, options, parser)
    return diags


def compile_policy(
    sources: Mapping[str, str],
    *,
    library: Mapping[str, str] = _NO_LIBRARY,
    tenant: str = "",
    options: CompileOptions = _DEFAULT_OPTIONS,
) -> CompiledPolicy:
    """Compile a tenant's files into an immutable policy; raises PolicyError on any error."""
    with _gc_paused():
        return _compile(sources, library, tenant, options)


def _compile(
    sources: Mapping[str, str], library: Mapping[str, str], tenant: str, options: CompileOptions
) -> CompiledPolicy:
    checked, diags = _check(sources, library, tenant, options)
    errors = [d for d in diags if d.is_error]
    if errors or checked is None:
        raise PolicyError(errors)
    generated = generate(checked)
    namespace = dict(_RUNTIME)
    namespace.update(generated.namespace)
    filename = f"<ringfence policy {tenant or '?'}>"
    first = next(iter(sorted(sources)), "<policy>")
    _run(generated.main, filename, namespace, first)
    explain = _LazyExplain(generated.explain, filename, namespace, first)
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
        _explain=explain,
    )
