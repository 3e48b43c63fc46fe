"""Where each key of a TOML document was written, so errors about its *content* get a line.

``tomllib`` parses and validates TOML but keeps no positions, and no well-kept Python TOML
library exposes them (tomlkit keeps trivia, not lines). The document is parsed by
``tomllib`` first; this module only walks the same (already valid) text to map each key
path, such as ``("case", 2, "event", "scene")``, to the span of its key and of its value.
It follows TOML's structure (tables, arrays of tables, dotted and quoted keys, inline
tables, arrays, the four string forms, comments), so text inside strings never counts.

It is total: on text it does not understand it skips to the next line and carries on,
and a path it could not place is simply missing (callers fall back to an enclosing one).
"""

from __future__ import annotations

import bisect
import re
import tomllib
from dataclasses import dataclass, field

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Place:
    """1-based line/column; the end column is exclusive (as in :class:`dsl.ast.Span`)."""

    line: int
    column: int
    end_line: int
    end_column: int


@dataclass(frozen=True, slots=True)
class Located:
    key: Place  # the key (or the table header, or an array element itself)
    value: Place  # the value (a table header for tables)


@dataclass(frozen=True, slots=True)
class Positions:
    paths: dict[Path, Located] = field(default_factory=dict)
    # A key written twice (tomllib reports it "at end of document"): the second place.
    duplicate: tuple[Path, Located, Located] | None = None

    def find(self, path: Path) -> tuple[Path, Located] | None:
        """The place of ``path``, or of its nearest ancestor that has one."""
        for n in range(len(path), 0, -1):
            hit = self.paths.get(path[:n])
            if hit is not None:
                return path[:n], hit
        return None


_BARE = re.compile(r"[A-Za-z0-9_-]+")
_BASIC = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_LITERAL = re.compile(r"'[^'\n]*'")
_ML_BASIC = re.compile(r'"""(?:[^\\]|\\.)*?"{3,5}(?!")', re.DOTALL)
_ML_LITERAL = re.compile(r"'''.*?'{3,5}(?!')", re.DOTALL)
# A local date-time may use a space between date and time; every other scalar ends at
# whitespace, a separator or a comment.
_SCALAR = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[Zz]|[+-]\d{2}:\d{2})?"
    r"|[^\s,\]}#]+"
)
_BLANK = " \t"


def locate(text: str) -> Positions:
    """Positions of every key (and array element) in ``text``, a valid TOML document."""
    return _Walker(text).run()


