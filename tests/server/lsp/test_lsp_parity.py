"""The editor shows exactly what the checker reports: every golden policy, through the
language server, gives check_policy's messages at check_policy's positions."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsp_support import diagnostics, open_file
from pytest_lsp import LanguageClient

from dsl import check_policy
from server.bundle.load import read_library

GOLDEN = Path(__file__).parents[2] / "dsl" / "golden"
# The checker's goldens. (Other golden policies declare lists that do not exist beside
# them: the editor reports those files missing, as `ringfence check` does, and
# check_policy, which reads no files, does not.)
CASES = sorted([*GOLDEN.glob("diagnostics/*.rf"), *GOLDEN.glob("codegen/*.rf")])


@pytest.mark.slow
async def test_every_golden_file_matches_the_checker(client: LanguageClient, rules: Path) -> None:
    library = read_library(rules)[0]
    opened = []
    for i, case in enumerate(CASES):
        folder = rules / f"golden{i}"
        folder.mkdir()
        path = folder / "policy.rf"
        path.write_text(case.read_text())
        opened.append((case, path, await open_file(client, path)))
    for case, path, u in opened:
        rel = f"{path.parent.name}/policy.rf"
        want = check_policy({rel: path.read_text()}, library=library, tenant=path.parent.name)
        want = [d for d in want if d.path == rel]
        n = len(want)
        got = await diagnostics(client, u, lambda d, n=n: len(d) == n)
        assert [(d.range.start.line + 1, d.range.start.character + 1, d.message) for d in got] == [
            (d.line, d.column, d.message) for d in want
        ], case.name
