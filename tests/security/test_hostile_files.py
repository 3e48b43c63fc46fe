"""Hostile list and tenant.toml files never escape the loaders.

A list line with a quote and a bare CR, or a quoted field over the CSV field limit, made
the csv module raise ``_csv.Error``; a tenant.toml nested 3,000 deep made tomllib raise
RecursionError; a dotted key of thousands of parts took tomllib 18 s. Each is now an error
at ``file:line`` in ``ringfence check``, in the server's reload status (the tenant keeps
its last good policy) and in the language server, whose checks go on afterwards.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_lsp
from cli_helpers import no_traceback, ringfence
from lsp_support import RINGFENCE, change, diagnostics, errors, open_file, uri
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities
from support import copy_rules, request, running_server

from server.api import policy_pb2 as ppb

LIST = "demo/lists/privacy_numbers.csv"
TOML = "demo/tenant.toml"


@dataclass(frozen=True)
class Hostile:
    path: str  # relative to the rules folder
    text: str  # appended to a list, or the whole tenant.toml
    line: int  # where the error must point
    message: str


CASES = {
    "quote-and-bare-cr": Hostile(
        LIST, '"+8613800138000",risk2\rx,vendorA,2026-01-05,2099-12-31\n', -1, "line break (CR)"
    ),
    "field-over-128k": Hostile(
        LIST, f'"+8613800138000",risk2,"{"x" * 140_000}",2026-01-05,\n', -1, "longer than 131,072"
    ),
    "toml-3000-deep": Hostile(
        TOML, "x = " + "[" * 3000 + "]" * 3000 + "\n", 1, "nested more than 32 deep"
    ),
    "toml-long-dotted-key": Hostile(
        TOML, ".".join(["a"] * 20_000) + " = 1\n", 1, "dotted key of more than 32 parts"
    ),
    "toml-huge-number": Hostile(
        TOML, "[limits]\nmax_rps = 1" + "0" * 400 + "\n", 2, "max_rps must be a whole number"
    ),
}


def plant(rules: Path, case: Hostile) -> tuple[Path, int]:
    """Write the hostile file; returns it and the 1-based line the error must name."""
    target = rules / case.path
    if case.path == LIST:
        before = target.read_text()
        target.write_text(before + case.text)
        return target, before.count("\n") + 1
    target.write_text(case.text)
    return target, case.line


@pytest.mark.parametrize("name", list(CASES))
def test_check_names_the_file_and_line(tmp_path: Path, name: str) -> None:
    rules = copy_rules(tmp_path)
    _, line = plant(rules, CASES[name])
    out = ringfence("check", str(rules))
    no_traceback(out)
    assert out.returncode == 1
    assert f"{CASES[name].path}:{line}:" in out.stdout, out.stdout
    assert CASES[name].message in out.stdout


@pytest.mark.parametrize("name", list(CASES))
async def test_a_reload_reports_it_and_keeps_the_last_good_policy(
    tmp_path: Path, name: str
) -> None:
    rules = copy_rules(tmp_path)
    async with running_server(rules) as s:
        good = await s.decisions.Evaluate(request("+8613800138000"), timeout=5)
        _, line = plant(rules, CASES[name])
        await s.server.reload()
        status = await s.policies.GetPolicyStatus(
            ppb.GetPolicyStatusRequest(tenant="demo"), timeout=5
        )
        (demo,) = status.tenants
        assert f"{CASES[name].path}:{line}" in demo.last_error
        assert CASES[name].message in demo.last_error
        assert demo.version == good.policy_version
        again = await s.decisions.Evaluate(request("+8613800138000"), timeout=5)
        assert again.policy_version == good.policy_version


# -- the language server ---------------------------------------------------------------


@pytest.fixture
def lsp_rules(tmp_path: Path) -> Path:
    return copy_rules(tmp_path)


@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=[RINGFENCE, "lsp", "--check-timeout", "20"])
)
async def client(lsp_client: LanguageClient, lsp_rules: Path) -> AsyncIterator[LanguageClient]:
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"),
            root_uri=uri(lsp_rules),
            workspace_folders=[types.WorkspaceFolder(uri(lsp_rules), "rules")],
        )
    )
    yield lsp_client
    await lsp_client.shutdown_session()


@pytest.mark.parametrize("name", list(CASES))
async def test_the_language_server_shows_it_and_keeps_checking(
    client: LanguageClient, lsp_rules: Path, name: str
) -> None:
    case = CASES[name]
    policy = lsp_rules / "demo" / "policy.rf"
    good_policy = policy.read_text()
    backup = lsp_rules.parent / "backup"
    shutil.copytree(lsp_rules / "demo", backup)
    target, line = plant(lsp_rules, case)
    u = await open_file(client, policy)
    found = await diagnostics(client, uri(target), lambda d: bool(errors(d)))
    (err,) = errors(found)
    assert case.message in err.message
    assert err.range.start.line == line - 1
    # The check task lives on: an error typed in the policy still shows up, and fixing
    # the hostile file clears its diagnostics.
    change(client, u, good_policy.replace("then review", "then reviw", 1), 2)
    await diagnostics(client, u, lambda d: any("reviw" in e.message for e in errors(d)))
    original = backup / target.relative_to(lsp_rules / "demo")
    if original.exists():
        shutil.copy(original, target)
    else:
        target.unlink()
    change(client, u, good_policy, 3)
    await diagnostics(client, u, lambda d: not errors(d))
    await diagnostics(client, uri(target), lambda d: not errors(d))
