"""Incremental parsing gives exactly what parsing the whole file gives."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from dsl import check_policy
from dsl.diagnostics import Diagnostic
from server.bundle.load import read_library
from server.lsp.chunks import ChunkCache

ROOT = Path(__file__).parents[3]
FILES = [
    *sorted((ROOT / "tests" / "dsl" / "golden").glob("**/*.rf")),
    ROOT / "rules/demo/policy.rf",
]
LIBRARY = read_library(ROOT / "rules")[0]


def _whole(text: str) -> list[Diagnostic]:
    return list(check_policy({"demo/p.rf": text}, library=LIBRARY, tenant="demo"))


def _chunked(cache: ChunkCache, text: str) -> list[Diagnostic]:
    diags = check_policy(
        {"demo/p.rf": text}, library=LIBRARY, tenant="demo", parser=cache.module_parser()
    )
    return sorted({cache.real(d) for d in diags}, key=Diagnostic.sort_key)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_same_diagnostics_as_a_whole_parse(path: Path) -> None:
    text = path.read_text()
    assert _chunked(ChunkCache(), text) == _whole(text)


def test_same_diagnostics_after_random_edits() -> None:
    """Insert, delete and duplicate lines of the demo policy and a duplicated rule (whose
    'already defined at path:line' message names another chunk)."""
    rng = random.Random(13)
    base = (ROOT / "rules" / "demo" / "policy.rf").read_text()
    cache = ChunkCache()
    text = base
    snippets = [
        "\n",
        "rule x {\n",
        "}\n",
        "    when true\n",
        "const Q = 1\n",
        "# c\n",
        '"\n',
        "rule",
    ]
    for _ in range(150):
        lines = text.split("\n")
        i = rng.randrange(len(lines))
        op = rng.random()
        if op < 0.4:
            lines.insert(i, rng.choice(snippets).rstrip("\n"))
        elif op < 0.7 and len(lines) > 5:
            del lines[i]
        elif op < 0.85:
            lines.insert(i, lines[rng.randrange(len(lines))])
        else:
            text = base
            continue
        text = "\n".join(lines)
        assert _chunked(cache, text) == _whole(text), text


def test_a_duplicate_points_at_the_real_line() -> None:
    text = "const A = 1\n\nconst B = A\n\nconst A = 2\n"
    cache = ChunkCache()
    _chunked(cache, text)
    got = _chunked(cache, "\n\n" + text)
    assert any("already declared as a const at demo/p.rf:3" in d.message for d in got)
    assert got == _whole("\n\n" + text)


def test_a_cut_inside_an_item_falls_back_to_one_chunk() -> None:
    """`list` starting a continuation line looks like an item start but is not."""
    text = 'const X = 1\naggregate a = count(per\nlist l, over 1h)\nlist l from "x.csv"\n'
    assert _chunked(ChunkCache(), text) == _whole(text)
    parsed = ChunkCache().parse(text, "demo/p.rf")
    assert parsed.ok
    assert [type(i).__name__ for i in parsed.module().items] == ["Const", "Aggregate", "ListDecl"]


def test_blank_and_comment_lines_between_items_are_chunks_of_their_own() -> None:
    cache = ChunkCache()
    text = "# head\nconst A = 1\n\n# about r\nrule r {\n    when A > 0\n    then allow\n}\n"
    first = cache.parse(text, "demo/p.rf")
    second = cache.parse(
        "\n" + text.replace("\n\n# about r", "\n\n\n# about r, edited"), "demo/p.rf"
    )
    items = {c.id for c, _ in first.chunks if c.module and c.module.items}
    assert items == {c.id for c, _ in second.chunks if c.module and c.module.items}
