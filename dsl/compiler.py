"""The public entry points: check or compile a tenant's policy from source texts."""

from __future__ import annotations

import ast as pyast
import gc
import marshal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import cast

from dsl import addresses, ast, cost, runtime, sandbox
from dsl.aggregates import AggregateRef
from dsl.checker import Checker, Unit
from dsl.codegen import Generated, generate
from dsl.decision import Action, Match, RuleTrace
from dsl.diagnostics import Diagnostic, PolicyError, Severity
from dsl.ir import CheckedPolicy
from dsl.lists import LabelUse, ListUse
from dsl.options import CompileOptions
from dsl.parser import parse_module
from dsl.patterns import Matcher, MatchMemo
from dsl.policy import CompiledPolicy, EvalFn, ListDecl, PlanFn, PolicyArtifact, RuleInfo

_NO_LIBRARY: Mapping[str, str] = MappingProxyType({})
# How a file's text becomes a module: parse_module, or (in the language server) a parser
# that reuses the unchanged parts of a file it has seen before. Same result either way.
ModuleParser = Callable[[str, str, int], ast.Module]


def _parse(text: str, path: str, max_depth: int) -> ast.Module:
    return parse_module(text, path, max_depth=max_depth)


_DEFAULT_OPTIONS = CompileOptions()
_ACTIONS = {
    "allow": Action.ALLOW,
    "review": Action.REVIEW,
    "block": Action.BLOCK,
    "": Action.UNSPECIFIED,
}

# What generated code may call; it gets nothing else. dsl.sandbox.verify holds the tree to
# exactly these names (and the generator's own locals) before anything is compiled.
_RUNTIME: dict[str, object] = {
    "AggregateRef": AggregateRef,
    "Match": Match,
    "RuleTrace": RuleTrace,
    "ALLOW": Action.ALLOW,
    "REVIEW": Action.REVIEW,
    "BLOCK": Action.BLOCK,
    "NO_ACTION": Action.UNSPECIFIED,
    "EMPTY_LIST": runtime.EMPTY_LIST,
    "masked": runtime.masked,
    "label": runtime.label,
    "listed": runtime.listed,
    "ip_network": addresses.ip_network,
    "local_time": runtime.local_time,
    "add": runtime.add,
    "sub": runtime.sub,
    "mul": runtime.mul,
    "div": runtime.div,
    "dmul": runtime.dmul,
    "ddiv": runtime.ddiv,
    "fmt": runtime.fmt,
    "fmt_decimal": runtime.fmt_decimal,
    "fmt_duration": runtime.fmt_duration,
    "decide": runtime.decide,
    "detail": runtime.detail,
    "join_key": runtime.join_key,
    "number": runtime.number,
    "amount": runtime.amount,
    "unknown_reason": runtime.unknown_reason,
    "PENDING": runtime.PENDING,
    "past": runtime.past,
    "__builtins__": {"int": int, "len": len, "frozenset": frozenset, "Exception": Exception},
}
assert set(_RUNTIME) - {"__builtins__"} == sandbox.RUNTIME_NAMES
assert set(_RUNTIME["__builtins__"]) == sandbox.BUILTINS  # type: ignore[call-overload]


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


def _code(tree: pyast.Module, filename: str, first: str) -> bytes:
    """Verify a generated tree against the allow-list and compile it to marshalled code."""
    try:
        sandbox.verify(tree)
    except sandbox.UnsafeTree as err:
        # A generator bug, never the author's: refuse rather than compile something odd.
        raise PolicyError(
            [Diagnostic(first, 1, 1, Severity.ERROR, f"internal error: unsafe policy code ({err})")]
        ) from None
    try:
        return marshal.dumps(compile(tree, filename, "exec", dont_inherit=True, optimize=2))
    # A MemoryError is left to the caller: in a worker it is the memory budget's to report.
    except (SyntaxError, RecursionError, ValueError) as err:
        raise PolicyError(
            [Diagnostic(first, 1, 1, Severity.ERROR, f"policy too complex to compile: {err}")]
        ) from None


def _exec(code: bytes, namespace: dict[str, object]) -> None:
    # The code object comes from _code: a verified tree, compiled by this same Python.
    exec(marshal.loads(code), namespace)


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
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > options.max_source_bytes:
            diags.append(
                Diagnostic(
                    path,
                    1,
                    1,
                    Severity.ERROR,
                    f"file is {size} bytes; a policy file holds at most {options.max_source_bytes}",
                )
            )
            return None
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


