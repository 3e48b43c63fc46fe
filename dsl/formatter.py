"""Canonical layout for policy files: idempotent, keeps every comment, changes no meaning.

Expressions are printed from the AST with the fewest parentheses that reparse to the same
tree; a rule's top-level ``and``/``or`` chain goes one operand per line. Comments stay
where they were relative to the code: before an item or clause, or at the end of its line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from dsl import ast
from dsl.parser import parse_module

INDENT = "    "
MAX_LINE = 100

_OR, _AND, _NOT, _CMP, _SUM, _PRODUCT, _NEG, _POSTFIX, _ATOM = range(1, 10)
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
    return _Printer(module.comments).module(module)


# -- expressions -----------------------------------------------------------------------------


def _prec(e: ast.Expr) -> int:
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


def expr_text(e: ast.Expr, need: int = 0) -> str:
    """``e`` as source, parenthesised if it binds looser than ``need``."""
    text = _expr(e)
    return f"({text})" if _prec(e) < need else text


def _expr(e: ast.Expr) -> str:
    match e:
        case ast.IntLit(value=v):
            return str(v)
        case ast.DecimalLit(text=t):
            return t
        case ast.PerRef(kind=k, arg=a):
            return f"per {k}" + (f" {a}" if a else "")
        case ast.DurationLit(text=t):
            return t
        case ast.BoolLit(value=v):
            return "true" if v else "false"
        case ast.StrLit(raw=raw):
            return raw
        case ast.Name(name=n):
            return n
        case ast.Attr(obj=o, name=n):
            return f"{expr_text(o, _POSTFIX)}.{n}"
        case ast.Method(obj=o, name=n, args=args):
            return f"{expr_text(o, _POSTFIX)}.{n}({_args(args)})"
        case ast.Call(func=f, args=args):
            return f"{f}({_args(args)})"
        case ast.Index(obj=o, key=k):
            return f"{expr_text(o, _POSTFIX)}[{expr_text(k)}]"
        case ast.SetLit(items=items):
            return "{" + _args(items) + "}"
        case ast.Not(operand=o):
            return f"not {expr_text(o, _NOT)}"
        case ast.Neg(operand=o):
            return f"-{expr_text(o, _NEG)}"
        case ast.BoolOp(op=op, operands=ops):
            need = _AND if op == "or" else _NOT
            return f" {op} ".join(expr_text(o, need) for o in ops)
        case ast.Compare(op=op, left=lf, right=rt):
            return f"{expr_text(lf, _SUM)} {op} {expr_text(rt, _SUM)}"
        case ast.In(left=lf, right=rt, negated=neg):
            word = "not in" if neg else "in"
            return f"{expr_text(lf, _SUM)} {word} {expr_text(rt, _SUM)}"
        case ast.Between(value=v, low=lo, high=hi):
            return f"{expr_text(v, _SUM)} between {expr_text(lo, _SUM)} and {expr_text(hi, _SUM)}"
        case ast.BinOp(op=op, left=lf, right=rt):
            own = _SUM if op in "+-" else _PRODUCT
            return f"{expr_text(lf, own)} {op} {expr_text(rt, own + 1)}"
    raise AssertionError(f"cannot print {type(e).__name__}")


def _args(args: Sequence[ast.Expr]) -> str:
    return ", ".join(expr_text(a) for a in args)


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
    out: list[str] = field(default_factory=list)
    taken: set[int] = field(default_factory=set)  # indexes of comments already printed

    def grab(self, first: int, last: int) -> list[ast.Comment]:
        """Unprinted comments on lines first..last, in order; marks them printed."""
        found = []
        for i, c in enumerate(self.comments):
            if i not in self.taken and first <= c.line <= last:
                self.taken.add(i)
                found.append(c)
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
            prev_end = item.span.end_line
            prev_kind = type(item)
        rest = self.grab(prev_end + 1, 1 << 30)
        if rest and self.out:
            self.out.append("")
        for c in rest:
            self.emit(c.text.rstrip())
        return "\n".join(self.out).rstrip() + "\n" if self.out else ""

    def item(self, item: ast.Item) -> None:
        match item:
            case ast.Rule():
                self.rule(item)
            case ast.Settings():
                self.settings(item)
            case _:
                lines = self.simple(item)
                inner = self.grab(item.span.line, item.span.end_line)
                last = [c for c in inner if c.line == item.span.end_line]
                for c in inner:
                    if c not in last:
                        self.emit(c.text.rstrip())
                for text in lines[:-1]:
                    self.emit(text)
                self.emit(lines[-1], last)

    def simple(self, item: ast.Item) -> list[str]:
        match item:
            case ast.Import(target=t):
                return [f"import {_quote(t)}"]
            case ast.Const(name=n, value=v):
                return [f"const {n} = {expr_text(v)}"]
            case ast.Condition(name=n, value=v):
                return [f"condition {n} = {expr_text(v)}"]
            case ast.ListDecl(name=n, path=p):
                return [f"list {n} from {_quote(p)}"]
            case ast.Aggregate():
                args = [expr_text(a) for a in item.args]
                keys = [p.kind + (f" {p.arg}" if p.arg else "") for p in item.per]
                if len(keys) > 1:  # several keys: always the grouped spelling
                    args.append(f"per ({', '.join(keys)})")
                else:
                    args += [f"per {k}" for k in keys]
                args += [f"over {o.text}" for o in item.over]
                head = f"aggregate {item.name} = {item.kind}({', '.join(args)})"
                if item.where is None:
                    return [head]
                where = f"where {expr_text(item.where)}"
                if len(head) + 1 + len(where) <= MAX_LINE:
                    return [f"{head} {where}"]
                return [head, INDENT + where]
        raise AssertionError(f"not a simple item: {type(item).__name__}")

    def settings(self, s: ast.Settings) -> None:
        self.emit("settings {", self.grab(s.span.line, s.span.line))
        for entry in s.entries:
            for c in self.grab(s.span.line + 1, entry.span.line - 1):
                self.emit(INDENT + c.text.rstrip())
            trailing = self.grab(entry.span.line, entry.span.end_line)
            self.emit(f"{INDENT}{entry.name} = {expr_text(entry.value)}", trailing)
        for c in self.grab(s.span.line + 1, s.span.end_line - 1):
            self.emit(INDENT + c.text.rstrip())
        self.emit("}", self.grab(s.span.end_line, s.span.end_line))

    def rule(self, r: ast.Rule) -> None:
        head = ("shadow " if r.shadow else "") + f"rule {r.name} {{"
        self.emit(head, self.grab(r.span.line, r.span.line))
        clauses = sorted(r.clauses, key=lambda c: _CLAUSE_ORDER[type(c)])
        for clause in clauses:
            for c in self.grab(r.span.line + 1, clause.span.line - 1):
                self.emit(INDENT + c.text.rstrip())
            self.clause(clause)
        for c in self.grab(r.span.line + 1, r.span.end_line - 1):
            self.emit(INDENT + c.text.rstrip())
        self.emit("}", self.grab(r.span.end_line, r.span.end_line))

    def fits(self, c: ast.When) -> bool:
        """A condition stays on one line if it fits and no comment sits inside it."""
        inside = any(
            i not in self.taken and c.span.line <= k.line < c.span.end_line
            for i, k in enumerate(self.comments)
        )
        return not inside and len(f"{INDENT}when {expr_text(c.expr)}") <= MAX_LINE

    def clause(self, c: ast.Clause) -> None:
        sp = c.span
        match c:
            case ast.When(expr=ast.BoolOp(op=op, operands=ops)) if not self.fits(c):
                need = _AND if op == "or" else _NOT
                lines = [(f"{INDENT}when {expr_text(ops[0], need)}", ops[0].span)]
                lines += [(f"{INDENT * 2}{op} {expr_text(o, need)}", o.span) for o in ops[1:]]
                # A comment at the end of an operand's last line stays with that operand.
                per_line = [self.grab(osp.end_line, osp.end_line) for _, osp in lines]
                for extra in self.grab(sp.line, sp.end_line):
                    self.emit(INDENT + extra.text.rstrip())
                for (text, _), trailing in zip(lines, per_line, strict=True):
                    self.emit(text, trailing)
                return
            case ast.When(expr=e):
                text = f"when {expr_text(e)}"
            case ast.Then(action=a, override=o):
                text = f"then {a}" + (" override" if o else "")
            case ast.Risk(expr=e):
                text = f"risk {expr_text(e)}"
            case ast.Tags(values=vals):
                text = "tags " + ", ".join(v.raw for v in vals)
            case ast.Reason(text=s):
                text = f"reason {s.raw}"
            case ast.OnError(value=v):
                text = f"on_error {v}"
            case ast.Priority(expr=e):
                text = f"priority {expr_text(e)}"
            case ast.Score(expr=e):
                text = f"score {expr_text(e)}"
        trailing = self.grab(sp.end_line, sp.end_line)
        for extra in self.grab(sp.line, sp.end_line - 1):
            self.emit(INDENT + extra.text.rstrip())
        self.emit(INDENT + text, trailing)
