"""A small Wadler-style layout engine: documents that break lines only where they must.

The formatter describes code as a document: text, places where a line may break
(:class:`Line`), groups that are laid out flat on one line when they fit and broken at
every one of their own line places otherwise (:class:`Group`), indentation (:class:`Nest`)
and comments. It is the algorithm of Wadler's "prettier printer" as Prettier runs it, cut
down to what a policy needs; kept here rather than taken from a library because comments
must force breaks (a trailing ``# ...`` ends its line), which the small Python libraries
(``wadler_lindig``) have no way to say.

Width counts code only: a trailing comment may run past it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True, slots=True)
class Line:
    """``flat`` when the enclosing group fits on one line; else a new, indented line."""

    flat: str = " "


@dataclass(frozen=True, slots=True)
class Hard:
    """Always a new line; every group around it breaks."""


@dataclass(frozen=True, slots=True)
class Suffix:
    """A trailing comment: printed at the end of the line it lands on; groups around it
    break (a comment ends its line)."""

    text: str


@dataclass(frozen=True, slots=True)
class IfBreak:
    """``text`` only when the enclosing group is broken (a trailing comma)."""

    text: str


@dataclass(frozen=True, slots=True)
class Nest:
    """Lines that break inside ``doc`` are indented one level deeper."""

    doc: Doc


@dataclass(frozen=True, slots=True)
class Fill:
    """Items separated by Lines (``parts`` alternate item, Line, item, ...) packed like
    words in a paragraph: a Line breaks only when the next item does not fit."""

    parts: tuple[Doc, ...]


@dataclass(frozen=True, slots=True)
class Group:
    """Laid out flat if it fits in the rest of the line, else with every Line broken.
    ``hard``: it holds a Hard or Suffix, so it always breaks."""

    doc: Doc
    hard: bool


Doc = str | Line | Hard | Suffix | IfBreak | Nest | Fill | Group | tuple["Doc", ...]

SOFT = Line("")  # nothing when flat


def group(*parts: Doc) -> Group:
    return Group(parts, any(_hard(p) for p in parts))


def nest(*parts: Doc) -> Nest:
    return Nest(parts)


def _hard(doc: Doc) -> bool:
    match doc:
        case Hard() | Suffix():
            return True
        case Group(hard=h):
            return h
        case Nest(doc=d):
            return _hard(d)
        case Fill(parts=parts):
            return any(_hard(d) for d in parts)
        case tuple():
            return any(_hard(d) for d in doc)
    return False


class _Mode(Enum):
    FLAT = 0
    BREAK = 1


_Cmd = tuple[int, _Mode, Doc]  # indent level, mode, document


def render(doc: Doc, *, width: int, indent: str, level: int = 0) -> list[str]:
    """The lines of ``doc``, the first starting at ``level`` indents (already printed by
    the caller as part of the first line's text is fine: pass it in ``doc``)."""
    lines = [indent * level]
    pending: list[str] = []  # trailing comments waiting for the end of the line
    stack: list[_Cmd] = [(level, _Mode.BREAK, doc)]

    def newline(at: int) -> None:
        end_line()
        lines.append(indent * at)

    def end_line() -> None:
        if pending:
            lines[-1] = lines[-1].rstrip() + "".join(f"  {c}" for c in pending)
            pending.clear()

    while stack:
        at, mode, d = stack.pop()
        match d:
            case str():
                lines[-1] += d
            case tuple():
                stack.extend((at, mode, x) for x in reversed(d))
            case Nest(doc=inner):
                stack.append((at + 1, mode, inner))
            case Group(doc=inner, hard=hard):
                flat = mode is _Mode.FLAT or (
                    not hard and _fits(width - len(lines[-1]), (at, _Mode.FLAT, inner), stack)
                )
                stack.append((at, _Mode.FLAT if flat else _Mode.BREAK, inner))
            case Fill(parts=parts) if mode is _Mode.FLAT:
                stack.extend((at, mode, x) for x in reversed(parts))
            case Fill(parts=parts) if parts:
                stack.extend(_fill(at, parts, width - len(lines[-1])))
            case Line(flat=flat):
                if mode is _Mode.FLAT:
                    lines[-1] += flat
                else:
                    newline(at)
            case Hard():
                newline(at)
            case Suffix(text=text):
                pending.append(text)
            case IfBreak(text=text):
                if mode is _Mode.BREAK:
                    lines[-1] += text
    end_line()
    return [line.rstrip() for line in lines]


def _fill(at: int, parts: tuple[Doc, ...], room: int) -> list[_Cmd]:
    """Commands (to push, last first) for the next item of a broken Fill: the item flat if
    it fits, then its separator flat if the item after it fits too, then the rest."""
    item = parts[0]
    item_flat = not _hard(item) and _fits(room, (at, _Mode.FLAT, item), [])
    item_cmd = (at, _Mode.FLAT if item_flat else _Mode.BREAK, item)
    if len(parts) < 3:
        return [(at, _Mode.BREAK, parts[1]), item_cmd] if len(parts) == 2 else [item_cmd]
    both = item_flat and _fits(room, (at, _Mode.FLAT, (item, parts[1], parts[2])), [])
    return [
        (at, _Mode.BREAK, Fill(parts[2:])),
        (at, _Mode.FLAT if both else _Mode.BREAK, parts[1]),
        item_cmd,
    ]


def _fits(room: int, first: _Cmd, rest: list[_Cmd]) -> bool:
    """Whether ``first`` laid out flat, and what follows it up to the next line break,
    fit in ``room`` columns."""
    todo: list[_Cmd] = [first]
    at_rest = len(rest)
    while room >= 0:
        if not todo:
            if at_rest == 0:
                return True
            at_rest -= 1
            todo.append(rest[at_rest])
            continue
        at, mode, d = todo.pop()
        match d:
            case str():
                room -= len(d)
            case tuple():
                todo.extend((at, mode, x) for x in reversed(d))
            case Nest(doc=inner):
                todo.append((at + 1, mode, inner))
            case Fill(parts=parts):
                todo.extend((at, mode, x) for x in reversed(parts))
            case Group(doc=inner, hard=hard):
                todo.append((at, _Mode.BREAK if hard else mode, inner))
            case Line(flat=flat):
                if mode is _Mode.BREAK:
                    return True
                room -= len(flat)
            case Hard():
                return True
            case IfBreak(text=text):
                if mode is _Mode.BREAK:
                    room -= len(text)
    return False
