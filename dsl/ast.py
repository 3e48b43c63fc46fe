"""The policy syntax tree: frozen nodes, each with the Span it was written at.

Nodes are plain values built by :mod:`dsl.parser`; the checker resolves names and types
into :mod:`dsl.ir`, and the formatter prints them back. Positions are 1-based; the end
column is exclusive, as in Lark.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Span:
    path: str
    line: int
    column: int
    end_line: int
    end_column: int


NO_SPAN = Span("<none>", 0, 0, 0, 0)


# -- expressions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IntLit:
    value: int
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class DecimalLit:
    text: str  # as written, e.g. "0.25"; the checker turns it into fixed-point
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class DurationLit:
    text: str  # as written, e.g. "1h30m"; the checker validates the units
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class BoolLit:
    value: bool
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class StrLit:
    """A string; ``parts`` holds text and ``{expr}`` interpolations in order."""

    raw: str  # the source text including quotes, reprinted verbatim by the formatter
    parts: tuple[str | Expr, ...]
    span: Span = field(compare=False)

    @property
    def is_plain(self) -> bool:
        return all(isinstance(p, str) for p in self.parts)

    @property
    def value(self) -> str:
        """The text of a plain string (interpolations left out)."""
        return "".join(p for p in self.parts if isinstance(p, str))


@dataclass(frozen=True, slots=True)
class Name:
    name: str
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Attr:
    obj: Expr
    name: str
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Call:
    """``func(args)``: a built-in function such as ``sustained`` or ``age``."""

    func: str
    args: tuple[Expr, ...]
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class PerRef:
    """``per number`` as a function argument: ``age(per number)``."""

    kind: str
    arg: str | None
    span: Span = field(compare=False)
    string: str | None = None  # the argument's text when written as a string


@dataclass(frozen=True, slots=True)
class Method:
    """``obj.name(args)``: a helper on a value (``phone.prefix(7)``, ``hits.ago(1h)``)."""

    obj: Expr
    name: str
    args: tuple[Expr, ...]
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Index:
    obj: Expr
    key: Expr
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class SetLit:
    items: tuple[Expr, ...]
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Expr
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # "and" | "or"
    operands: tuple[Expr, ...]
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Compare:
    op: str  # == != < <= > >=
    left: Expr
    right: Expr
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class In:
    left: Expr
    right: Expr
    negated: bool
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Between:
    value: Expr
    low: Expr
    high: Expr
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class BinOp:
    op: str  # + - * /
    left: Expr
    right: Expr
    span: Span = field(compare=False)


Expr = (
    IntLit
    | DecimalLit
    | DurationLit
    | BoolLit
    | StrLit
    | Name
    | Attr
    | Call
    | PerRef
    | Method
    | Index
    | SetLit
    | Not
    | Neg
    | BoolOp
    | Compare
    | In
    | Between
    | BinOp
)


# -- declarations --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    value: Expr
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Settings:
    entries: tuple[Setting, ...]
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Import:
    target: str
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Const:
    name: str
    value: Expr
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Condition:
    """``condition NAME = expr``: a named boolean a rule can use like a const."""

    name: str
    value: Expr
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class ListDecl:
    name: str
    path: str  # "" for a list kept in state
    span: Span = field(compare=False)
    # Where the entries come from: "file" (``path``), "state", or the word written after
    # `from` when it is neither (the checker reports it).
    source: str = "file"


@dataclass(frozen=True, slots=True)
class Per:
    kind: str  # number | list | segment | prefix | device | ip | app | tenant | attribute
    arg: str | None  # list name, digit count, "/24" (per ip/24), or a string with its quotes
    span: Span = field(compare=False)
    string: str | None = None  # the argument's text when written as a string: attribute "k"


@dataclass(frozen=True, slots=True)
class Over:
    text: str  # a duration, "today", or a const name
    is_duration: bool
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Aggregate:
    name: str
    kind: str  # count | distinct | run
    args: tuple[Expr, ...]  # positional arguments (the field of distinct)
    per: tuple[Per, ...]  # one key, or several counted together (per (number, app))
    over: tuple[Over, ...]
    where: Expr | None
    span: Span = field(compare=False)
    kind_span: Span = field(compare=False)
    per_grouped: bool = False  # written `per (a, b)` rather than `per a, per b`


@dataclass(frozen=True, slots=True)
class When:
    expr: Expr
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Then:
    action: str
    override: bool
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Risk:
    expr: Expr
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Tags:
    values: tuple[StrLit, ...]
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Reason:
    text: StrLit
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class OnError:
    value: str
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Priority:
    expr: Expr
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class Score:
    expr: Expr
    span: Span = field(compare=False)


Clause = When | Then | Risk | Tags | Reason | OnError | Priority | Score


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    shadow: bool
    clauses: tuple[Clause, ...]
    span: Span = field(compare=False)
    name_span: Span = field(compare=False)


Item = Settings | Import | Const | Condition | ListDecl | Aggregate | Rule


@dataclass(frozen=True, slots=True)
class Comment:
    text: str  # including the leading '#'
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Module:
    path: str
    items: tuple[Item, ...]
    comments: tuple[Comment, ...] = ()
