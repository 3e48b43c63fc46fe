"""The view of an intelligence list that a policy reads. Loading lives in the server."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from dsl.ast import Span
from dsl.diagnostics import Diagnostic, Severity, Suggestion
from dsl.suggest import closest


class ListView(Protocol):
    """A loaded list: exact numbers, prefixes and ranges, each entry with labels.

    Lookups take an E.164 number (``+8613800138000``). ``labels`` returns the labels of
    the most specific entry that matches (exact, then longest prefix, then narrowest
    range), or None when the number is not on the list.
    """

    def __contains__(self, e164: object) -> bool: ...

    def labels(self, e164: str) -> Mapping[str, str] | None: ...

    def __len__(self) -> int: ...


@dataclass(frozen=True, slots=True)
class LabelUse:
    """``LIST.label("name")`` as a policy wrote it: checked against the list file's header
    once the list is loaded (the language never reads files)."""

    list_name: str
    label: str
    span: Span


def label_problems(
    uses: Iterable[LabelUse], columns: Mapping[str, Sequence[str]]
) -> tuple[Diagnostic, ...]:
    """An error for every label a policy reads that its list's header does not have, with
    a did-you-mean; lists not in ``columns`` (not loaded) are not judged. One function for
    `ringfence check`, the server's reloads and the language server."""
    out: list[Diagnostic] = []
    for use in uses:
        have = columns.get(use.list_name)
        if have is None or use.label in have:
            continue
        shown = ", ".join(have) if have else "none"
        guess = closest(use.label, have)
        fix = Suggestion(use.label, guess) if guess is not None and guess != use.label else None
        message = f"list '{use.list_name}' has no label column '{use.label[:60]}'"
        message += f"; did you mean '{guess}'?" if fix else f" (its columns: {shown[:200]})"
        s = use.span
        out.append(
            Diagnostic(
                s.path, s.line, s.column, Severity.ERROR, message, s.end_line, s.end_column, fix
            )
        )
    return tuple(out)
