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


# The demo policy and the language's second version, for the random edits below.
SECOND = (ROOT / "tests" / "editors" / "second_version.rf").read_text()
SNIPPETS = [
    "\n",
    "rule x {\n",
    "}\n",
    "    when true\n",
    "const Q = 1\n",
    "# c\n",
    '"\n',
    "rule",
    # Syntax errors the parser recovers from (every one is reported) and hints for.
    "condition c = a && b\n",
    "    when a = 1\n",
    "    priority 1 < x < 3\n",
    "    when x AND y\n",
    "settings {\n",
    "list l from 'x.csv'\n",
    'r"\\"',
    "{",
    "    score 2.5\n",
    "aggregate a = count(per (number, app), over 30d)\n",
    "shadow rule y {\n",
]


@pytest.mark.parametrize("seed", [13, 14, 15])
def test_same_diagnostics_after_random_edits(seed: int) -> None:
    """Insert, delete and duplicate lines of the demo policy (with second-version syntax)
    and a duplicated rule (whose 'already defined at path:line' message names another
    chunk); many edits leave several syntax errors, each reported."""
    rng = random.Random(seed)
    base = (ROOT / "rules" / "demo" / "policy.rf").read_text() + SECOND
    cache = ChunkCache()
    text = base
    snippets = SNIPPETS
    several = 0
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
        got = _chunked(cache, text)
        assert got == _whole(text), text
        several += sum(d.line > 0 and "unexpected" in d.message for d in got) > 1
    assert several  # the recovery path was taken


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


def test_an_edit_in_a_broken_file_reparses_only_what_it_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Recovery parses every declaration after a syntax error; while the file stays
    broken, an edit re-parses only the declarations it touched (and the answer is still
    the whole parse's)."""
    import server.lsp.chunks as chunks

    parsed: list[str] = []
    real = chunks.declaration_error

    def counting(text: str, lines_above: int, path: str) -> Diagnostic | None:
        parsed.append(text)
        return real(text, lines_above, path)

    monkeypatch.setattr(chunks, "declaration_error", counting)
    rules = "".join(
        f"rule r{i} {{\n    when event.local_hour > {i}\n    then review\n}}\n" for i in range(50)
    )
    broken = "rule first {\n    when a && b\n    then block\n}\n" + rules
    cache = ChunkCache()
    assert _chunked(cache, broken) == _whole(broken)
    assert len(parsed) == 51
    parsed.clear()
    # Still broken, one rule further down edited, a line added at the top.
    edited = "\n" + broken.replace("> 7\n", "> 8 8\n")
    got = _chunked(cache, edited)
    assert got == _whole(edited)
    assert [d.line for d in got] == [3, 35]
    assert sorted(parsed)[-1].startswith("rule r7")  # and the new blank line: nothing else
    assert len(parsed) == 2
