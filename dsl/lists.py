"""The view of an intelligence list that a policy reads. Loading lives in the server."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from dsl.ast import Span
from dsl.diagnostics import Diagnostic, Severity, Suggestion
from dsl.suggest import closest

NUMBERS = "numbers"
NETWORKS = "networks"


class ListView(Protocol):
    """A loaded list: exact numbers, prefixes and ranges, each entry with labels; or (a
    list whose ``kind`` attribute is ``"networks"``) IP networks in CIDR form.

    Lookups take an E.164 number (``+8613800138000``), or for a network list an IP
    address. ``labels`` returns the labels of the most specific entry that matches (exact,
    then longest prefix, then narrowest range; for networks the longest prefix), or None
    when it is not on the list. A view without a ``kind`` holds numbers.
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
        if fix is None:
            message += f" (its columns: {shown[:200]})"
        out.append(Diagnostic.at(use.span, Severity.ERROR, message, fix))
    return tuple(out)


def kind_of(view: object) -> str:
    """``"numbers"`` or ``"networks"``: what a list's entries are, so what it is about
    for one event (the number, or ``event.ip``)."""
    return NETWORKS if getattr(view, "kind", NUMBERS) == NETWORKS else NUMBERS


def list_kinds(views: Mapping[str, object]) -> dict[str, str]:
    """What each loaded list holds, for :func:`list_use_problems`. A list with no number on
    it says nothing: a header alone could head either kind."""
    out: dict[str, str] = {}
    for name, view in views.items():
        kind = kind_of(view)
        if kind == NETWORKS or len(view):  # type: ignore[arg-type]
            out[name] = kind
    return out


@dataclass(frozen=True, slots=True)
class ListUse:
    """``phone in LIST`` (``subject`` "numbers") or ``event.ip in LIST`` ("networks") as
    a policy wrote it: checked against what the list file holds once it is loaded."""

    list_name: str
    subject: str
    span: Span


_WRONG_KIND = {
    NETWORKS: "list '{name}' holds IP networks: test the address, 'event.ip in {name}'",
    NUMBERS: "list '{name}' holds phone numbers: test the number, 'phone in {name}'",
}


def list_use_problems(uses: Iterable[ListUse], kinds: Mapping[str, str]) -> tuple[Diagnostic, ...]:
    """An error for every lookup that can never match: a number looked up in a list of
    networks, an address in a list of numbers. Lists not in ``kinds`` (not loaded, or
    empty) are not judged."""
    out: list[Diagnostic] = []
    for use in uses:
        kind = kinds.get(use.list_name)
        if kind is None or kind == use.subject:
            continue
        s = use.span
        message = _WRONG_KIND[kind].format(name=use.list_name)
        out.append(
            Diagnostic(s.path, s.line, s.column, Severity.ERROR, message, s.end_line, s.end_column)
        )
    return tuple(out)
