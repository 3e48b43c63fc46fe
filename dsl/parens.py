"""Where the author wrote parentheses, and how far each expression really reaches.

The syntax tree drops grouping parentheses (they change no meaning), but the formatter
keeps those that show grouping (``(a and b) or c``). This module finds them in the source:
it tokenizes the text (strings and comments skipped), pairs the brackets, and answers, for
an expression, the source range it covers and how many parentheses enclose exactly it.

A bracket that calls a function (``f(``, ``x.m(``) is not grouping: it follows a name that
is not a keyword. Whatever this module gets wrong can only add or drop *redundant*
parentheses: the formatter always prints those that precedence needs.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import fields, is_dataclass

from dsl import ast

# The policy lexer's tokens, as far as brackets go: raw strings, strings (which may hold
# `{expr}` with strings of their own, as in dsl/grammar.lark), comments, words, then any
# one character.
_TOKEN = re.compile(
    r'(?P<raw>r"[^"\n]*")'
    r'|(?P<string>"(?:[^"\\\n{]|\\.|\{(?:[^"}\n\\]|"(?:[^"\\\n]|\\.)*")*\})*")'
    r"|(?P<comment>#[^\n]*)"
    r"|(?P<space>\s+)"
    r"|(?P<word>[A-Za-z0-9_]+)"
    r"|(?P<other>.)",
    re.DOTALL,
)
# Words after which "(" groups rather than calls.
KEYWORDS = frozenset(
    {
        "and",
        "or",
        "not",
        "in",
        "between",
        "when",
        "then",
        "risk",
        "where",
        "const",
        "over",
        "per",
        "priority",
        "score",
        "condition",
    }
)
_CLOSERS = {ast.Call: ")", ast.Method: ")", ast.SetLit: "}", ast.Index: "]"}


class WrittenParens:
    def __init__(self, text: str) -> None:
        self.starts = [0] + [m.end() for m in re.finditer(r"\n", text)]
        self.tokens: list[tuple[int, int, str]] = []  # start, end, text (no space/comments)
        for m in _TOKEN.finditer(text):
            if m.lastgroup not in ("space", "comment"):
                self.tokens.append((m.start(), m.end(), m.group()))
        self.token_starts = [t[0] for t in self.tokens]
        # (start, end) of what a grouping pair encloses -> (start, end) of the pair itself.
        self.pairs: dict[tuple[int, int], tuple[int, int]] = {}
        opened: list[tuple[int, bool]] = []  # token index, grouping?
        for i, (_, _, tok) in enumerate(self.tokens):
            if tok in "([{":
                before = self.tokens[i - 1][2] if i else ""
                calls = tok == "(" and _is_name(before) and before not in KEYWORDS
                opened.append((i, tok == "(" and not calls))
            elif tok in ")]}" and opened:
                j, grouping = opened.pop()
                if grouping and j + 1 < i:
                    inner = (self.tokens[j + 1][0], self.tokens[i - 1][1])
                    self.pairs[inner] = (self.tokens[j][0], self.tokens[i][1])
        self._extents: dict[int, tuple[int, int]] = {}

    def offset(self, line: int, column: int) -> int:
        return self.starts[line - 1] + column - 1 if 0 < line <= len(self.starts) else -1

    def wrapped(self, e: ast.Expr) -> tuple[int, int, int]:
        """(start, end, levels): ``e``'s source range including the parentheses written
        around exactly it, and how many there are. (-1, -1, 0) when it has no position."""
        start, end = self.extent(e)
        levels = 0
        while (start, end) in self.pairs:
            start, end = self.pairs[(start, end)]
            levels += 1
        return start, end, levels

    def levels(self, e: ast.Expr) -> int:
        return self.wrapped(e)[2]

    def extent(self, e: ast.Expr) -> tuple[int, int]:
        """The source range of ``e`` itself: from its first token to its last (spans in the
        tree can stop short of a parenthesised first operand or a closing bracket)."""
        key = id(e)
        if key in self._extents:
            return self._extents[key]
        sp = e.span
        start = self.offset(sp.line, sp.column) if sp.line else -1
        end = self.offset(sp.end_line, sp.end_column) if sp.line else -1
        inner_end = -1
        for kid in children(e):
            ks, ke, _ = self.wrapped(kid)
            if ks < 0:
                continue
            start = ks if start < 0 else min(start, ks)
            end = max(end, ke)
            inner_end = max(inner_end, ke)
        closer = _CLOSERS.get(type(e))
        if closer is not None and end >= 0:
            end = max(end, self._closing(max(inner_end, start), closer))
        self._extents[key] = (start, end)
        return start, end

    def _closing(self, after: int, closer: str) -> int:
        """End of the first ``closer`` at or after ``after``, past commas and an empty
        argument list's opening bracket; -1 if something else comes first."""
        i = bisect.bisect_left(self.token_starts, after)
        while i < len(self.tokens) and self.tokens[i][2] in (",", "("):
            i += 1
        if i < len(self.tokens) and self.tokens[i][2] == closer:
            return self.tokens[i][1]
        return -1


def children(e: object) -> list[ast.Expr]:
    """The sub-expressions of a node (or the parts of a declaration), whatever its kind;
    strings are leaves: the formatter prints them as written."""
    if isinstance(e, ast.StrLit):
        return []
    names = _FIELDS.get(type(e))
    if names is None:
        names = tuple(f.name for f in fields(e)) if is_dataclass(e) else ()
        _FIELDS[type(e)] = names
    out: list[ast.Expr] = []
    for name in names:
        value = getattr(e, name)
        if isinstance(value, tuple):
            out.extend(v for v in value if _is_expr(v))
        elif _is_expr(value):
            out.append(value)
    return out


_FIELDS: dict[type, tuple[str, ...]] = {}


def _is_expr(v: object) -> bool:
    return not isinstance(v, type) and isinstance(getattr(v, "span", None), ast.Span)


def _is_name(tok: str) -> bool:
    return bool(tok) and (tok[0].isalpha() or tok[0] == "_")
