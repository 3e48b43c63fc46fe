"""Cheap checks a TOML document must pass before ``tomllib`` parses it.

``tomllib`` recurses once per level of nested arrays and inline tables (a few hundred
levels raise RecursionError, and a thread with a small stack may crash before that); it is
quadratic in the parts of one dotted key (``a.a.a...`` over 64 KiB: 18 s of CPU); an
integer of 4,300 digits makes it raise ValueError. Files in a tenant's folder
(``tenant.toml``, rule tests) are untrusted, so they are scanned first, in one linear pass
that skips strings and comments, and refused with the place of the first excess.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

# Far above what any hand-written settings or test file needs, far below where tomllib (or
# the position walker of dsl.toml_positions) runs out of stack.
MAX_NESTING = 32
MAX_KEY_PARTS = 32
# A bare key or scalar (a number, a date) this long is no setting; a number of 4,300 digits
# makes tomllib raise ValueError instead of its own error.
MAX_WORD = 1_000

_TOKEN = re.compile(
    r"""
      (?P<string>\"\"\"(?:[^\\]|\\.)*?\"{3,5}(?!\")   # multi-line basic
        | '''.*?'{3,5}(?!')                            # multi-line literal
        | "(?:[^"\\\n]|\\.)*"                          # basic
        | '[^'\n]*'                                    # literal
        | ["'])                                        # unterminated: tomllib says where
    | (?P<comment>\#[^\n]*)
    | (?P<open>[\[{])
    | (?P<close>[\]}])
    | (?P<dot>\.)
    | (?P<word>[A-Za-z0-9_+:-]+)
    | (?P<blank>[ \t\r]+)
    | (?P<other>.|\n)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class Excess:
    line: int
    column: int
    message: str


def check_toml(
    text: str, *, max_nesting: int = MAX_NESTING, max_key_parts: int = MAX_KEY_PARTS
) -> Excess | None:
    """The first place where ``text`` nests arrays / inline tables deeper than
    ``max_nesting`` or chains more than ``max_key_parts`` dotted parts; None if nowhere.

    The scan is exact for valid TOML and harmless for anything else (tomllib then reports
    the syntax error itself)."""
    depth = 0
    parts = 0  # dotted parts in the current chain: word (. word)*
    expect_part = False
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "blank":
            continue
        if kind == "word" and m.end() - m.start() > MAX_WORD:
            return _excess(
                text, m.start(), f"a bare key or value longer than {MAX_WORD} characters"
            )
        if kind in ("word", "string"):
            parts = parts + 1 if expect_part else 1
            expect_part = False
            if parts > max_key_parts:
                return _excess(text, m.start(), f"a dotted key of more than {max_key_parts} parts")
            continue
        if kind == "dot":
            expect_part = parts > 0
            continue
        parts, expect_part = 0, False
        if kind == "open":
            depth += 1
            if depth > max_nesting:
                return _excess(
                    text, m.start(), f"arrays or tables nested more than {max_nesting} deep"
                )
        elif kind == "close":
            depth = max(0, depth - 1)
    return None


def _excess(text: str, offset: int, what: str) -> Excess:
    starts = [0, *(m.end() for m in re.finditer(r"\n", text))]
    line = bisect.bisect_right(starts, offset) - 1
    return Excess(line + 1, offset - starts[line] + 1, what)