class _Walker:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.starts = [0] + [m.end() for m in re.finditer(r"\n", text)]
        self.paths: dict[Path, Located] = {}
        self.duplicate: tuple[Path, Located, Located] | None = None
        self.aot: dict[Path, int] = {}  # array-of-tables path -> tables so far

    # -- positions

    def place(self, start: int, end: int) -> Place:
        line = bisect.bisect_right(self.starts, start) - 1
        end_line = bisect.bisect_right(self.starts, max(end - 1, start)) - 1
        return Place(
            line + 1,
            start - self.starts[line] + 1,
            end_line + 1,
            end - self.starts[end_line] + 1,
        )

    def record(self, path: Path, key: Place, value: Place) -> None:
        found = Located(key, value)
        first = self.paths.get(path)
        if first is not None and self.duplicate is None:
            self.duplicate = (path, first, found)
        if first is None:
            self.paths[path] = found

    def dotted(self, table: Path, parts: tuple[str, ...], key: Place) -> None:
        """``a.b.c = 1`` also defines tables a and a.b: place them at their first key."""
        for n in range(1, len(parts)):
            self.paths.setdefault(table + parts[:n], Located(key, key))

    # -- scanning

    def peek(self, s: str) -> bool:
        return self.text.startswith(s, self.pos)

    def blanks(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _BLANK:
            self.pos += 1

    def space(self) -> None:
        """Whitespace, newlines and comments (inside arrays and between items)."""
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch in " \t\r\n":
                self.pos += 1
            elif ch == "#":
                self.skip_line()
            else:
                return

    def skip_line(self) -> None:
        nl = self.text.find("\n", self.pos)
        self.pos = len(self.text) if nl < 0 else nl + 1

    def key(self) -> tuple[tuple[str, ...], int, int] | None:
        """A dotted key: its parts and its start/end offsets; None if there is none."""
        parts: list[str] = []
        start = end = self.pos
        while True:
            self.blanks()
            if not parts:
                start = self.pos
            m = _BARE.match(self.text, self.pos)
            if m is not None:
                parts.append(m.group())
            else:
                m = _BASIC.match(self.text, self.pos) or _LITERAL.match(self.text, self.pos)
                if m is None:
                    return None
                parts.append(_unquote(m.group()))
            self.pos = end = m.end()
            self.blanks()
            if not self.peek("."):
                return tuple(parts), start, end
            self.pos += 1

    def run(self) -> Positions:
        table: Path = ()
        while True:
            self.space()
            if self.pos >= len(self.text):
                break
            before = self.pos
            if self.peek("["):
                table = self.header()
            else:
                got = self.key()
                if got is not None:
                    self.blanks()
                    if self.peek("="):
                        self.pos += 1
                        parts, start, end = got
                        self.dotted(table, parts, self.place(start, end))
                        self.value(table + parts, self.place(start, end))
            self.blanks()
            if self.pos == before or not (self.peek("\n") or self.peek("\r") or self.peek("#")):
                self.skip_line()  # not understood (cannot happen in valid TOML): move on
        return Positions(self.paths, self.duplicate)

    def header(self) -> Path:
        start = self.pos
        many = self.peek("[[")
        self.pos += 2 if many else 1
        got = self.key()
        if got is None:
            self.skip_line()
            return ()
        self.blanks()
        self.pos += 2 if many else 1  # the closing bracket(s)
        here = self.place(start, self.pos)
        parts = got[0]
        # [[a.b]] adds a table to the array a.b (inside the last table of a, if a is one).
        path = (*self.resolve(parts[:-1]), parts[-1]) if many else self.resolve(parts)
        if many:
            index = self.aot.get(path, 0)
            self.aot[path] = index + 1
            self.record(path, here, here)
            path = (*path, index)
        self.record(path, here, here)
        return path

    def resolve(self, parts: tuple[str, ...]) -> Path:
        """A header's path: through an array of tables, a header means its last table."""
        path: Path = ()
        for part in parts:
            path = (*path, part)
            if path in self.aot:
                path = (*path, self.aot[path] - 1)
        return path

    def value(self, path: Path, key: Place | None) -> None:
        """Record ``path`` at ``key`` (None: an array element, placed at itself)."""
        self.blanks()
        start = self.pos
        if self.peek("{"):
            self.inline_table(path)
        elif self.peek("["):
            self.array(path)
        else:
            for pattern in (_ML_BASIC, _ML_LITERAL, _BASIC, _LITERAL, _SCALAR):
                m = pattern.match(self.text, self.pos)
                if m is not None:
                    self.pos = m.end()
                    break
        here = self.place(start, max(self.pos, start + 1))
        self.record(path, key or here, here)

    def inline_table(self, path: Path) -> None:
        self.pos += 1
        while self.pos < len(self.text):
            self.space()
            if self.peek("}"):
                self.pos += 1
                return
            got = self.key()
            if got is None:
                return
            self.blanks()
            if not self.peek("="):
                return
            self.pos += 1
            parts, start, end = got
            self.dotted(path, parts, self.place(start, end))
            self.value(path + parts, self.place(start, end))
            self.space()
            if self.peek(","):
                self.pos += 1

    def array(self, path: Path) -> None:
        self.pos += 1
        index = 0
        while self.pos < len(self.text):
            self.space()
            if self.peek("]"):
                self.pos += 1
                return
            before = self.pos
            self.value((*path, index), None)
            index += 1
            self.space()
            if self.peek(","):
                self.pos += 1
            elif self.pos == before:
                return


def _unquote(raw: str) -> str:
    """A quoted key's text, unescaped by the TOML parser itself."""
    try:
        return str(next(iter(tomllib.loads(f"{raw} = 0"))))
    except (tomllib.TOMLDecodeError, StopIteration):
        return raw[1:-1]
