"""A slow or hostile policy never stalls the language server: its check runs in a worker
process with a time budget, is killed past it, and other tenants keep their diagnostics."""

from __future__ import annotations

from pathlib import Path

from lsp_support import diagnostics, errors, messages, open_file, position_of
from lsprotocol import types
from pytest_lsp import LanguageClient

# Each const squares the one before: about 2**n digits, far beyond any budget by n = 24.
SQUARES = "const C0 = 99999999999999999999\n" + "".join(
    f"const C{i} = C{i - 1} * C{i - 1}\n" for i in range(1, 25)
)
STOPPED = (
    "checking took longer than 2 s and was stopped",
    "checking this policy ran out of memory",
)


async def test_hostile_policy_is_stopped_and_the_server_keeps_serving(
    strict_client: LanguageClient, rules: Path
) -> None:
    client = strict_client
    evil = await open_file(client, rules / "evil" / "policy.rf", SQUARES)
    # While that check burns its budget, the event loop still answers requests.
    policy = rules / "demo" / "policy.rf"
    text = policy.read_text()
    demo = await open_file(client, policy)
    hover = await client.text_document_hover_async(
        types.HoverParams(
            types.TextDocumentIdentifier(demo), position_of(text, "RUN_BLOCK", offset=1)
        )
    )
    assert hover is not None
    diags = await diagnostics(client, evil, lambda d: bool(errors(d)))
    assert messages(errors(diags))[0] in STOPPED
    assert errors(diags)[0].range.start == types.Position(0, 0)
    # A fresh worker checks the next tenant.
    await diagnostics(client, demo, lambda d: d is not None and not errors(d))


async def test_superseded_versions_are_not_published(client: LanguageClient, rules: Path) -> None:
    from lsp_support import change

    path = rules / "demo" / "policy.rf"
    good = path.read_text()
    u = await open_file(client, path)
    await diagnostics(client, u, lambda d: not errors(d))
    # Ten quick edits: only the last one's result may be shown.
    for v in range(2, 12):
        change(client, u, good.replace("then block", f"then block{v}", 1), v)
    final = await diagnostics(client, u, lambda d: any("block11" in m for m in messages(d)))
    assert not any(f"'block{v}'" in m for m in messages(final) for v in range(2, 11))
