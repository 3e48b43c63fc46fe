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
        "join_key",
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
        "local_hour",
        "local_weekday",
        "get",
        "unknown",
        "matched",
        "override",
        "failed",
        "trace",
        "c",
        "m",
        "d",
        "err",
        "TIMEZONE",
    }
)
_NUMBERED = re.compile(r"(?:a|l|in|t|p|SET|AGG|RE)_[0-9]{1,6}")
FUNCTIONS = frozenset({"plan", "evaluate", "explain"})
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
_KEYWORDS = frozenset({"failed", "default", "review_score", "block_score"})
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


def verify(tree: py.Module) -> None:
    """Raise :class:`UnsafeTree` unless every node of ``tree`` is one the generator emits."""
    for node in py.walk(tree):
        if not isinstance(node, _NODES):
            raise UnsafeTree(f"node type {type(node).__name__} is not allowed")
        match node:
            case py.Name(id=name) if not _name_ok(name):
                raise UnsafeTree(f"name {name!r} is not allowed")
            case py.Attribute(attr=a) if a not in ATTRIBUTES:
                raise UnsafeTree(f"attribute {a!r} is not allowed")
            case py.FunctionDef(name=f) if f not in FUNCTIONS:
                raise UnsafeTree(f"function {f!r} is not allowed")
            case py.FunctionDef(decorator_list=d, returns=r) if d or r is not None:
                raise UnsafeTree("decorators and annotations are not allowed")
            case py.arg(arg=a, annotation=ann) if a not in LOCALS or ann is not None:
                raise UnsafeTree(f"parameter {a!r} is not allowed")
            case py.Constant(value=v) if not (v is None or isinstance(v, bool | int | float | str)):
                raise UnsafeTree(f"constant of type {type(v).__name__} is not allowed")
            case py.keyword(arg=k) if k not in _KEYWORDS:
                raise UnsafeTree(f"keyword {k!r} is not allowed")
            case py.ExceptHandler(type=t, name=n) if n is not None or not (
                isinstance(t, py.Name) and t.id == "Exception"
            ):
                raise UnsafeTree("only 'except Exception' is allowed")
            case py.Call(func=f):
                _check_call(f)


def _check_call(func: py.expr) -> None:
    if isinstance(func, py.Name) and (
        func.id in RUNTIME_NAMES or func.id in BUILTINS or func.id == "get"
    ):
        return  # `get` is the local alias of values.get
    if isinstance(func, py.Attribute) and func.attr in _METHODS:
        return
    raise UnsafeTree(f"call of {py.dump(func)} is not allowed")