def _shortened(diag: Diagnostic, limit: int) -> Diagnostic:
    """A diagnostic whose message and path fit ``limit`` characters: messages quote what
    the author wrote, and a check's messages travel in replies, logs and status fields."""
    if len(diag.message) <= limit and len(diag.path) <= limit:
        return diag
    return replace(diag, message=_cut(diag.message, limit), path=_cut(diag.path, limit))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _at(span: ast.Span, message: str) -> Diagnostic:
    return Diagnostic(
        span.path, span.line, span.column, Severity.ERROR, message, span.end_line, span.end_column
    )


@dataclass(frozen=True, slots=True)
class CheckReport:
    """A check's diagnostics and what it counted against the policy-wide limits
    (``CompileOptions.max_aggregate_reads`` and ``max_policy_nodes``): tools that check part
    of a policy again (the language server's quick check) need them to know whether the
    whole would reach a limit."""

    diagnostics: tuple[Diagnostic, ...]
    aggregate_windows: int  # declared, ago() and sustained() windows, age() keys
    expression_nodes: int  # in all rules' conditions, after expansion
    truncated: bool  # more than max_diagnostics: the last one says how many were left out
    # LIST.label("name") uses, for a caller that has the lists to check them against.
    label_uses: tuple[LabelUse, ...] = ()
    # The cost model's estimate of one evaluation (dsl.cost), when the policy checked.
    cost: cost.PolicyCost | None = None
    # `phone in LIST` / `event.ip in LIST`, checked against what each list holds.
    list_uses: tuple[ListUse, ...] = ()


def _check(
    sources: Mapping[str, str],
    library: Mapping[str, str],
    tenant: str,
    options: CompileOptions,
    parser: ModuleParser = _parse,
) -> tuple[CheckedPolicy | None, CheckReport]:
    units, diags = _load(sources, library, options, parser)
    checker = Checker(units, tenant, options)
    try:
        checked: CheckedPolicy | None = checker.check()
    except RecursionError:
        # Constants and conditions resolve recursively; a chain thousands long is not a
        # policy anyone writes, and is refused rather than reported as an internal error.
        first = next(iter(sorted(sources)), "<policy>")
        message = "constants or conditions depend on each other in a chain too long to check"
        checked = None
        diags.append(Diagnostic(first, 1, 1, Severity.ERROR, message))
    diags.extend(checker.diags)
    estimate: cost.PolicyCost | None = None
    if checked is not None and not any(d.is_error for d in diags):
        # The cost of a policy with errors would be the cost of something else.
        estimate = cost.estimate(checked)
        first = next(iter(sorted(sources)), "<policy>")
        over = cost.budget_diagnostic(estimate, options.cost_budget, first)
        if over is not None:
            diags.append(over)
    ordered = sorted(
        set(_shortened(d, options.max_message_chars) for d in diags), key=Diagnostic.sort_key
    )
    limit = options.max_diagnostics
    truncated = len(ordered) > limit
    if truncated:
        # A pathological file can make thousands of findings; nobody reads past the first
        # few hundred, and every one costs a rendered source line.
        last = ordered[limit - 1]
        ordered = [
            *ordered[:limit],
            Diagnostic(
                last.path,
                last.line,
                last.column,
                Severity.ERROR,
                f"too many problems: {len(ordered) - limit} more not shown",
            ),
        ]
    report = CheckReport(
        tuple(ordered),
        checker.aggregates.window_count,
        checker.policy_nodes,
        truncated,
        checked.label_uses if checked is not None else (),
        estimate,
        checked.list_uses if checked is not None else (),
    )
    return checked, report


def check_policy(
    sources: Mapping[str, str],
    *,
    library: Mapping[str, str] = _NO_LIBRARY,
    tenant: str = "",
    options: CompileOptions = _DEFAULT_OPTIONS,
    parser: ModuleParser = _parse,
) -> tuple[Diagnostic, ...]:
    """Every diagnostic (errors and warnings) for these files; never raises on bad input."""
    return check_policy_report(
        sources, library=library, tenant=tenant, options=options, parser=parser
    ).diagnostics


