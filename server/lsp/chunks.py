"""Parsing a policy file again after an edit without parsing all of it again.

A file is cut into chunks at lines that start (in column 1) with an item keyword
(``rule``, ``const``, ...). Each chunk is parsed on its own, as if it began on line 1, under
a marker path ``"<path>\\x00<chunk id>"``, and kept by its text: an edit re-parses only the
chunks it touched, and lines added above a chunk only change the offset that maps its
spans back (nothing is re-parsed for that). Positions are mapped back with :meth:`real`.

Equivalence with parsing the whole file: chunks start at line starts, no token spans a
line break, and when chunks 1..k-1 parse cleanly the parser is back in its start state, so
concatenated clean chunks parse to the same items. When a chunk fails, the file from that
chunk on is parsed whole (with blank lines in front so lines match) and its diagnostics
are exactly those ``parse_module`` gives for the whole file. That holds with its error
recovery too (it reports every syntax error: each declaration, from a line starting with
a declaration keyword to the next, parsed alone in place): the declarations before the
failing chunk are made of clean chunks, so they report nothing in either parse, and the
suffix starts at a declaration line (a blank or comment chunk cannot fail), so it is cut
into the same declarations from there on. An unclosed ``{`` names the line of the next
declaration, which the blank lines in front keep true. ``tests/server/lsp`` checks this
equivalence on every golden file and on random edits.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from dsl import ast, reference
from dsl.diagnostics import Diagnostic, PolicyError
from dsl.parser import DEFAULT_MAX_DEPTH, declaration_error, parse_module
from dsl.symbols import Definition, FactUse, FileSymbols, Reference, file_symbols

MARK = "\x00"
_MARKED = re.compile(r"([^\s\x00]*)\x00(\d+):(\d+)")


def _item_start() -> re.Pattern[str]:
    words = "|".join(sorted(reference.keywords().items, key=len, reverse=True))
    return re.compile(rf"^(?:{words})(?![A-Za-z0-9_])", re.MULTILINE)


@dataclass(slots=True)
class _Chunk:
    id: int
    text: str
    module: ast.Module | None
    errors: tuple[Diagnostic, ...]
    symbols: FileSymbols | None


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """One version of a file: its chunks and where each one starts."""

    path: str
    text: str
    chunks: tuple[tuple[_Chunk, int], ...]  # (chunk, first line)
    errors: tuple[Diagnostic, ...]  # the whole file's parse diagnostics, real positions

    @property
    def ok(self) -> bool:
        return not self.errors

    def module(self) -> ast.Module:
        """The file's items with marked spans (for the checker; map results with real())."""
        items = tuple(i for c, _ in self.chunks if c.module for i in c.module.items)
        return ast.Module(self.path, items)

    def offsets(self) -> dict[int, int]:
        return {c.id: start - 1 for c, start in self.chunks}

    def symbols(self) -> FileSymbols:
        """The file's symbol index in real positions, from the chunks that parse."""
        defs: list[Definition] = []
        rules: list[Definition] = []
        settings: list[Definition] = []
        refs: list[Reference] = []
        facts: list[FactUse] = []
        imports: list[tuple[str, ast.Span]] = []
        for c, start in self.chunks:
            if c.symbols is None:
                continue
            s, shift = c.symbols, start - 1
            defs += (_def(d, self.path, shift) for d in s.definitions)
            rules += (_def(d, self.path, shift) for d in s.rules)
            settings += (_def(d, self.path, shift) for d in s.settings)
            refs += (Reference(r.name, _span(r.span, self.path, shift)) for r in s.references)
            facts += (FactUse(f.name, _span(f.span, self.path, shift)) for f in s.facts)
            imports += ((t, _span(sp, self.path, shift)) for t, sp in s.imports)
        return FileSymbols(
            self.path,
            tuple(defs),
            tuple(rules),
            tuple(settings),
            tuple(refs),
            tuple(facts),
            tuple(imports),
        )


