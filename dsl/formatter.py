"""Canonical layout for policy files: idempotent, keeps every comment, changes no meaning.

Layout:

- 4-space indents; lines of code stay within 100 columns wherever a break is possible
  (a long string, such as a reason, stays one string).
- An ``and``/``or`` chain that does not fit breaks one operand per line, the operator
  leading, indented under its clause (``when``, ``where``, ``risk``, a ``const``...). A
  parenthesised chain that does not fit opens its own block::

      when event.scene == "register"
          and (
              phone.segment_kind == "mvno"
              or phone.country_code != 86
          )

- Sets and argument lists that do not fit put one item per line, with a trailing comma.
- Parentheses: those precedence needs are always printed; those the author wrote around an
  operator inside another operator (``(a and b) or c``, ``not (x == 1)``) are kept, since
  they show grouping; others (around a name or call, around a whole clause, doubled) go.
- Comments stay with the code they were written next to: before an item or clause, at the
  end of an operand's line, or on their own line before an operand of a broken chain.

Structure, for the next piece of syntax: an expression node is one case in
:meth:`_Docs.bare`; a rule clause one case in :func:`_clause` (and a rank in
``_CLAUSE_ORDER``); a declaration one case in :meth:`_Printer.item`. Expressions are
layout documents (:mod:`dsl.layout`), so a new node that contains expressions wraps and
keeps comments without further work.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from dsl import ast
from dsl.layout import SOFT, Doc, Fill, Hard, IfBreak, Line, Suffix, group, nest, render
from dsl.parens import WrittenParens, children
from dsl.parser import parse_module

INDENT = "    "
MAX_LINE = 100

_OR, _AND, _NOT, _CMP, _SUM, _PRODUCT, _NEG, _POSTFIX, _ATOM = range(1, 10)
_LITERALS = (ast.IntLit, ast.DecimalLit, ast.StrLit, ast.DurationLit, ast.BoolLit)
_CLAUSE_ORDER = {
    ast.When: 0,
    ast.Then: 1,
    ast.Priority: 2,
    ast.Score: 3,
    ast.Risk: 4,
    ast.Tags: 5,
    ast.Reason: 6,
    ast.OnError: 7,
}


def format_source(text: str, path: str = "<input>") -> str:
    """The canonical form of ``text``; raises PolicyError if it does not parse."""
    module = parse_module(text, path)
    return _Printer(module.comments, WrittenParens(text)).module(module)


def expr_text(e: ast.Expr) -> str:
    """``e`` as one line of source, with the parentheses precedence needs."""
    docs = _Docs(None, _Attached())
    return " ".join(render(docs.expr(e, 0), width=1 << 30, indent=""))


# -- expressions -----------------------------------------------------------------------------


def _prec(e: ast.Expr) -> int:
    """How tightly ``e`` binds (dsl/grammar.lark, loosest first)."""
    match e:
        case ast.BoolOp(op="or"):
            return _OR
        case ast.BoolOp():
            return _AND
        case ast.Not():
            return _NOT
        case ast.Compare() | ast.In() | ast.Between():
            return _CMP
        case ast.BinOp(op="+" | "-"):
            return _SUM
        case ast.BinOp():
            return _PRODUCT
        case ast.Neg():
            return _NEG
        case ast.Attr() | ast.Method() | ast.Index():
            return _POSTFIX
    return _ATOM


@dataclass
class _Attached:
    """Comments inside one clause or declaration, given to the operands and items they
    were written next to (keys are ``id()`` of nodes)."""

    trailing: dict[int, list[str]] = field(default_factory=dict)
    leading: dict[int, list[str]] = field(default_factory=dict)


class _Docs:
    """Expressions as layout documents."""

    def __init__(self, written: WrittenParens | None, attached: _Attached) -> None:
        self.written = written
        self.attached = attached

    def expr(self, e: ast.Expr, need: int) -> Doc:
        """``e`` in a place that needs precedence ``need`` (0: anything goes there)."""
        prec = _prec(e)
        kept = (
            need > 0 and prec < _POSTFIX and self.written is not None and self.written.levels(e) > 0
        )
        if prec >= need and not kept:
            return self.bare(e)
        if isinstance(e, ast.BoolOp):
            return group("(", nest(SOFT, *self.chain(e)), SOFT, ")")
        return ("(", self.bare(e), ")")

    def bare(self, e: ast.Expr) -> Doc:
        """``e`` without parentheses around it: one case per kind of node."""
        match e:
            case ast.IntLit(value=v):
                return str(v)
            case ast.DecimalLit(text=t):
                return t
            case ast.PerRef(kind=k, arg=a):
                return f"per {_key(k, a)}"
            case ast.DurationLit(text=t):
                return t
            case ast.BoolLit(value=v):
                return "true" if v else "false"
            case ast.StrLit(raw=raw):
                return raw
            case ast.Name(name=n):
                return n
            case ast.Attr(obj=o, name=n):
                return (self.expr(o, _POSTFIX), f".{n}")
            case ast.Method(obj=o, name=n, args=args):
                return (self.expr(o, _POSTFIX), f".{n}", self.items("(", args, ")"))
            case ast.Call(func=f, args=args):
                return (f, self.items("(", args, ")"))
            case ast.Index(obj=o, key=k):
                return (self.expr(o, _POSTFIX), "[", self.expr(k, 0), "]")
            case ast.SetLit(items=items):
                return self.items("{", items, "}")
            case ast.Not(operand=o):
                return ("not ", self.expr(o, _NOT))
            case ast.Neg(operand=o):
                return ("-", self.expr(o, _NEG))
            case ast.BoolOp():
                first, *rest = self.chain(e)
                return group(nest(first), nest(*rest))
            case ast.Compare(op=op, left=lf, right=rt):
                return (self.expr(lf, _SUM), f" {op} ", self.expr(rt, _SUM))
            case ast.In(left=lf, right=rt, negated=neg):
                word = " not in " if neg else " in "
                return (self.expr(lf, _SUM), word, self.expr(rt, _SUM))
            case ast.Between(value=v, low=lo, high=hi):
                return (
                    self.expr(v, _SUM),
                    " between ",
                    self.expr(lo, _SUM),
                    " and ",
                    self.expr(hi, _SUM),
                )
            case ast.BinOp(op=op, left=lf, right=rt):
                own = _SUM if op in "+-" else _PRODUCT
                return (self.expr(lf, own), f" {op} ", self.expr(rt, own + 1))
        raise AssertionError(f"the formatter cannot print {type(e).__name__}: add a case")

    def chain(self, e: ast.BoolOp) -> list[Doc]:
        """Operands of ``a and b and c``: the first, then one (break, operator, operand)
        each; the caller decides how they are indented."""
        need = _AND if e.op == "or" else _NOT
        parts: list[Doc] = [self.element(e.operands[0], need)]
        for o in e.operands[1:]:
            lead: list[Doc] = []
            for text in self.attached.leading.get(id(o), ()):
                lead += [text, Hard()]
            parts.append((Line(), *lead, f"{e.op} ", self.element(o, need)))
        return parts

    def items(self, open_: str, items: Sequence[ast.Expr], close: str) -> Doc:
        """A bracketed list: flat if it fits; else literals packed as many to a line as
        fit (a set of segments), anything else one item per line; a trailing comma."""
        if not items:
            return open_ + close
        parts: list[Doc] = []
        for i, item in enumerate(items):
            lead: list[Doc] = []
            for text in self.attached.leading.get(id(item), ()):
                lead += [text, Hard()]
            # A trailing comment waits for the end of the line, so it follows the comma.
            last = i + 1 == len(items)
            parts.append((*lead, self.element(item, 0), "" if last else ","))
            if not last:
                parts.append(Line())
        literals = all(isinstance(x, _LITERALS) for x in items)
        body: Doc = Fill(tuple(parts)) if literals else tuple(parts)
        return group(open_, nest(SOFT, body, IfBreak(",")), SOFT, close)

    def element(self, e: ast.Expr, need: int) -> Doc:
        """An operand or item, and the comments written at the end of its line."""
        after = self.attached.trailing.get(id(e), ())
        return (self.expr(e, need), *(Suffix(c) for c in after))


def _elements(e: ast.Expr) -> list[tuple[ast.Expr, bool]]:
    """Every place in ``e`` where a line can break, with whether a comment may stand on
    its own line before it: operands of chains (not the first), items, arguments."""
    out: list[tuple[ast.Expr, bool]] = []
    stack = [e]
    while stack:
        node = stack.pop()
        match node:
            case ast.BoolOp(operands=ops):
                out += [(o, i > 0) for i, o in enumerate(ops)]
            case ast.SetLit(items=items) | ast.Call(args=items) | ast.Method(args=items):
                out += [(o, True) for o in items]
        stack.extend(children(node))
    return out


@dataclass(frozen=True, slots=True)
class _Place:
    """Where an operand or item was written (offsets are exclusive at the end)."""

    first_line: int
    start: int
    last_line: int
    end: int
    node: ast.Expr
    leading_ok: bool  # may a comment stand on its own line before it


def _clause(c: ast.Clause) -> tuple[str, ast.Expr | None]:
    """A rule clause as its head text and the expression after it (if any)."""
    match c:
        case ast.When(expr=e):
            return "when ", e
        case ast.Then(action=a, override=o):
            return f"then {a}" + (" override" if o else ""), None
        case ast.Risk(expr=e):
            return "risk ", e
        case ast.Tags(values=vals):
            return "tags " + ", ".join(v.raw for v in vals), None
        case ast.Reason(text=s):
            return f"reason {s.raw}", None
        case ast.OnError(value=v):
            return f"on_error {v}", None
        case ast.Priority(expr=e):
            return "priority ", e
        case ast.Score(expr=e):
            return "score ", e
    raise AssertionError(f"the formatter cannot print clause {type(c).__name__}: add a case")


def _key(kind: str, arg: str | None) -> str:
    """``number``, ``prefix 7``, ``list vip``, ``ip/24``."""
    if not arg:
        return kind
    return kind + (arg if arg.startswith("/") else f" {arg}")


def _keys(per: Sequence[ast.Per]) -> list[str]:
    """``per number`` for one key; several keys always in the grouped spelling
    ``per (number, app)``."""
    keys = [_key(p.kind, p.arg) for p in per]
    if len(keys) > 1:
        return [f"per ({', '.join(keys)})"]
    return [f"per {k}" for k in keys]


def _quote(text: str) -> str:
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\t", "\\t")
        .replace("{", "\\{")
        .replace("}", "\\}")
    )
    return f'"{escaped}"'


# -- layout ----------------------------------------------------------------------------------


@dataclass
class _Printer:
    comments: Sequence[ast.Comment]
    written: WrittenParens
    out: list[str] = field(default_factory=list)
    taken: set[int] = field(default_factory=set)  # indexes of comments already printed

    def __post_init__(self) -> None:
        # Comments come in source order; their lines let grab() find a range by bisection
        # (a scan per clause made a large, commented file quadratic).
        self.lines = [c.line for c in self.comments]

    def grab(self, first: int, last: int) -> list[ast.Comment]:
        """Unprinted comments on lines first..last, in order; marks them printed."""
        found = []
        lo = bisect.bisect_left(self.lines, first)
        hi = bisect.bisect_right(self.lines, last)
        for i in range(lo, hi):
            if i not in self.taken:
                self.taken.add(i)
                found.append(self.comments[i])
        return found

    def emit(self, text: str, trailing: Sequence[ast.Comment] = ()) -> None:
        suffix = "".join(f"  {c.text.rstrip()}" for c in trailing)
        self.out.append(text + suffix if text else suffix.lstrip())

    def module(self, m: ast.Module) -> str:
        prev_end = 0
        prev_kind: type | None = None
        for item in m.items:
            leading = self.grab(prev_end + 1, item.span.line - 1)
            top = leading[0].line if leading else item.span.line
            if prev_kind is not None:
                blank = top - prev_end > 1
                if (
                    blank
                    or type(item) is not prev_kind
                    or isinstance(item, ast.Rule | ast.Settings)
                ):
                    self.out.append("")
            for c in leading:
                self.emit(c.text.rstrip())
            self.item(item)
            prev_end = self.last_line(item)
            prev_kind = type(item)
        rest = self.grab(prev_end + 1, 1 << 30)
        if rest and self.out:
            self.out.append("")
        for c in rest:
            self.emit(c.text.rstrip())
        return "\n".join(self.out).rstrip() + "\n" if self.out else ""

    def item(self, item: ast.Item) -> None:
        """One declaration: one case per kind."""
        match item:
            case ast.Rule():
                self.rule(item)
            case ast.Settings():
                self.settings(item)
            case ast.Import(target=t):
                self.headed(f"import {_quote(t)}", None, (), item.span, 0)
            case ast.Const(name=n, value=v):
                self.headed(f"const {n} = ", v, (), item.span, 0, drop=True)
            case ast.Condition(name=n, value=v):
                self.headed(f"condition {n} = ", v, (), item.span, 0, drop=True)
            case ast.ListDecl(name=n, path=p, source=src):
                origin = _quote(p) if src == "file" else src
                self.headed(f"list {n} from {origin}", None, (), item.span, 0)
            case ast.Aggregate():
                args = [expr_text(a) for a in item.args]
                args += _keys(item.per)
                args += [f"over {o.text}" for o in item.over]
                head = f"aggregate {item.name} = {item.kind}({', '.join(args)})"
                self.headed(head, item.where, ("where ",), item.span, 0)
            case _:
                raise AssertionError(f"the formatter cannot print {type(item).__name__}")

    def headed(
        self,
        head: str,
        e: ast.Expr | None,
        keyword: tuple[str, ...],
        span: ast.Span,
        level: int,
        *,
        drop: bool = False,
    ) -> None:
        """``head`` then ``e``, wrapped at MAX_LINE, with the comments written inside.
        ``keyword`` (``("where ",)``) goes on the next line before ``e`` if all does not fit.
        ``drop``: if even the first operand of ``e`` does not fit after ``head`` (``const X =
        ``), ``e`` starts on the next line, one level in.
        """
        last = max(span.end_line, self.last_line(e)) if e is not None else span.end_line
        trailing = self.grab(last, last)
        attached = _Attached()
        if e is not None:
            loose = self.attach(e, span.line, last, attached)
        else:
            loose = self.grab(span.line, last)
        for c in loose:
            self.emit(INDENT * level + c.text.rstrip())
        doc: Doc = head
        if e is not None:
            body = _Docs(self.written, attached).expr(e, 0)
            first = e.operands[0] if isinstance(e, ast.BoolOp) else e
            if drop and len(INDENT * level + head + expr_text(first)) > MAX_LINE:
                head, keyword = head.rstrip(), ("",)
            doc = (head, group(nest(Line(), *keyword, body))) if keyword else (head, body)
        lines = render(doc, width=MAX_LINE, indent=INDENT, level=level)
        for text in lines[:-1]:
            self.emit(text)
        self.emit(lines[-1], trailing)

    def attach(self, e: ast.Expr, first: int, last: int, attached: _Attached) -> list[ast.Comment]:
        """Give each comment on lines ``first`` to ``last - 1`` to the operand or item it
        was written next to; returns those that fit nowhere (printed before)."""
        inside = self.grab(first, last - 1)
        if not inside:
            return []
        places = []
        for node, leading_ok in _elements(e):
            start, end, _ = self.written.wrapped(node)
            if start >= 0:
                places.append(
                    _Place(self._line(start), start, self._line(end - 1), end, node, leading_ok)
                )
        loose = []
        for c in inside:
            text = c.text.rstrip()
            ending = [p for p in places if p.last_line == c.line]
            if ending:
                # The operand that ends last on the line (the outermost, on a tie).
                best = max(ending, key=lambda p: (p.end, -p.start))
                attached.trailing.setdefault(id(best.node), []).append(text)
                continue
            after = [p for p in places if p.first_line > c.line]
            if after:
                nearest = min(after, key=lambda p: (p.start, -p.end))
                if nearest.leading_ok:
                    attached.leading.setdefault(id(nearest.node), []).append(text)
                    continue
            loose.append(c)
        return loose

    def last_line(self, node: ast.Item | ast.Expr) -> int:
        """The line ``node`` really ends on: a span can stop before a closing bracket."""
        end = node.span.end_line
        for part in [node] if isinstance(node, ast.Expr) else children(node):
            stop = self.written.wrapped(part)[1]
            if stop > 0:
                end = max(end, self._line(stop - 1))
        return end

    def _line(self, offset: int) -> int:
        return bisect.bisect_right(self.written.starts, offset)

    def settings(self, s: ast.Settings) -> None:
        self.emit("settings {", self.grab(s.span.line, s.span.line))
        for entry in s.entries:
            for c in self.grab(s.span.line + 1, entry.span.line - 1):
                self.emit(INDENT + c.text.rstrip())
            self.headed(f"{entry.name} = ", entry.value, (), entry.span, 1, drop=True)
        for c in self.grab(s.span.line + 1, s.span.end_line - 1):
            self.emit(INDENT + c.text.rstrip())
        self.emit("}", self.grab(s.span.end_line, s.span.end_line))

    def rule(self, r: ast.Rule) -> None:
        head = ("shadow " if r.shadow else "") + f"rule {r.name} {{"
        # A comment at the end of `rule r { when x  # why` is the clause's, not the rule's:
        # the header line's comments are its own only when no clause starts on it.
        shared = any(c.span.line == r.span.line for c in r.clauses)
        self.emit(head, () if shared else self.grab(r.span.line, r.span.line))
        order = len(_CLAUSE_ORDER)  # a clause missing from the table goes last
        clauses = sorted(r.clauses, key=lambda c: _CLAUSE_ORDER.get(type(c), order))
        for clause in clauses:
            for c in self.grab(r.span.line + 1, clause.span.line - 1):
                self.emit(INDENT + c.text.rstrip())
            head_text, e = _clause(clause)
            self.headed(head_text, e, (), clause.span, 1)
        for c in self.grab(r.span.line + 1, r.span.end_line - 1):
            self.emit(INDENT + c.text.rstrip())
        self.emit("}", self.grab(r.span.end_line, r.span.end_line))