def check_policy_report(
    sources: Mapping[str, str],
    *,
    library: Mapping[str, str] = _NO_LIBRARY,
    tenant: str = "",
    options: CompileOptions = _DEFAULT_OPTIONS,
    parser: ModuleParser = _parse,
) -> CheckReport:
    """:func:`check_policy`, with what the check counted against the policy-wide limits."""
    with _gc_paused():
        _, report = _check(sources, library, tenant, options, parser)
    return report


def compile_policy(
    sources: Mapping[str, str],
    *,
    library: Mapping[str, str] = _NO_LIBRARY,
    tenant: str = "",
    options: CompileOptions = _DEFAULT_OPTIONS,
) -> CompiledPolicy:
    """Compile a tenant's files into an immutable policy; raises PolicyError on any error."""
    return load_policy(build_policy(sources, library=library, tenant=tenant, options=options))


def build_policy(
    sources: Mapping[str, str],
    *,
    library: Mapping[str, str] = _NO_LIBRARY,
    tenant: str = "",
    options: CompileOptions = _DEFAULT_OPTIONS,
) -> PolicyArtifact:
    """Parse, check, generate and compile, as plain data (see :class:`PolicyArtifact`);
    raises PolicyError on any error. This is the part worth running in a worker."""
    with _gc_paused():
        checked, diags, generated, estimate = _generate(sources, library, tenant, options)
        filename = f"<ringfence policy {tenant or '?'}>"
        first = next(iter(sorted(sources)), "<policy>")
        return PolicyArtifact(
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
                    r.priority,
                    r.score,
                )
                for r in checked.rules
            ),
            aggregates=tuple(a.spec for a in checked.aggregates),
            lists=tuple(
                ListDecl(name, path, ast.Span(file, line, col, line, col), from_state)
                for name, path, file, line, col, from_state in checked.lists
            ),
            timezone=checked.timezone,
            patterns=checked.patterns,
            combining=checked.combining,
            main_code=_code(generated.main, filename, first),
            warnings=tuple(d for d in diags if not d.is_error),
            label_uses=checked.label_uses,
            cost=estimate.total,
            reads_ip=checked.uses_ip,
            list_uses=checked.list_uses,
        )


def load_policy(artifact: PolicyArtifact) -> CompiledPolicy:
    """The live policy from an artifact: runs the module code, which only defines
    constants and functions. Cheap, so it can run where the artifact is used."""
    namespace = dict(_RUNTIME)
    namespace.update({f"AGG_{i}": spec for i, spec in enumerate(artifact.aggregates)})
    memo = MatchMemo()
    namespace.update({f"RE_{i}": Matcher(p, memo, i) for i, p in enumerate(artifact.patterns)})
    _exec(artifact.main_code, namespace)
    return CompiledPolicy(
        tenant=artifact.tenant,
        rules=artifact.rules,
        aggregates=artifact.aggregates,
        lists=artifact.lists,
        timezone=artifact.timezone,
        warnings=artifact.warnings,
        combining=artifact.combining,
        label_uses=artifact.label_uses,
        cost=artifact.cost,
        reads_ip=artifact.reads_ip,
        list_uses=artifact.list_uses,
        _plan=cast(PlanFn, namespace["plan"]),
        _evaluate=cast(EvalFn, namespace["evaluate"]),
    )


def generated_python(
    sources: Mapping[str, str],
    *,
    library: Mapping[str, str] = _NO_LIBRARY,
    tenant: str = "",
    options: CompileOptions = _DEFAULT_OPTIONS,
) -> str:
    """The generated module as readable Python (``ast.unparse``), for people and golden
    files; what runs is compiled from the same tree, never from this text."""
    with _gc_paused():
        _, _, generated, _ = _generate(sources, library, tenant, options)
    return generated.source


def _generate(
    sources: Mapping[str, str], library: Mapping[str, str], tenant: str, options: CompileOptions
) -> tuple[CheckedPolicy, tuple[Diagnostic, ...], Generated, cost.PolicyCost]:
    checked, report = _check(sources, library, tenant, options)
    diags = report.diagnostics
    errors = [d for d in diags if d.is_error]
    if errors or checked is None or report.cost is None:
        raise PolicyError(errors)
    generated = generate(checked, cost.checkpoints(report.cost.rules))
    return checked, diags, generated, report.cost
