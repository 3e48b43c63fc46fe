"""Diagnostics from `ringfence lsp`: on open and change, exact ranges, the checker's text,
across files, lists and tenant.toml."""

from __future__ import annotations

from pathlib import Path

from lsp_support import change, diagnostics, errors, messages, open_file, uri
from lsprotocol import types
from pytest_lsp import LanguageClient


async def test_shipped_policy_has_no_errors(client: LanguageClient, rules: Path) -> None:
    u = await open_file(client, rules / "demo" / "policy.rf")
    diags = await diagnostics(client, u, lambda d: True)
    assert errors(diags) == []


async def test_broken_then_fixed(client: LanguageClient, rules: Path) -> None:
    path = rules / "demo" / "policy.rf"
    good = path.read_text()
    u = await open_file(client, path)
    await diagnostics(client, u, lambda d: not errors(d))
    broken = good.replace("phone.segment_kind in BLACK_CARD_KINDS", "phone.segment_knd in BLACK_CARD_KINDS")
    change(client, u, broken, 2)
    diags = await diagnostics(client, u, lambda d: bool(errors(d)))
    (err,) = errors(diags)
    assert err.message == "unknown field 'phone.segment_knd'; did you mean 'segment_kind'?"
    line = broken.splitlines().index(next(x for x in broken.splitlines() if "segment_knd" in x))
    col = broken.splitlines()[line].index("phone.segment_knd")
    assert err.range == types.Range(
        types.Position(line, col), types.Position(line, col + len("phone.segment_knd"))
    )
    assert err.source == "ringfence"
    change(client, u, good, 3)
    await diagnostics(client, u, lambda d: not errors(d))
