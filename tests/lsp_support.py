"""Talking to `ringfence lsp` from tests: a real client (pytest-lsp) over stdio."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from lsprotocol import types
from pytest_lsp import LanguageClient

RINGFENCE = str(Path(sys.executable).parent / "ringfence")
WAIT_S = 30.0


def read(path: Path) -> str:
    """A small local file (blocking is fine in tests)."""
    return path.read_text()


def uri(path: Path) -> str:
    return path.resolve().as_uri()


async def open_file(client: LanguageClient, path: Path, text: str | None = None) -> str:
    u = uri(path)
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            types.TextDocumentItem(u, "ringfence", 1, read(path) if text is None else text)
        )
    )
    return u


def change(client: LanguageClient, u: str, text: str, version: int) -> None:
    """Replace the whole buffer (what an editor sends for a paste over everything)."""
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(version, u),
            [types.TextDocumentContentChangeWholeDocument(text)],
        )
    )


Diags = Sequence[types.Diagnostic]


async def diagnostics(
    client: LanguageClient, u: str, until: Callable[[Diags], bool], wait_s: float = WAIT_S
) -> Diags:
    """The diagnostics published for ``u`` once ``until`` holds for them."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        current = client.diagnostics.get(u)
        if current is not None and until(current):
            return current
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError(f"diagnostics for {u} never matched; last: {current}")
        # The client may record a notification just after waking us: look again soon.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS),
                min(left, 0.2),
            )


def messages(diags: Diags) -> list[str]:
    return [d.message for d in diags]


def errors(diags: Diags) -> list[types.Diagnostic]:
    return [d for d in diags if d.severity == types.DiagnosticSeverity.Error]


def position_of(text: str, needle: str, nth: int = 0, offset: int = 0) -> types.Position:
    """The 0-based position of the ``nth`` occurrence of ``needle`` (plus ``offset``)."""
    i = -1
    for _ in range(nth + 1):
        i = text.index(needle, i + 1)
    i += offset
    line = text.count("\n", 0, i)
    col = i - (text.rfind("\n", 0, i) + 1)
    return types.Position(line, col)
