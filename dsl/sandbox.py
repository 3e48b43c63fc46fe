"""The allow-list every generated module passes before it is compiled.

The code generator builds trees in which user text can only be a ``Constant``; this module
checks that promise instead of trusting it. A tree that holds any node type, name,
attribute, call or constant the generator does not emit is refused with
:class:`UnsafeTree` — a bug in the generator, never something a policy author can fix, so
it is reported as an internal error and nothing is compiled.

It also defines what the compiled code may reach at run time: the names in
:data:`RUNTIME_NAMES` (given by the compiler's namespace) and four builtins.
"""

from __future__ import annotations

import ast as py
import re
from collections.abc import Callable
from typing import Any

# Names the compiler's namespace provides (helpers, constructors, constants).
RUNTIME_NAMES = frozenset(
    {
        "AggregateRef",
        "Match",
        "RuleTrace",
        "ALLOW",
        "REVIEW",
        "BLOCK",
        "NO_ACTION",
        "EMPTY_LIST",
        "masked",
        "label",
        "listed",
        "ip_network",
        "local_time",
        "add",
        "sub",
        "mul",
        "div",
        "dmul",
        "ddiv",
        "fmt",
        "fmt_decimal",
        "fmt_duration",
        "decide",
        "detail",
        "join_key",
        "number",
        "amount",
        "unknown_reason",
        # Per-evaluation memo: the value of a local not computed yet (codegen._Memo).
        "PENDING",
        # Raises runtime.EvaluationDeadline once the evaluation's deadline has passed.
        "past",
    }
)
BUILTINS = frozenset({"int", "len", "frozenset", "Exception"})
# Variables the generated functions bind; the rest are numbered (a_0, l_1, SET_2, ...).
LOCALS = frozenset(
    {
        "facts",
        "values",
        "lists",
        "phone",
        "event",
        "ip",
        "local_hour",
        "local_weekday",
        "get",
        "unknown",
        "matched",
        "override",
        "failed",
        "trace",
        "c",
        "TIMEZONE",
        "why",
        "deadline",
        "action",
    }
)
# a_ aggregate values, l_ lists, in_ memberships, n_ networks, t_/p_ temporaries, k_/m_
# named conditions and matches() results computed once per call (codegen._Memo).
_NUMBERED = re.compile(r"(?:a|l|in|n|t|p|k|m|SET|AGG|RE)_[0-9]{1,6}")
FUNCTIONS = frozenset({"plan", "evaluate"})
# Fields of the facts, and the string/list methods the generator calls.
ATTRIBUTES = frozenset(
    {
        "phone",
        "event",
        "tenant",
        "e164",
        "valid",
        "region",
        "number_type",
        "carrier",
        "segment_kind",
        "segment_prefix",
        "country_code",
        "national_number",
        "digits",
        "province",
        "province_name",
        "city",
        "city_name",
        "version",
        "country",
        "asn",
        "org",
        "scene",
        "app_id",
        "ip",
        "device_id",
        "occurred_at",
        "attributes",
        "get",
        "lower",
        "upper",
        "startswith",
        "endswith",
        "append",
        "search",
    }
)
_METHODS = frozenset({"get", "lower", "upper", "startswith", "endswith", "append", "search"})
_KEYWORDS = frozenset({"failed", "default", "review_score", "block_score", "decimals"})
_NODES: tuple[type[py.AST], ...] = (
    py.Module,
    py.FunctionDef,
    py.arguments,
    py.arg,
    py.Assign,
    py.Return,
    py.If,
    py.Try,
    py.ExceptHandler,
    py.Expr,
    py.Name,
    py.Load,
    py.Store,
    py.Constant,
    py.Attribute,
    py.Call,
    py.keyword,
    py.IfExp,
    py.BoolOp,
    py.And,
    py.Or,
    py.UnaryOp,
    py.Not,
    py.USub,
    py.BinOp,
    py.Add,
    py.Sub,
    py.Mult,
    py.FloorDiv,
    py.Compare,
    py.Eq,
    py.NotEq,
    py.Lt,
    py.LtE,
    py.Gt,
    py.GtE,
    py.In,
    py.NotIn,
    py.Is,
    py.IsNot,
    py.NamedExpr,
    py.Tuple,
    py.List,
    py.Subscript,
    py.Slice,
)


class UnsafeTree(Exception):
    """The generator produced something outside the allow-list: refuse to compile it."""


def _name_ok(name: str) -> bool:
    return (
        name in RUNTIME_NAMES
        or name in BUILTINS
        or name in LOCALS
        or _NUMBERED.fullmatch(name) is not None
    )


