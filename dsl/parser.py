"""Source text -> :class:`dsl.ast.Module`, and the ONE place Lark errors become diagnostics.

Lark's LALR parser is iterative, so any input parses without recursion; the tree is then
measured with an explicit stack and rejected if nested deeper than ``max_depth`` BEFORE the
(recursive) conversion to AST nodes runs. Comments are collected by a lexer callback so the
formatter can keep them.
"""

from __future__ import annotations

import threading
from importlib import resources

from lark import Lark, Token, Tree
from lark.exceptions import (
    LarkError,
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
)
from lark.lexer import PatternStr

from dsl import ast
from dsl.diagnostics import Diagnostic, PolicyError, Severity

DEFAULT_MAX_DEPTH = 32

_sink = threading.local()


def _collect_comment(token: Token) -> None:
    bucket: list[ast.Comment] | None = getattr(_sink, "comments", None)
    if bucket is not None:
        bucket.append(ast.Comment(str(token), token.line or 0, token.column or 0))


_LARK = Lark(
    resources.files("dsl").joinpath("grammar.lark").read_text(encoding="utf-8"),
    parser="lalr",
    # The basic lexer reserves keywords everywhere, so `when x == then` reports the
    # misplaced `then` instead of reading it as a name.
    lexer="basic",
    propagate_positions=True,
    maybe_placeholders=True,
    start=["start", "expr"],
    lexer_callbacks={"COMMENT": _collect_comment},
)

# Words for terminals in "expected ..." messages; literal keywords print as themselves.
_TERMINAL_WORDS = {
    "NAME": "a name",
    "INT": "a number",
    "STRING": "a string",
    "DURATION": "a duration",
    "COMPOP": "a comparison",
    "LIST": "'list'",
    "$END": "end of file",
}
_LITERALS: dict[str, str] = {
    t.name: t.pattern.value for t in _LARK.terminals if isinstance(t.pattern, PatternStr)
}

# Tree nodes that are expression levels, and how deep each one nests once built as AST.
_EXPR_NODES = frozenset(
    {
        "or_expr",
        "and_expr",
        "not_",
        "compare",
        "in_",
        "not_in",
        "between",
        "sum",
        "product",
        "neg",
        "attr",
        "method",
        "call",
        "index",
        "set_",
        "args",
        "set_items",
    }
)


def _describe_terminal(name: str) -> str:
    if name in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[name]
    if name in _LITERALS:
        return f"'{_LITERALS[name]}'"
    return name.lower()


def _describe_token(tok: Token) -> str:
    if tok.type == "$END":
        return "end of file"
    if tok.type in _LITERALS or tok.type == "LIST":
        return f"'{tok}'"
    word = _TERMINAL_WORDS.get(tok.type, tok.type.lower()).removeprefix("a ")
    return f"{word} '{tok}'"


_EXPR_START = frozenset({"NAME", "INT", "STRING", "DURATION", "TRUE", "FALSE", "NOT"})


def _expected_words(expected: set[str] | frozenset[str]) -> str:
    names = set(expected)
    collapse = {"NAME", "INT", "STRING"} <= names
    if collapse:
        # Everything that can start an expression reads better as one word.
        starts = {n for n in names if n in _EXPR_START or _LITERALS.get(n) in ("(", "-", "{")}
        names -= starts
    words = sorted(
        {_describe_terminal(n) for n in names} | ({"an expression"} if collapse else set())
    )
    if len(words) > 8:
        words = [*words[:8], "..."]
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _syntax_diagnostic(err: UnexpectedInput, path: str, text: str) -> Diagnostic:
    line = err.line if isinstance(err.line, int) and err.line > 0 else 1
    col = err.column if isinstance(err.column, int) and err.column > 0 else 1
    if isinstance(err, UnexpectedCharacters):
        pos = err.pos_in_stream if isinstance(err.pos_in_stream, int) else -1
        char = text[pos] if 0 <= pos < len(text) else ""
        if char == '"':
            msg = "unterminated string (or an unbalanced '{' in an interpolation)"
        elif char == "{" or char == "}":
            msg = f"unexpected '{char}'"
        else:
            msg = f"unexpected character {char!r}"
        return Diagnostic(path, line, col, Severity.ERROR, msg, line, col + 1)
    if isinstance(err, UnexpectedToken):
        tok = err.token
        expected = _expected_words(err.expected)
        if tok.type == "$END":
            lines = text.splitlines() or [""]
            line, col = len(lines), len(lines[-1]) + 1
            return Diagnostic(
                path, line, col, Severity.ERROR, f"unexpected end of file; expected {expected}"
            )
        end = col + max(1, len(str(tok)))
        msg = f"unexpected {_describe_token(tok)}; expected {expected}"
        return Diagnostic(path, line, col, Severity.ERROR, msg, line, end)
    if isinstance(err, UnexpectedEOF):
        lines = text.splitlines() or [""]
        return Diagnostic(
            path, len(lines), len(lines[-1]) + 1, Severity.ERROR, "unexpected end of file"
        )
    return Diagnostic(path, line, col, Severity.ERROR, "syntax error")