def _tail_start(text: str, a: int, b: int) -> int:
    """Where the trailing run of blank and comment-only lines of ``text[a:b]`` starts."""
    p = b
    while p > a:
        nl = text.rfind("\n", a, p - 1)
        start = nl + 1 if nl >= 0 else a
        line = text[start:p].strip()
        if line and not line.startswith("#"):
            break
        p = start
    return p


def _span(sp: ast.Span, path: str, shift: int) -> ast.Span:
    return ast.Span(path, sp.line + shift, sp.column, sp.end_line + shift, sp.end_column)


def _def(d: Definition, path: str, shift: int) -> Definition:
    return replace(d, span=_span(d.span, path, shift), name_span=_span(d.name_span, path, shift))


@dataclass
class ChunkCache:
    """Parsed chunks of the files one process has seen, reused across versions."""

    max_depth: int = DEFAULT_MAX_DEPTH
    with_symbols: bool = True
    _by_text: dict[tuple[str, str, int], _Chunk] = field(default_factory=dict)
    _next_id: int = 0
    _split: re.Pattern[str] = field(default_factory=_item_start)
    _offsets: dict[str, dict[int, int]] = field(default_factory=dict)
    # Recovery parses every declaration after a syntax error on its own: its first error,
    # by (path, text without the blank lines in front), relative to its first line. The
    # current version's only (a file's entries are replaced at each broken parse).
    _declaration_errors: dict[str, dict[str, Diagnostic | None]] = field(default_factory=dict)
    _last: dict[str, ParsedFile] = field(default_factory=dict)  # each path's newest version

    def bounds(self, text: str) -> list[int]:
        """Chunk starts: each line that starts an item, and the run of blank and comment
        lines that ends a chunk (so a blank line added between items re-parses nothing)."""
        starts = [0, *(m.start() for m in self._split.finditer(text) if m.start() > 0)]
        out: list[int] = []
        for a, b in zip(starts, [*starts[1:], len(text)], strict=True):
            out.append(a)
            tail = _tail_start(text, a, b)
            if a < tail < b:
                out.append(tail)
        return out

    def parse(self, text: str, path: str) -> ParsedFile:
        last = self._last.get(path)
        if last is not None and last.text == text:
            # The same version again (a check reads each file several times): its chunks
            # are the ones kept, and nothing needs parsing.
            self._offsets[path] = last.offsets()
            return last
        parsed = self._parse(text, path, self.bounds(text))
        if parsed.chunks and not parsed.errors and any(c.errors for c, _ in parsed.chunks):
            # A chunk fails alone yet the file parses: a cut fell inside an item (an
            # item keyword starting a continuation line). Parse the file as one chunk.
            parsed = self._parse(text, path, [0])
        self._last[path] = parsed
        return parsed

    def _parse(self, text: str, path: str, starts: list[int]) -> ParsedFile:
        ends = [*starts[1:], len(text)]
        chunks: list[tuple[_Chunk, int]] = []
        seen: dict[str, int] = {}
        keep: set[tuple[str, str, int]] = set()
        line = 1
        first_bad: int | None = None
        for a, b in zip(starts, ends, strict=True):
            piece = text[a:b]
            n = seen.get(piece, 0)
            seen[piece] = n + 1
            key = (path, piece, n)
            chunk = self._by_text.get(key)
            if chunk is None:
                chunk = self._parse_chunk(piece, path)
                self._by_text[key] = chunk
            keep.add(key)
            if chunk.errors and first_bad is None:
                first_bad = line
            chunks.append((chunk, line))
            line += piece.count("\n")
        # Forget this path's chunks that the new version no longer has.
        for key in [k for k in self._by_text if k[0] == path and k not in keep]:
            del self._by_text[key]
        errors: tuple[Diagnostic, ...] = ()
        if first_bad is not None:
            errors = self._suffix_errors(text, path, first_bad)
        parsed = ParsedFile(path, text, tuple(chunks), errors)
        self._offsets[path] = parsed.offsets()
        return parsed

    def _parse_chunk(self, piece: str, path: str) -> _Chunk:
        cid = self._next_id
        self._next_id += 1
        marked = f"{path}{MARK}{cid}"
        try:
            module = parse_module(piece, marked, max_depth=self.max_depth)
        except PolicyError as err:
            return _Chunk(cid, piece, None, err.diagnostics or (), None)
        symbols = file_symbols(module, piece) if self.with_symbols else None
        return _Chunk(cid, piece, module, (), symbols)

    def _suffix_errors(self, text: str, path: str, first_line: int) -> tuple[Diagnostic, ...]:
        lines = text.split("\n")
        suffix = "\n" * (first_line - 1) + "\n".join(lines[first_line - 1 :])
        known = self._declaration_errors.get(path, {})
        used: dict[str, Diagnostic | None] = {}

        def declaration(body: str, shift: int, where: str) -> Diagnostic | None:
            # An edit re-parses only the declarations it changed, not every one after the
            # first error (Lark stops at that error; recovery would parse all the rest).
            if body in used:
                found = used[body]
            else:
                found = known[body] if body in known else declaration_error(body, 0, where)
                used[body] = found
            if found is None or not shift:
                return found
            end = found.end_line + shift if found.end_line else 0
            return replace(found, line=found.line + shift, end_line=end)

        try:
            parse_module(suffix, path, max_depth=self.max_depth, declarations=declaration)
        except PolicyError as err:
            return err.diagnostics
        finally:
            self._declaration_errors[path] = used
        return ()  # parse() then re-parses the file whole

    def module_parser(
        self, keep: Callable[[int, ast.Item], bool] | None = None
    ) -> Callable[[str, str, int], ast.Module]:
        """A ``dsl.compiler.ModuleParser`` backed by this cache (raises like parse_module).
        ``keep(chunk_id, item)`` may leave items out (the quick check's unchanged rules)."""

        def parse(text: str, path: str, max_depth: int) -> ast.Module:
            parsed = self.parse(text, path)
            if parsed.errors:
                raise PolicyError(parsed.errors)
            if keep is None:
                return parsed.module()
            items = tuple(
                i for c, _ in parsed.chunks if c.module for i in c.module.items if keep(c.id, i)
            )
            return ast.Module(parsed.path, items)

        return parse

    @staticmethod
    def chunk_of(d: Diagnostic) -> int | None:
        """The chunk a diagnostic from checking marked modules belongs to."""
        if MARK not in d.path:
            return None
        return int(d.path.split(MARK, 1)[1])

    def real(self, d: Diagnostic) -> Diagnostic:
        """A diagnostic from checking marked modules, in real paths and lines."""
        path, line, end_line = d.path, d.line, d.end_line
        if MARK in path:
            path, cid = path.split(MARK, 1)
            shift = self._offsets.get(path, {}).get(int(cid), 0)
            line += shift
            end_line = end_line + shift if end_line else 0
        message = d.message
        if MARK in message:
            message = _MARKED.sub(self._unmark, message)
        if (path, line, end_line, message) == (d.path, d.line, d.end_line, d.message):
            return d
        return replace(d, path=path, line=line, end_line=end_line, message=message)

    def real_span(self, sp: ast.Span) -> ast.Span:
        if MARK not in sp.path:
            return sp
        path, cid = sp.path.split(MARK, 1)
        shift = self._offsets.get(path, {}).get(int(cid), 0)
        return ast.Span(path, sp.line + shift, sp.column, sp.end_line + shift, sp.end_column)

    def _unmark(self, m: re.Match[str]) -> str:
        path, cid, line = m.group(1), int(m.group(2)), int(m.group(3))
        return f"{path}:{line + self._offsets.get(path, {}).get(cid, 0)}"
