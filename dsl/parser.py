"""Source text -> :class:`dsl.ast.Module`, and the ONE place Lark errors become diagnostics.

Lark's LALR parser is iterative, so any input parses without recursion; the tree is then
measured with an explicit stack and rejected if nested deeper than ``max_depth`` BEFORE the
(recursive) conversion to AST nodes runs. Comments are collected by a lexer callback so the
formatter can keep them.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
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
from dsl.diagnostics import Diagnostic, PolicyError, Severity, Suggestion
from dsl.durations import format_duration

DEFAULT_MAX_DEPTH = 32
# Policies hold 64-bit integers; names and strings have sane lengths (a 1 MB name would make
# every did-you-mean quadratic).
INT_MAX = 2**63 - 1
MAX_NAME = 128

_sink = threading.local()


def _collect_comment(token: Token) -> None:
    bucket: list[ast.Comment] | None = getattr(_sink, "comments", None)
    if bucket is not None:
        bucket.append(ast.Comment(str(token), token.line or 0, token.column or 0))


def _check_name(token: Token) -> Token:
    if len(token) > MAX_NAME:
        bucket: list[Token] | None = getattr(_sink, "long_names", None)
        if bucket is not None:
            bucket.append(token)
    return token


_LARK = Lark(
    resources.files("dsl").joinpath("grammar.lark").read_text(encoding="utf-8"),
    parser="lalr",
    # The basic lexer reserves keywords everywhere, so `when x == then` reports the
    # misplaced `then` instead of reading it as a name.
    lexer="basic",
    # Spans are computed from tokens on demand: Lark's propagate_positions doubles the
    # parse time of a large policy.
    propagate_positions=False,
    maybe_placeholders=True,
    start=["start", "expr"],
    lexer_callbacks={"COMMENT": _collect_comment, "NAME": _check_name},
)

# Words for terminals in "expected ..." messages; literal keywords print as themselves.
_TERMINAL_WORDS = {
    "NAME": "a name",
    "INT": "a number",
    "DECIMAL": "a decimal",
    "STRING": "a string",
    "RAW_STRING": "a raw string",
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
        "per_ref",
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


_EXPR_START = frozenset(
    {"NAME", "INT", "DECIMAL", "STRING", "RAW_STRING", "DURATION", "TRUE", "FALSE", "NOT"}
)


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
    if not words:
        return ""
    if len(words) == 1:
        return "; expected " + words[0]
    return "; expected " + ", ".join(words[:-1]) + " or " + words[-1]


# Operators from other languages, and what to write instead.
_CHAR_HINTS = {
    "&": "; write 'and' (not '&&')",
    "|": "; write 'or' (not '||')",
    "!": "; write 'not' (or '!=' to compare)",
    "'": "; strings use double quotes",
}
_WORD_HINTS = {"AND": "and", "OR": "or", "NOT": "not", "And": "and", "Or": "or", "Not": "not"}


def _token_hint(tok: Token, expected: set[str] | frozenset[str]) -> str:
    """What the author most likely meant, for mistakes people make every week."""
    text = str(tok)
    if tok.type == "EQUAL" and text == "=" and "COMPOP" in expected:
        return "; to compare, write '=='"
    if tok.type == "COMPOP" and "COMPOP" not in expected:
        return "; comparisons do not chain: write 'x between 1 and 5' or '1 < x and x < 5'"
    if tok.type == "NAME" and text in _WORD_HINTS:
        return f"; write '{_WORD_HINTS[text]}' in lower case"
    return ""


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
            msg = f"unexpected character {char!r}" + _CHAR_HINTS.get(char, "")
        return Diagnostic(path, line, col, Severity.ERROR, msg, line, col + 1)
    if isinstance(err, UnexpectedToken):
        tok = err.token
        expected = _expected_words(err.expected)
        if tok.type == "$END":
            lines = text.splitlines() or [""]
            line, col = len(lines), len(lines[-1]) + 1
            return Diagnostic(path, line, col, Severity.ERROR, f"unexpected end of file{expected}")
        end = col + max(1, len(str(tok)))
        if tok.type == "INT" and "DURATION" in err.expected and str(tok).isdigit():
            # `over 3600`: seconds written as a bare number.
            seconds = int(str(tok)[:12])
            fix = Suggestion(str(tok), format_duration(seconds))
            msg = (
                f"unexpected number '{tok}': a window is a duration such as 30m, 1h or 1d"
                f" ({tok} seconds is {fix.replacement}); did you mean '{fix.replacement}'?"
            )
            return Diagnostic(path, line, col, Severity.ERROR, msg, line, end, fix)
        hint = _token_hint(tok, err.expected)
        msg = f"unexpected {_describe_token(tok)}{hint or expected}"
        return Diagnostic(path, line, col, Severity.ERROR, msg, line, end)
    if isinstance(err, UnexpectedEOF):
        lines = text.splitlines() or [""]
        return Diagnostic(
            path, len(lines), len(lines[-1]) + 1, Severity.ERROR, "unexpected end of file"
        )
    return Diagnostic(path, line, col, Severity.ERROR, "syntax error")


def _lark_parse(text: str, path: str, start: str) -> tuple[Tree[Token], list[ast.Comment]]:
    comments: list[ast.Comment] = []
    long_names: list[Token] = []
    _sink.comments = comments
    _sink.long_names = long_names
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
        _sink.long_names = None
    if long_names:
        raise PolicyError(
            Diagnostic(
                path,
                tok.line or 1,
                tok.column or 1,
                Severity.ERROR,
                f"name '{str(tok)[:20]}...' is longer than {MAX_NAME} characters",
                tok.line or 1,
                (tok.column or 1) + 1,
            )
            for tok in long_names[:10]
        )
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
                tok = _edge(node, first=True)
                line = (tok.line or 1) if tok is not None else 1
                col = (tok.column or 1) if tok is not None else 1
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


# (declaration text, lines above it, path) -> its first syntax error, or None.
DeclarationParser = Callable[[str, int, str], "Diagnostic | None"]


def declaration_error(text: str, lines_above: int, path: str) -> Diagnostic | None:
    """The first syntax error of one declaration parsed on its own, in place (``text``
    starts on line ``lines_above + 1``), or None when it parses: how recovery parses each
    declaration of a broken file. Pure; the result for ``lines_above = n`` is the one for
    0, ``n`` lines lower (a caller may memoize it by text)."""
    try:
        _lark_parse("\n" * lines_above + text, path, "start")
    except PolicyError as err:
        return err.diagnostics[0]
    return None


def parse_module(
    text: str,
    path: str,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    declarations: DeclarationParser = declaration_error,
) -> ast.Module:
    """Parse one policy file; raises PolicyError with every syntax diagnostic found.
    ``declarations`` parses each declaration when recovering from an error (the language
    server passes a memoized :func:`declaration_error`)."""
    try:
        tree, comments = _lark_parse(text, path, "start")
    except PolicyError as err:
        raise PolicyError(_recover(text, path, declarations) or err.diagnostics) from None
    deep = _too_deep(tree, path, max_depth)
    if deep is not None:
        raise PolicyError([deep])
    builder = _Builder(path, text, max_depth)
    items = tuple(builder.item(child) for child in tree.children if isinstance(child, Tree))
    if builder.errors:
        raise PolicyError(builder.errors)
    return ast.Module(path, items, tuple(comments))


# A line that starts a declaration: where parsing can start afresh after an error.
_ITEM_START = re.compile(r"(?:shadow\s+)?(?:rule|const|condition|list|aggregate|import|settings)\b")


def _recover(
    text: str, path: str, declarations: DeclarationParser = declaration_error
) -> list[Diagnostic]:
    """Every syntax error of a broken file, not just the first: each declaration (from a
    line starting with a declaration keyword to the next) is parsed on its own, in place
    (earlier lines blanked, so positions stay true), and reports its first error."""
    lines = text.split("\n")
    starts = [i for i, ln in enumerate(lines) if _ITEM_START.match(ln)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    out: list[Diagnostic] = []
    for n, first in enumerate(starts):
        last = starts[n + 1] if n + 1 < len(starts) else len(lines)
        diag = declarations("\n".join(lines[first:last]), first, path)
        if diag is not None:
            opened = _unclosed_brace(lines, first, last)
            if opened is not None and (diag.line > last or "end of file" in diag.message):
                line, col = opened
                following = (
                    f" (line {last + 1} starts the next declaration)" if last < len(lines) else ""
                )
                diag = Diagnostic(
                    path,
                    line,
                    col,
                    Severity.ERROR,
                    f"'{{' is never closed{following}",
                    line,
                    col + 1,
                )
            out.append(diag)
    return out


def _unclosed_brace(lines: list[str], first: int, last: int) -> tuple[int, int] | None:
    """(line, column) of the last '{' in lines[first:last] with no '}', outside strings
    and comments; None if the braces balance."""
    stack: list[tuple[int, int]] = []
    for i in range(first, last):
        ln = lines[i]
        j, in_str = 0, False
        while j < len(ln):
            ch = ln[j]
            if in_str:
                if ch == "\\":
                    j += 1
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            elif ch == "#":
                break
            elif ch == "{":
                stack.append((i + 1, j + 1))
            elif ch == "}" and stack:
                stack.pop()
            j += 1
    return stack[-1] if stack else None


# -- Lark tree -> AST ------------------------------------------------------------------------

_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "{": "{", "}": "}"}


class _Builder:
    def __init__(
        self, path: str, text: str, max_depth: int, line_shift: int = 0, col_shift: int = 0
    ) -> None:
        # Shifts place an interpolation fragment (parsed alone) at its spot in the file.
        self.line_shift = line_shift
        self.col_shift = col_shift
        self.path = path
        self.text = text
        self.max_depth = max_depth
        self.errors: list[Diagnostic] = []

    def span(self, node: Tree[Token] | Token) -> ast.Span:
        ls, cs = self.line_shift, self.col_shift
        if isinstance(node, Token):
            return ast.Span(
                self.path,
                (node.line or 0) + ls,
                (node.column or 0) + cs,
                (node.end_line or 0) + ls,
                (node.end_column or 0) + cs,
            )
        first, last = _edge(node, first=True), _edge(node, first=False)
        if first is None or last is None:
            return ast.Span(self.path, 0, 0, 0, 0)
        return ast.Span(
            self.path,
            (first.line or 0) + ls,
            (first.column or 0) + cs,
            (last.end_line or 0) + ls,
            (last.end_column or 0) + cs,
        )

    def error(self, span: ast.Span, message: str) -> None:
        self.errors.append(Diagnostic.at(span, Severity.ERROR, message))

    # declarations

    def item(self, t: Tree[Token]) -> ast.Item:
        sp = self.span(t)
        kids = [c for c in t.children if not (isinstance(c, Token) and c.type in _SPAN_ONLY)]
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
            case "condition":
                return ast.Condition(str(kids[0]), self.expr(kids[1]), sp)
            case "list_decl":
                origin = _tok(kids[1])
                if origin.type == "NAME":
                    return ast.ListDecl(str(kids[0]), "", sp, source=str(origin))
                return ast.ListDecl(str(kids[0]), self.plain_string(origin), sp)
            case "aggregate":
                return self.aggregate(kids, sp)
            case "rule":
                return self.rule(kids, sp)
        raise AssertionError(f"unknown item {t.data}")  # grammar and builder disagree

    def aggregate(self, kids: Sequence[Tree[Token] | Token | None], sp: ast.Span) -> ast.Aggregate:
        name, kind, args_tree, where = kids
        args: list[ast.Expr] = []
        per: list[ast.Per] = []
        over: list[ast.Over] = []
        assert isinstance(args_tree, Tree)
        grouped = False
        for a in args_tree.children:
            if isinstance(a, Tree) and a.data in ("per_arg", "per_group"):
                grouped = grouped or a.data == "per_group"
                for key in a.children:
                    if isinstance(key, Tree):
                        per.append(self.per_key(key))
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
            grouped,
        )

    def per_key(self, t: Tree[Token]) -> ast.Per:
        if len(t.children) == 3:  # ip/24: the argument keeps its slash
            k, _, bits = t.children
            return ast.Per(str(k), f"/{bits}", self.span(t))
        k, arg = t.children
        if isinstance(arg, Token) and arg.type == "STRING":
            # `per attribute "user_id"`: kept as written for the formatter, and its text.
            return ast.Per(str(k), str(arg), self.span(t), self.plain_string(arg))
        return ast.Per(str(k), None if arg is None else str(arg), self.span(t))

    def rule(self, kids: Sequence[Tree[Token] | Token | None], sp: ast.Span) -> ast.Rule:
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
                case "priority":
                    clauses.append(ast.Priority(self.expr(cc[0]), csp))
                case "score":
                    clauses.append(ast.Score(self.expr(cc[0]), csp))
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
                        f"unknown escape '\\{esc}' in string (use \\\" \\\\ \\n \\t \\{{ \\}};"
                        ' a regular expression reads best as a raw string: r"\\d+")',
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
        # Strings are one line, so a fragment's positions shift by the column it starts at.
        shift = column - 1
        simple = _DOTTED.fullmatch(inner)
        if simple is not None and _KEYWORD_WORDS.isdisjoint(simple.group(1).split(".")):
            return self.dotted(simple, line, shift)

        def moved(d: Diagnostic) -> Diagnostic:
            message = d.message.replace("end of file", "end of the interpolation")
            return Diagnostic(
                d.path,
                line,
                d.column + shift,
                d.severity,
                message,
                line,
                (d.end_column + shift) if d.end_column else 0,
            )

        try:
            tree, _ = _lark_parse(inner, self.path, "expr")
        except PolicyError as err:
            self.errors.extend(moved(d) for d in err.diagnostics)
            return placeholder
        deep = _too_deep(tree, self.path, self.max_depth) if isinstance(tree, Tree) else None
        if deep is not None:
            self.errors.append(moved(deep))
            return placeholder
        fragment = _Builder(self.path, inner, self.max_depth, line - 1, shift)
        node = fragment.expr(tree)
        self.errors.extend(fragment.errors)
        return node

    def dotted(self, m: re.Match[str], line: int, shift: int) -> ast.Expr:
        """``{name}`` or ``{a.b}``: by far the most common interpolations, built directly."""
        col = shift + m.start(1) + 1
        parts = m.group(1).split(".")
        node: ast.Expr = ast.Name(
            parts[0], ast.Span(self.path, line, col, line, col + len(parts[0]))
        )
        end = col + len(parts[0])
        for part in parts[1:]:
            end += 1 + len(part)
            node = ast.Attr(node, part, ast.Span(self.path, line, col, line, end))
        return node

    # expressions

    def expr(self, t: Tree[Token] | Token | None) -> ast.Expr:
        """Build an expression; spans are joined from the children's (cheaper than walking
        the tree for every node)."""
        if t is None:  # pragma: no cover - the grammar never yields an empty expression
            raise AssertionError("empty expression")
        if isinstance(t, Token):
            return self.token_expr(t)
        k = t.children
        match t.data:
            case "int_" | "decimal" | "duration" | "string" | "true" | "false" | "name":
                return self.token_expr(_tok(k[0]), t.data)
            case "per_ref":
                first = k[0]
                assert isinstance(first, Tree)
                per = self.per_key(first)
                return ast.PerRef(per.kind, per.arg, _join(self.span(t), per.span), per.string)
            case "or_expr" | "and_expr":
                op = "or" if t.data == "or_expr" else "and"
                ops = tuple(self.expr(c) for c in k)
                return ast.BoolOp(op, ops, _join(ops[0].span, ops[-1].span))
            case "not_" | "neg":
                operand = self.expr(k[1])
                sp = _join(self.span(_tok(k[0])), operand.span)
                return ast.Not(operand, sp) if t.data == "not_" else ast.Neg(operand, sp)
            case "compare":
                left, right = self.expr(k[0]), self.expr(k[2])
                return ast.Compare(str(k[1]), left, right, _join(left.span, right.span))
            case "in_" | "not_in":
                left, right = self.expr(k[0]), self.expr(k[-1])
                return ast.In(left, right, t.data == "not_in", _join(left.span, right.span))
            case "between":
                v, lo, hi = self.expr(k[0]), self.expr(k[1]), self.expr(k[2])
                return ast.Between(v, lo, hi, _join(v.span, hi.span))
            case "sum" | "product":
                left = self.expr(k[0])
                for i in range(1, len(k), 2):
                    right = self.expr(k[i + 1])
                    left = ast.BinOp(str(k[i]), left, right, _join(left.span, right.span))
                return left
            case "attr":
                obj = self.expr(k[0])
                return ast.Attr(obj, str(k[1]), _join(obj.span, self.span(_tok(k[1]))))
            case "method":
                obj, args = self.expr(k[0]), self.args(k[2])
                end = args[-1].span if args else self.span(_tok(k[1]))
                return ast.Method(obj, str(k[1]), args, _join(obj.span, end, 1))
            case "call":
                args = self.args(k[1])
                name = self.span(_tok(k[0]))
                return ast.Call(str(k[0]), args, _join(name, args[-1].span if args else name, 1))
            case "index":
                obj, key = self.expr(k[0]), self.expr(k[1])
                return ast.Index(obj, key, _join(obj.span, key.span, 1))
            case "set_":
                items = self.args(k[0]) if k else ()
                sp = _join(items[0].span, items[-1].span, 1, 1) if items else self.span(t)
                return ast.SetLit(items, sp)
        raise AssertionError(f"unknown expression {t.data}")

    def args(self, t: Tree[Token] | Token | None) -> tuple[ast.Expr, ...]:
        if not isinstance(t, Tree):
            return ()
        return tuple(self.expr(c) for c in t.children)

    def integer(self, digits: str, sp: ast.Span) -> int:
        # Length first: int() of a few thousand digits raises (and is slow before that).
        if len(digits) > len(str(INT_MAX)) or int(digits) > INT_MAX:
            shown = digits if len(digits) <= 24 else digits[:20] + "..."
            self.error(sp, f"integer {shown} is out of range (at most {INT_MAX})")
            return 0
        return int(digits)

    def token_expr(self, tok: Token, kind: str = "") -> ast.Expr:
        sp = self.span(tok)
        match tok.type:
            case "INT":
                return ast.IntLit(self.integer(str(tok), sp), sp)
            case "DECIMAL":
                return ast.DecimalLit(str(tok), sp)
            case "DURATION":
                return ast.DurationLit(str(tok), sp)
            case "STRING":
                return self.string(tok)
            case "RAW_STRING":
                raw = str(tok)
                return ast.StrLit(raw, (raw[2:-1],), sp)
            case "TRUE":
                return ast.BoolLit(True, sp)
            case "FALSE":
                return ast.BoolLit(False, sp)
        return ast.Name(str(tok), sp)


_DOTTED = re.compile(r"\s*([A-Za-z_][A-Za-z_0-9]*(?:\.[A-Za-z_][A-Za-z_0-9]*)*)\s*")
_KEYWORD_WORDS = frozenset(_LITERALS.values())
_SPAN_ONLY = frozenset(
    {"SETTINGS", "IMPORT", "CONST", "CONDITION", "AGGREGATE", "RULE", "RBRACE", "RPAR", "LIST"}
)


def _edge(node: Tree[Token], *, first: bool) -> Token | None:
    """The first (or last) token under ``node``, found without recursion."""
    n: Tree[Token] | Token | None = node
    # Fast path: follow the first (last) present child down to a token.
    while isinstance(n, Tree):
        kids = n.children if first else n.children[::-1]
        n = next((k for k in kids if k is not None), None)
    if isinstance(n, Token):
        return n
    stack: list[Tree[Token] | Token | None] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Token):
            return n
        if isinstance(n, Tree):
            stack.extend(reversed(n.children) if first else n.children)
    return None


def _join(first: ast.Span, last: ast.Span, close: int = 0, open_: int = 0) -> ast.Span:
    """From the start of ``first`` to the end of ``last``, widened by brackets around."""
    return ast.Span(
        first.path,
        first.line,
        first.column - open_,
        last.end_line,
        last.end_column + close,
    )


def _tok(x: object) -> Token:
    assert isinstance(x, Token)
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
