"""Where names are declared and used: a symbol index built from :mod:`dsl.ast` alone.

Editors and tools use it for go to definition, find references, rename and outlines. It
reads the syntax tree only (no checking), so it also works on a tenant whose files do not
all check. Scoping follows the checker: a tenant's files and every library file they
import (transitively) share one namespace, the first declaration of a name wins; a
library file on its own sees itself and what it imports.

Spans are whatever the modules carry (1-based, end exclusive); this module never reads a
file. ``file_symbols`` needs the source text only to find the name inside a declaration,
which the syntax tree does not record for every kind.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

from dsl import ast, schema

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


class SymbolKind(StrEnum):
    CONST = "const"
    LIST = "list"
    AGGREGATE = "aggregate"
    CONDITION = "condition"
    RULE = "rule"
    SETTINGS = "settings"


# Declarations that put a name in the shared namespace (the checker's namespace too).
_DECLARATION_KINDS: dict[type, SymbolKind] = {
    ast.Const: SymbolKind.CONST,
    ast.Condition: SymbolKind.CONDITION,
    ast.ListDecl: SymbolKind.LIST,
    ast.Aggregate: SymbolKind.AGGREGATE,
}
RENAMABLE = frozenset(
    {SymbolKind.CONST, SymbolKind.LIST, SymbolKind.AGGREGATE, SymbolKind.CONDITION}
)


@dataclass(frozen=True, slots=True)
class Definition:
    name: str
    kind: SymbolKind
    span: ast.Span  # the whole declaration
    name_span: ast.Span  # just the name
    item: ast.Item | ast.Setting


@dataclass(frozen=True, slots=True)
class Reference:
    """A name written where a declared symbol may be meant (resolved by a Scope)."""

    name: str
    span: ast.Span


@dataclass(frozen=True, slots=True)
class FactUse:
    """``phone.x`` / ``event.x`` / ``ip.x`` / ``tenant``: ``span`` covers the field name."""

    name: str  # "phone.segment_kind"
    span: ast.Span


@dataclass(frozen=True, slots=True)
class FileSymbols:
    path: str
    definitions: tuple[Definition, ...]  # names in the shared namespace, in file order
    rules: tuple[Definition, ...]
    settings: tuple[Definition, ...]
    references: tuple[Reference, ...]
    facts: tuple[FactUse, ...]
    imports: tuple[tuple[str, ast.Span], ...]

    def outline(self) -> tuple[Definition, ...]:
        """Everything declared in the file, in source order."""
        every = (*self.definitions, *self.rules, *self.settings)
        return tuple(sorted(every, key=lambda d: (d.span.line, d.span.column)))


# -- one file ----------------------------------------------------------------------------------


def _offsets(text: str) -> list[int]:
    """Offset of the start of each line (index 0 is line 1)."""
    out = [0]
    for i, ch in enumerate(text):
        if ch == "\n":
            out.append(i + 1)
    return out


def _skip_blank(text: str, i: int) -> int:
    while i < len(text):
        if text[i] in " \t\r\n":
            i += 1
        elif text[i] == "#":
            nl = text.find("\n", i)
            i = len(text) if nl < 0 else nl
        else:
            break
    return i


class _Locator:
    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = _offsets(text)

    def offset(self, line: int, column: int) -> int:
        if not 1 <= line <= len(self.lines):
            return -1
        return self.lines[line - 1] + column - 1

    def position(self, offset: int) -> tuple[int, int]:
        lo, hi = 0, len(self.lines) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.lines[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1, offset - self.lines[lo] + 1

    def name_after_keyword(self, span: ast.Span, name: str) -> ast.Span:
        """The span of ``name`` in ``KEYWORD [comments] NAME`` starting at ``span``."""
        start = self.offset(span.line, span.column)
        if start >= 0:
            m = NAME_RE.match(self.text, start)
            i = _skip_blank(self.text, m.end()) if m else start
            if self.text.startswith(name, i) and not _word_char(self.text, i + len(name)):
                line, col = self.position(i)
                return ast.Span(span.path, line, col, line, col + len(name))
        return span

    def tail_name(self, span: ast.Span, name: str) -> ast.Span:
        """``name`` as the last word of ``span`` (``per list NAME``, ``over CONST``)."""
        return ast.Span(
            span.path, span.end_line, span.end_column - len(name), span.end_line, span.end_column
        )


def _word_char(text: str, i: int) -> bool:
    return i < len(text) and (text[i].isalnum() or text[i] == "_")


def file_symbols(module: ast.Module, text: str) -> FileSymbols:
    """Declarations, references and imports of one parsed file (``text`` is its source)."""
    loc = _Locator(text)
    defs: list[Definition] = []
    rules: list[Definition] = []
    settings: list[Definition] = []
    refs: list[Reference] = []
    facts: list[FactUse] = []
    imports: list[tuple[str, ast.Span]] = []
    for item in module.items:
        kind = _DECLARATION_KINDS.get(type(item))
        if kind is not None and isinstance(
            item, ast.Const | ast.Condition | ast.ListDecl | ast.Aggregate
        ):
            name_span = loc.name_after_keyword(item.span, item.name)
            defs.append(Definition(item.name, kind, item.span, name_span, item))
        elif isinstance(item, ast.Rule):
            rules.append(Definition(item.name, SymbolKind.RULE, item.span, item.name_span, item))
        elif isinstance(item, ast.Settings):
            for entry in item.entries:
                sp = entry.span
                name_span = ast.Span(
                    sp.path, sp.line, sp.column, sp.line, sp.column + len(entry.name)
                )
                settings.append(Definition(entry.name, SymbolKind.SETTINGS, sp, name_span, entry))
        elif isinstance(item, ast.Import):
            imports.append((item.target, item.span))
        _collect(item, loc, refs, facts)
    return FileSymbols(
        module.path,
        tuple(defs),
        tuple(rules),
        tuple(settings),
        tuple(refs),
        tuple(facts),
        tuple(imports),
    )


def _children(node: object) -> Iterator[object]:
    if isinstance(node, tuple):
        yield from node
        return
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            if f.name != "span" and not f.name.endswith("_span"):
                yield getattr(node, f.name)


def _collect(root: object, loc: _Locator, refs: list[Reference], facts: list[FactUse]) -> None:
    """Every Name (and list/const named in ``per``/``over``) under ``root``, iteratively."""
    stack: list[object] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name):
            if node.name == "tenant":
                facts.append(FactUse("tenant", node.span))
            else:
                refs.append(Reference(node.name, node.span))
            continue
        if (
            isinstance(node, ast.Attr)
            and isinstance(node.obj, ast.Name)
            and node.obj.name in ("phone", "event", "ip")
        ):
            sp = node.span
            field = ast.Span(
                sp.path, sp.end_line, sp.end_column - len(node.name), sp.end_line, sp.end_column
            )
            facts.append(FactUse(f"{node.obj.name}.{node.name}", field))
            continue
        if isinstance(node, ast.Per | ast.PerRef):
            # `per list NAME` names a list: in an aggregate's keys (`per (list l, app)`
            # too) and as a function argument (`age(per list l)`, which the checker refuses
            # with the list's name in the message).
            if node.kind == "list" and node.arg:
                refs.append(Reference(node.arg, loc.tail_name(node.span, node.arg)))
            continue
        if (
            isinstance(node, ast.Setting)
            and node.name == "default_action"
            and isinstance(node.value, ast.Name)
            and node.value.name in schema.ACTIONS
        ):
            continue  # `default_action = review` is the action, even if a const is so named
        if isinstance(node, ast.Over):
            if not node.is_duration and node.text != "today":
                refs.append(Reference(node.text, loc.tail_name(node.span, node.text)))
            continue
        if isinstance(node, str | int | bool | float | None | ast.Span):
            continue
        stack.extend(_children(node))
    refs.sort(key=lambda r: (r.span.line, r.span.column))
    facts.sort(key=lambda f: (f.span.line, f.span.column))


# -- scopes -----------------------------------------------------------------------------------


def import_closure(files: dict[str, FileSymbols], roots: Iterable[str]) -> list[str]:
    """``roots`` and every file they import, transitively; imports first (as the checker
    loads them), missing targets skipped, cycles cut."""
    out: list[str] = []
    seen: set[str] = set()

    def visit(path: str) -> None:
        if path in seen or path not in files:
            return
        seen.add(path)
        for target, _ in files[path].imports:
            visit(target)
        out.append(path)

    for r in roots:
        visit(r)
    return out


@dataclass(frozen=True, slots=True)
class Scope:
    """The files that share one namespace (a tenant with its imports, or a library file)."""

    files: tuple[FileSymbols, ...]

    @classmethod
    def of(cls, files: Sequence[FileSymbols]) -> Scope:
        return cls(tuple(files))

    def definitions(self) -> dict[str, Definition]:
        out: dict[str, Definition] = {}
        for f in self.files:
            for d in f.definitions:
                out.setdefault(d.name, d)
        return out

    def resolve(self, name: str) -> Definition | None:
        for f in self.files:
            for d in f.definitions:
                if d.name == name:
                    return d
        return None

    def references(self, target: Definition) -> list[Reference]:
        """Uses of ``target`` in this scope (not its declaration)."""
        if self.resolve(target.name) is not target:
            return []
        return [r for f in self.files for r in f.references if r.name == target.name]

    def paths(self) -> tuple[str, ...]:
        return tuple(f.path for f in self.files)


def at(symbols: FileSymbols, line: int, column: int) -> Reference | Definition | FactUse | None:
    """What is written at a 1-based position: a reference, a declared name or a fact."""

    def inside(sp: ast.Span) -> bool:
        return (sp.line, sp.column) <= (line, column) <= (sp.end_line, sp.end_column)

    for d in (*symbols.definitions, *symbols.rules, *symbols.settings):
        if inside(d.name_span):
            return d
    for r in symbols.references:
        if inside(r.span):
            return r
    for f in symbols.facts:
        if inside(f.span):
            return f
    return None


def is_valid_name(name: str, reserved: Iterable[str]) -> bool:
    return NAME_RE.fullmatch(name) is not None and name not in set(reserved)
