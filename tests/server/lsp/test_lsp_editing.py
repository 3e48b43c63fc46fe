"""Formatting and quick fixes through `ringfence lsp`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lsp_support import change, diagnostics, errors, open_file, read
from lsprotocol import types
from pytest_lsp import LanguageClient

from dsl.formatter import format_source

GOLDEN = Path(__file__).parents[2] / "dsl" / "golden" / "diagnostics"
DID_YOU_MEAN = sorted(
    p for p in GOLDEN.glob("*.rf") if "did you mean" in p.with_suffix(".txt").read_text()
)


def _apply(text: str, edits: list[types.TextEdit]) -> str:
    lines = text.split("\n")
    for e in sorted(
        edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True
    ):
        head = lines[e.range.start.line][: e.range.start.character]
        tail = lines[e.range.end.line][e.range.end.character :]
        lines[e.range.start.line : e.range.end.line + 1] = (head + e.new_text + tail).split("\n")
    return "\n".join(lines)


async def test_formatting_is_the_fmt_layout(reader: LanguageClient, shared_rules: Path) -> None:
    text = 'const   A=1\nrule   x {then allow\n  when event.scene=="register"   # why\n}\n'
    u = await open_file(reader, shared_rules / "fmt" / "policy.rf", text)
    edits = await reader.text_document_formatting_async(
        types.DocumentFormattingParams(
            types.TextDocumentIdentifier(u), types.FormattingOptions(4, True)
        )
    )
    assert edits is not None
    assert _apply(text, edits) == format_source(text, "fmt/policy.rf")
    # An already formatted file needs no edit; one that does not parse gets none.
    formatted = format_source(text, "fmt/policy.rf")
    change(reader, u, formatted, 2)
    assert await reader.text_document_formatting_async(
        types.DocumentFormattingParams(
            types.TextDocumentIdentifier(u), types.FormattingOptions(4, True)
        )
    ) in ([], ())
    change(reader, u, "rule {", 3)
    assert not await reader.text_document_formatting_async(
        types.DocumentFormattingParams(
            types.TextDocumentIdentifier(u), types.FormattingOptions(4, True)
        )
    )


@pytest.mark.parametrize("case", DID_YOU_MEAN, ids=lambda p: p.stem)
async def test_quick_fix_for_every_did_you_mean(
    reader: LanguageClient, shared_rules: Path, case: Path
) -> None:
    text = read(case)
    path = shared_rules / f"fix_{case.stem}" / "policy.rf"
    u = await open_file(reader, path, text)
    diags = await diagnostics(reader, u, lambda d: any("did you mean" in x.message for x in d))
    wanted = [d for d in diags if "did you mean" in d.message]
    for d in wanted:
        actions = await reader.text_document_code_action_async(
            types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(u),
                range=d.range,
                context=types.CodeActionContext(diagnostics=[d]),
            )
        )
        assert actions, d.message
        (action,) = actions
        assert isinstance(action, types.CodeAction)
        suggested = re.search(r"did you mean '([^']+)'", d.message)
        assert suggested is not None
        assert action.title.endswith(f"to '{suggested.group(1)}'")
        assert action.edit is not None
        assert action.edit.changes is not None
        fixed = _apply(text, list(action.edit.changes[u]))
        # Only the misspelt word changed, and the checker no longer reports it.
        assert fixed.count("\n") == text.count("\n")
        change(reader, u, fixed, 2)
        after = await diagnostics(reader, u, lambda x, m=d.message: m not in [y.message for y in x])
        assert d.message not in [x.message for x in errors(after)]
        change(reader, u, text, 3)
        await diagnostics(reader, u, lambda x, m=d.message: m in [y.message for y in x])