# For each allowed node type, the fields that can hold child nodes (lists or nodes).
# Fields that hold plain values (names, text, constants), not child nodes; and the
# context and operator fields, which hold data-free nodes checked in place (below).
_VALUE_FIELDS = frozenset(
    {"id", "attr", "name", "arg", "type_comment", "kind", "conversion", "ctx", "op", "ops"}
)
_OPERATORS = tuple(
    t
    for t in _NODES
    if issubclass(t, py.expr_context | py.operator | py.boolop | py.unaryop | py.cmpop)
)
_CHILDREN: dict[type[py.AST], tuple[str, ...]] = {
    t: tuple(
        f for f in t._fields if f not in _VALUE_FIELDS and not (t is py.Constant and f == "value")
    )
    for t in _NODES
}
_LOCATED = frozenset(t for t in _NODES if "lineno" in t._attributes)


def verify(tree: py.Module) -> None:
    """Raise :class:`UnsafeTree` unless every node of ``tree`` is one the generator emits.

    The same pass gives each statement and expression a position (line 1), which compile()
    needs and the generator does not track: one walk instead of two over a tree that has
    hundreds of thousands of nodes for a big policy.
    """
    stack: list[py.AST] = [tree]
    pop, push = stack.pop, stack.append
    children, checks, located = _CHILDREN, _CHECKS, _LOCATED
    while stack:
        node = pop()
        kind = type(node)
        fields = children.get(kind)
        if fields is None:
            raise UnsafeTree(f"node type {kind.__name__} is not allowed")
        check = checks.get(kind)
        if check is not None:
            check(node)
        if kind in located:
            node.lineno = 1  # type: ignore[attr-defined]
            node.col_offset = 0  # type: ignore[attr-defined]
        for f in fields:
            child = getattr(node, f)
            if type(child) is list:
                for c in child:
                    if isinstance(c, py.AST):
                        push(c)
            elif isinstance(child, py.AST):
                push(child)


def _check_operator(op: object) -> None:
    if not isinstance(op, _OPERATORS):
        raise UnsafeTree(f"operator {type(op).__name__} is not allowed")


def _check_name(node: py.Name) -> None:
    if not _name_ok(node.id):
        raise UnsafeTree(f"name {node.id!r} is not allowed")
    _check_operator(node.ctx)


def _check_attribute(node: py.Attribute) -> None:
    if node.attr not in ATTRIBUTES:
        raise UnsafeTree(f"attribute {node.attr!r} is not allowed")
    _check_operator(node.ctx)


def _check_ctx(node: py.Subscript | py.Tuple | py.List) -> None:
    _check_operator(node.ctx)


def _check_op(node: py.BinOp | py.BoolOp | py.UnaryOp) -> None:
    _check_operator(node.op)


def _check_compare(node: py.Compare) -> None:
    for op in node.ops:
        _check_operator(op)


def _check_function(node: py.FunctionDef) -> None:
    if node.name not in FUNCTIONS:
        raise UnsafeTree(f"function {node.name!r} is not allowed")
    if node.decorator_list or node.returns is not None:
        raise UnsafeTree("decorators and annotations are not allowed")


def _check_arg(node: py.arg) -> None:
    if node.arg not in LOCALS or node.annotation is not None:
        raise UnsafeTree(f"parameter {node.arg!r} is not allowed")


def _check_constant(node: py.Constant) -> None:
    v = node.value
    if not (v is None or isinstance(v, bool | int | float | str)):
        raise UnsafeTree(f"constant of type {type(v).__name__} is not allowed")


def _check_keyword(node: py.keyword) -> None:
    if node.arg not in _KEYWORDS:
        raise UnsafeTree(f"keyword {node.arg!r} is not allowed")


def _check_handler(node: py.ExceptHandler) -> None:
    t = node.type
    if node.name is not None or not (isinstance(t, py.Name) and t.id == "Exception"):
        raise UnsafeTree("only 'except Exception' is allowed")


def _check_call_node(node: py.Call) -> None:
    _check_call(node.func)


_CHECKS: dict[type[py.AST], Callable[[Any], None]] = {
    py.Name: _check_name,
    py.Attribute: _check_attribute,
    py.FunctionDef: _check_function,
    py.arg: _check_arg,
    py.Constant: _check_constant,
    py.keyword: _check_keyword,
    py.ExceptHandler: _check_handler,
    py.Call: _check_call_node,
    py.Subscript: _check_ctx,
    py.Tuple: _check_ctx,
    py.List: _check_ctx,
    py.BinOp: _check_op,
    py.BoolOp: _check_op,
    py.UnaryOp: _check_op,
    py.Compare: _check_compare,
}


def _check_call(func: py.expr) -> None:
    if isinstance(func, py.Name) and (
        func.id in RUNTIME_NAMES or func.id in BUILTINS or func.id == "get"
    ):
        return  # `get` is the local alias of values.get
    if isinstance(func, py.Attribute) and func.attr in _METHODS:
        return
    raise UnsafeTree(f"call of {py.dump(func)} is not allowed")