def _lark_parse(text: str, path: str, start: str) -> tuple[Tree[Token], list[ast.Comment]]:
    comments: list[ast.Comment] = []
    _sink.comments = comments
    try:
        tree = _LARK.parse(text, start=start)
    except UnexpectedInput as err:
        raise PolicyError([_syntax_diagnostic(err, path, text)]) from None
    except LarkError as err:  # any other Lark failure is still a syntax problem, not a crash
        raise PolicyError(
            [Diagnostic(path, 1, 1, Severity.ERROR, f"syntax error: {err}")]
        ) from None
    finally:
        _sink.comments = None
    return tree, comments


def _too_deep(tree: Tree[Token], path: str, max_depth: int) -> Diagnostic | None:
    """Measure expression nesting with an explicit stack (no recursion)."""
    stack: list[tuple[Tree[Token] | Token, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, Tree):
            continue
        if node.data in _EXPR_NODES:
            # An arithmetic chain becomes left-nested binary nodes: one level per operator.
            extra = (len(node.children) // 2) if node.data in ("sum", "product") else 1
            depth += extra
            if depth > max_depth:
                meta = node.meta
                line = getattr(meta, "line", 1)
                col = getattr(meta, "column", 1)
                return Diagnostic(
                    path,
                    line,
                    col,
                    Severity.ERROR,
                    f"expression nested too deeply (more than {max_depth} levels)",
                    line,
                    col + 1,
                )
        stack.extend((child, depth) for child in node.children if isinstance(child, Tree))
    return None


def parse_module(text: str, path: str, *, max_depth: int = DEFAULT_MAX_DEPTH) -> ast.Module:
    """Parse one policy file; raises PolicyError with every syntax diagnostic found."""
    tree, comments = _lark_parse(text, path, "start")
    deep = _too_deep(tree, path, max_depth)
    if deep is not None:
        raise PolicyError([deep])
    builder = _Builder(path, text, max_depth)
    items = tuple(builder.item(child) for child in tree.children if isinstance(child, Tree))
    if builder.errors:
        raise PolicyError(builder.errors)
    return ast.Module(path, items, tuple(comments))


# -- Lark tree -> AST ------------------------------------------------------------------------

_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "{": "{", "}": "}"}


class _Builder:
    def __init__(self, path: str, text: str, max_depth: int) -> None:
        self.path = path
        self.text = text
        self.max_depth = max_depth
        self.errors: list[Diagnostic] = []

    def span(self, node: Tree[Token] | Token) -> ast.Span:
        if isinstance(node, Token):
            return ast.Span(
                self.path,
                node.line or 0,
                node.column or 0,
                node.end_line or 0,
                node.end_column or 0,
            )
        m = node.meta
        if getattr(m, "empty", True):
            return ast.Span(self.path, 0, 0, 0, 0)
        return ast.Span(self.path, m.line, m.column, m.end_line, m.end_column)

    def error(self, span: ast.Span, message: str) -> None:
        self.errors.append(
            Diagnostic(
                span.path,
                span.line,
                span.column,
                Severity.ERROR,
                message,
                span.end_line,
                span.end_column,
            )
        )

    # declarations

    def item(self, t: Tree[Token]) -> ast.Item:
        sp = self.span(t)
        kids = t.children
        match t.data:
            case "settings":
                entries = tuple(
                    ast.Setting(str(s.children[0]), self.expr(s.children[1]), self.span(s))
                    for s in kids
                    if isinstance(s, Tree)
                )
                return ast.Settings(entries, sp)
            case "import_":
                return ast.Import(self.plain_string(_tok(kids[0])), sp)
            case "const":
                return ast.Const(str(kids[0]), self.expr(kids[1]), sp)
            case "list_decl":
                return ast.ListDecl(str(kids[1]), self.plain_string(_tok(kids[2])), sp)
            case "aggregate":
                return self.aggregate(t, sp)
            case "rule":
                return self.rule(t, sp)
        raise AssertionError(f"unknown item {t.data}")  # grammar and builder disagree

    def aggregate(self, t: Tree[Token], sp: ast.Span) -> ast.Aggregate:
        name, kind, args_tree, where = t.children
        args: list[ast.Expr] = []
        per: list[ast.Per] = []
        over: list[ast.Over] = []
        assert isinstance(args_tree, Tree)
        for a in args_tree.children:
            if isinstance(a, Tree) and a.data == "per_arg":
                k, arg = a.children
                per.append(ast.Per(str(k), None if arg is None else str(arg), self.span(a)))
            elif isinstance(a, Tree) and a.data == "over_arg":
                tok = _tok(a.children[0])
                over.append(ast.Over(str(tok), tok.type == "DURATION", self.span(a)))
            else:
                args.append(self.expr(a))
        where_expr = None
        if isinstance(where, Tree):
            where_expr = self.expr(where.children[0])
        return ast.Aggregate(
            str(name),
            str(kind),
            tuple(args),
            tuple(per),
            tuple(over),
            where_expr,
            sp,
            self.span(_tok(kind)),
        )

    def rule(self, t: Tree[Token], sp: ast.Span) -> ast.Rule:
        kids = t.children
        shadow = kids[0] is not None
        name_tok = _tok(kids[1])
        clauses: list[ast.Clause] = []
        for c in kids[2:]:
            if not isinstance(c, Tree):
                continue
            csp = self.span(c)
            cc = c.children
            match c.data:
                case "when":
                    clauses.append(ast.When(self.expr(cc[0]), csp))
                case "then":
                    clauses.append(ast.Then(str(cc[0]), cc[1] is not None, csp))
                case "risk":
                    clauses.append(ast.Risk(self.expr(cc[0]), csp))
                case "tags":
                    clauses.append(ast.Tags(tuple(self.string(_tok(x)) for x in cc), csp))
                case "reason":
                    clauses.append(ast.Reason(self.string(_tok(cc[0])), csp))
                case "on_error":
                    clauses.append(ast.OnError(str(cc[0]), csp))
        return ast.Rule(str(name_tok), shadow, tuple(clauses), sp, self.span(name_tok))

    # strings

    def plain_string(self, tok: Token) -> str:
        s = self.string(tok)
        if not s.is_plain:
            self.error(s.span, "interpolation '{...}' is only allowed in reasons")
        return s.value

    def string(self, tok: Token) -> ast.StrLit:
        raw = str(tok)
        sp = self.span(tok)
        parts: list[str | ast.Expr] = []
        buf: list[str] = []
        i, n = 1, len(raw) - 1  # inside the quotes
        while i < n:
            ch = raw[i]
            if ch == "\\":
                esc = raw[i + 1] if i + 1 < n else ""
                if esc in _ESCAPES:
                    buf.append(_ESCAPES[esc])
                else:
                    col = sp.column + i
                    self.error(
                        ast.Span(self.path, sp.line, col, sp.line, col + 2),
                        f"unknown escape '\\{esc}' in string (use \\\" \\\\ \\n \\t \\{{ \\}})",
                    )
                i += 2
                continue
            if ch == "{":
                close = _matching_brace(raw, i)
                if buf:
                    parts.append("".join(buf))
                    buf = []
                parts.append(self.interpolation(raw[i + 1 : close], sp.line, sp.column + i + 1))
                i = close + 1
                continue
            buf.append(ch)
            i += 1
        if buf or not parts:
            parts.append("".join(buf))
        return ast.StrLit(raw, tuple(parts), sp)

    def interpolation(self, inner: str, line: int, column: int) -> ast.Expr:
        placeholder: ast.Expr = ast.StrLit(
            '""', ("",), ast.Span(self.path, line, column, line, column)
        )
        if not inner.strip():
            self.error(
                ast.Span(self.path, line, column - 1, line, column + len(inner) + 1),
                "empty interpolation '{}' (write \\{ for a literal brace)",
            )
            return placeholder
        # Pad so Lark reports positions in the file, not in the fragment.
        padded = "\n" * (line - 1) + " " * (column - 1) + inner
        try:
            tree, _ = _lark_parse(padded, self.path, "expr")
        except PolicyError as err:
            self.errors.extend(
                Diagnostic(
                    d.path,
                    d.line,
                    d.column,
                    d.severity,
                    d.message.replace("end of file", "end of the interpolation"),
                    d.end_line,
                    d.end_column,
                )
                for d in err.diagnostics
            )
            return placeholder
        deep = _too_deep(tree, self.path, self.max_depth) if isinstance(tree, Tree) else None
        if deep is not None:
            self.errors.append(deep)
            return placeholder
        return self.expr(tree)

    # expressions

    def expr(self, t: Tree[Token] | Token | None) -> ast.Expr:
        if t is None:  # pragma: no cover - the grammar never yields an empty expression
            raise AssertionError("empty expression")
        if isinstance(t, Token):
            return self.token_expr(t)
        sp = self.span(t)
        k = t.children
        match t.data:
            case "int_" | "duration" | "string" | "true" | "false" | "name":
                return self.token_expr(_tok(k[0]), t.data)
            case "or_expr" | "and_expr":
                op = "or" if t.data == "or_expr" else "and"
                return ast.BoolOp(op, tuple(self.expr(c) for c in k), sp)
            case "not_":
                return ast.Not(self.expr(k[1]), sp)
            case "neg":
                return ast.Neg(self.expr(k[1]), sp)
            case "compare":
                return ast.Compare(str(k[1]), self.expr(k[0]), self.expr(k[2]), sp)
            case "in_":
                return ast.In(self.expr(k[0]), self.expr(k[1]), False, sp)
            case "not_in":
                return ast.In(self.expr(k[0]), self.expr(k[2]), True, sp)
            case "between":
                return ast.Between(self.expr(k[0]), self.expr(k[1]), self.expr(k[2]), sp)
            case "sum" | "product":
                left = self.expr(k[0])
                for i in range(1, len(k), 2):
                    right = self.expr(k[i + 1])
                    rs = self.span(_tree_or_tok(k[i + 1]))
                    bsp = ast.Span(self.path, sp.line, sp.column, rs.end_line, rs.end_column)
                    left = ast.BinOp(str(k[i]), left, right, bsp)
                return left
            case "attr":
                return ast.Attr(self.expr(k[0]), str(k[1]), sp)
            case "method":
                return ast.Method(self.expr(k[0]), str(k[1]), self.args(k[2]), sp)
            case "call":
                return ast.Call(str(k[0]), self.args(k[1]), sp)
            case "index":
                return ast.Index(self.expr(k[0]), self.expr(k[1]), sp)
            case "set_":
                items = self.args(k[0]) if k else ()
                return ast.SetLit(items, sp)
        raise AssertionError(f"unknown expression {t.data}")

    def args(self, t: Tree[Token] | Token | None) -> tuple[ast.Expr, ...]:
        if not isinstance(t, Tree):
            return ()
        return tuple(self.expr(c) for c in t.children)

    def token_expr(self, tok: Token, kind: str = "") -> ast.Expr:
        sp = self.span(tok)
        match tok.type:
            case "INT":
                return ast.IntLit(int(str(tok)), sp)
            case "DURATION":
                return ast.DurationLit(str(tok), sp)
            case "STRING":
                return self.string(tok)
            case "TRUE":
                return ast.BoolLit(True, sp)
            case "FALSE":
                return ast.BoolLit(False, sp)
        return ast.Name(str(tok), sp)


def _tok(x: object) -> Token:
    assert isinstance(x, Token)
    return x


def _tree_or_tok(x: object) -> Tree[Token] | Token:
    assert isinstance(x, Tree | Token)
    return x


def _matching_brace(raw: str, start: int) -> int:
    """Index of the '}' closing the '{' at ``start``; the lexer guarantees one exists."""
    i = start + 1
    in_str = False
    while i < len(raw):
        ch = raw[i]
        if in_str:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch == "}":
            return i
        i += 1
    return len(raw) - 1
