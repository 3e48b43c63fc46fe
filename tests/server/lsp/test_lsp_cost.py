"""The language server refuses a policy over its tenant's evaluation budget, as
``ringfence check`` does (tests/security/test_cost_budget.py)."""

from __future__ import annotations

from pathlib import Path

from lsp_support import change, diagnostics, errors, open_file
from pytest_lsp import LanguageClient

COSTLY = "".join(
    f'rule r{i} {{\n    when event.attributes["ua"].matches(r"[ab]*a[ab]{{{10 + i}}}c")\n'
    "    then review\n}\n"
    for i in range(3)
)


async def test_the_budget_error_shows_in_the_editor(client: LanguageClient, rules: Path) -> None:
    path = rules / "demo" / "policy.rf"
    u = await open_file(client, path)
    await diagnostics(client, u, lambda d: not errors(d))
    change(client, u, path.read_text() + COSTLY, 2)
    diags = await diagnostics(client, u, lambda d: bool(errors(d)))
    (err,) = errors(diags)
    assert err.message.startswith("evaluating this policy may cost up to")
    assert "over the tenant's budget of 1,000,000" in err.message


async def test_a_tenants_own_budget_holds_in_the_editor(
    client: LanguageClient, rules: Path
) -> None:
    (rules / "demo" / "tenant.toml").write_text("[limits]\ncost_budget = 5000000\n")
    path = rules / "demo" / "policy.rf"
    u = await open_file(client, path, path.read_text() + COSTLY)
    diags = await diagnostics(client, u, lambda d: True)
    assert errors(diags) == []
