"""Diagnostics: what the checker and parser report, and how they are shown to people."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Protocol


class Located(Protocol):
    """Where a node was written (dsl.ast.Span): 1-based, the end exclusive."""

    @property
    def path(self) -> str: ...
    @property
    def line(self) -> int: ...
    @property
    def column(self) -> int: ...
    @property
    def end_line(self) -> int: ...
    @property
    def end_column(self) -> int: ...


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A did-you-mean fix: write ``replacement`` where ``original`` stands.

    ``original`` is a whole word inside the diagnostic's range (its last occurrence there),
    so editors can offer the fix without reading the message text.
    """

    original: str
    replacement: str


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding at a 1-based ``line``/``column`` of ``path``; the end is exclusive."""

    path: str
    line: int
    column: int
    severity: Severity
    message: str
    end_line: int = 0
    end_column: int = 0
    suggestion: Suggestion | None = None

    @classmethod
    def at(
        cls,
        span: Located,
        severity: Severity,
        message: str,
        suggestion: Suggestion | None = None,
    ) -> Diagnostic:
        """A finding over ``span``; a suggestion is also named in the message."""
        if suggestion is not None:
            message += f"; did you mean '{suggestion.replacement}'?"
        return cls(
            span.path,
            span.line,
            span.column,
            severity,
            message,
            span.end_line,
            span.end_column,
            suggestion,
        )

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.path, self.line, self.column, self.message)

    def header(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.severity.value}: {self.message}"


class PolicyError(Exception):
    """Raised when a policy (or a file to format) has errors; carries every diagnostic."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        first = self.diagnostics[0].header() if self.diagnostics else "policy error"
        more = len(self.diagnostics) - 1
        super().__init__(first + (f" (and {more} more)" if more > 0 else ""))


# A source line longer than this is shown as a window around the caret.
SHOWN_LINE = 160


@lru_cache(maxsize=8)
def _lines(source_text: str) -> list[str]:
    # Diagnostics of one file come together (a check reports up to 200): split it once.
    return source_text.splitlines()


def render(diag: Diagnostic, source_text: str | None) -> str:
    """``path:line:col: severity: message``, the source line, and a caret/tilde underline.

    A long line (a whole policy written on one line, say) is cut to a window around the
    caret, marked with ``...``, so a rendering stays a few lines whatever the input."""
    head = diag.header()
    if source_text is None:
        return head
    lines = _lines(source_text)
    if not 1 <= diag.line <= len(lines):
        return head
    text = lines[diag.line - 1]
    start = max(diag.column, 1)
    if diag.end_line == diag.line and diag.end_column > start:
        end = diag.end_column
    else:
        end = max(start + 1, len(text.rstrip()) + 1) if diag.end_line > diag.line else start + 1
    lead = ""
    if len(text) > SHOWN_LINE:
        first = max(0, start - 1 - SHOWN_LINE // 2)
        lead = "..." if first else ""
        tail = "..." if first + SHOWN_LINE < len(text) else ""
        text = lead + text[first : first + SHOWN_LINE] + tail
        start, end = start - first + len(lead), end - first + len(lead)
    text = text.expandtabs(1)
    width = max(1, min(end, len(text) + 1) - start)
    underline = " " * (start - 1) + "^" + "~" * (width - 1)
    return f"{head}\n    {text}\n    {underline}"


def render_all(diags: Iterable[Diagnostic], sources: dict[str, str] | None = None) -> str:
    """Every diagnostic rendered, one block each, in file/position order."""
    srcs = sources or {}
    ordered = sorted(diags, key=Diagnostic.sort_key)
    return "\n".join(render(d, srcs.get(d.path)) for d in ordered)
