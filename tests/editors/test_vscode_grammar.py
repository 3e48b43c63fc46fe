"""The VS Code TextMate grammar, run through VS Code's own tokenizer (vscode-textmate with
vscode-oniguruma, installed by `make test`), against the shipped policies and the golden
files: every token is scoped as the language's lexer says it should be."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest
from lark.exceptions import UnexpectedInput

from dsl import reference
from server.lsp import textmate

ROOT = Path(__file__).resolve().parents[2]
VSCODE = ROOT / "editors" / "vscode"
GRAMMAR = VSCODE / "syntaxes" / "ringfence.tmLanguage.json"
GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("RINGFENCE_UPDATE_GOLDEN") == "1"
SECOND = Path(__file__).resolve().parent / "second_version.rf"
RULES = sorted((ROOT / "rules").glob("**/*.rf"))
DSL_GOLDEN = sorted((ROOT / "tests" / "dsl" / "golden").glob("**/*.rf"))
ROOT_SCOPE = "source.ringfence"

Token = tuple[int, int, str, tuple[str, ...]]  # line (1-based), column (1-based), text, scopes


@cache
def tokenize_all() -> dict[Path, list[Token]]:
    node = shutil.which("node")
    if node is None or not (VSCODE / "node_modules" / "vscode-textmate").is_dir():
        pytest.fail("node and editors/vscode/node_modules are needed: run `make test`")
    files = [*RULES, *DSL_GOLDEN, SECOND]
    out = subprocess.run(
        [node, str(VSCODE / "test" / "tokenize.js"), str(GRAMMAR), *map(str, files)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    result: dict[Path, list[Token]] = {}
    for entry in json.loads(out):
        tokens: list[Token] = []
        for i, line in enumerate(entry["lines"], start=1):
            col = 1
            for t in line:
                tokens.append((i, col, t["text"], tuple(t["scopes"])))
                col += len(t["text"])
        result[Path(entry["file"])] = tokens
    return result


def tokens(path: Path) -> list[Token]:
    return tokenize_all()[path]


def scope_at(path: Path, line: int, col: int) -> tuple[str, ...]:
    for ln, c, text, scopes in tokens(path):
        if ln == line and c <= col < c + len(text):
            return scopes
    raise AssertionError(f"no token at {path}:{line}:{col}")


def find(path: Path, text: str, nth: int = 0) -> tuple[str, ...]:
    """The scopes of the ``nth`` token whose text is exactly ``text``."""
    found = [s for _, _, t, s in tokens(path) if t == text]
    assert len(found) > nth, f"{text!r} is not a token of {path.name}"
    return found[nth]


def test_the_grammar_is_generated_from_the_language_tables() -> None:
    assert GRAMMAR.read_text() == textmate.render(), "run: python -m server.lsp.textmate"


def _dump(path: Path) -> str:
    lines = []
    for ln, col, text, scopes in tokens(path):
        if not text.strip() and scopes == (ROOT_SCOPE,):
            continue
        lines.append(f"{ln}:{col} {text!r} {' '.join(s for s in scopes if s != ROOT_SCOPE)}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("path", [*RULES, SECOND], ids=lambda p: p.stem)
def test_golden_scope_dump(path: Path) -> None:
    golden = GOLDEN / f"{path.stem}.scopes"
    dump = _dump(path)
    if UPDATE:
        golden.write_text(dump)
    assert golden.exists(), f"no {golden.name}: run with RINGFENCE_UPDATE_GOLDEN=1"
    assert dump == golden.read_text()


# What the real lexer (grammar.lark) says each token is, and the scopes that fit it.
_TERMINAL_SCOPES: dict[str, tuple[str, ...]] = {
    "INT": ("constant.numeric.integer",),
    "DECIMAL": ("constant.numeric.decimal",),
    "DURATION": ("constant.numeric.duration", "invalid.illegal.duration"),
    "STRING": ("string.quoted.double",),
    "RAW_STRING": ("string.quoted.double.raw",),
    "NAME": (
        "variable.",
        "entity.name.",
        "support.",
        "constant.language.action",
        "constant.language.window",
        "keyword.control.clause",  # `then`'s word pattern never reaches a bare NAME
    ),
    "COMPOP": ("keyword.operator.comparison",),
    "PLUS": ("keyword.operator.arithmetic",),
    "MINUS": ("keyword.operator.arithmetic",),
    "STAR": ("keyword.operator.arithmetic",),
    "SLASH": ("keyword.operator.arithmetic", "punctuation.separator.network"),  # per ip/24
}
_KEYWORD_SCOPES = (
    "keyword.",
    "storage.modifier",
    "constant.language.boolean",
    "support.type.key",  # `list` in `per list NAME`
)


def _expected(tok_type: str, text: str) -> tuple[str, ...]:
    if tok_type in _TERMINAL_SCOPES:
        return _TERMINAL_SCOPES[tok_type]
    if text in reference.keywords().all or tok_type == "LIST":
        return _KEYWORD_SCOPES
    if text == "=":
        return ("keyword.operator.assignment",)
    return ("punctuation.",)


@pytest.mark.parametrize("path", [*RULES, *DSL_GOLDEN, SECOND], ids=lambda p: p.stem)
def test_every_token_is_scoped_as_the_lexer_reads_it(path: Path) -> None:
    text = path.read_text()
    lexer = reference._grammar()
    checked = 0
    lexed = []
    stream = lexer.lex(text)
    while True:
        try:
            lexed.append(next(stream))
        except StopIteration:
            break
        except UnexpectedInput:  # a golden file with a lexical error: check what came before
            break
    for tok in lexed:
        scopes = scope_at(path, tok.line or 1, tok.column or 1)
        want = _expected(tok.type, str(tok))
        leaf = [s for s in scopes if s != ROOT_SCOPE]
        assert any(s.startswith(want) for s in leaf), (
            f"{path.name}:{tok.line}:{tok.column} {tok.type} {str(tok)!r}: {scopes}"
        )
        checked += 1
    assert checked or not text.strip()


@pytest.mark.parametrize("path", [*RULES, *DSL_GOLDEN, SECOND], ids=lambda p: p.stem)
def test_no_text_is_left_unscoped_and_comments_are_comments(path: Path) -> None:
    for ln, col, text, scopes in tokens(path):
        if text.strip():
            assert scopes != (ROOT_SCOPE,), f"{path.name}:{ln}:{col} {text!r} has no scope"
    for i, line in enumerate(path.read_text().split("\n"), start=1):
        if line.lstrip().startswith("#"):
            col = line.index("#") + 1
            assert "comment.line.number-sign.ringfence" in scope_at(path, i, col)


DEMO = ROOT / "rules" / "demo" / "policy.rf"


def test_targeted_scopes_in_the_demo_policy() -> None:
    text = DEMO.read_text()
    lines = text.split("\n")

    def at(needle: str, offset: int = 0, nth: int = 0) -> tuple[str, ...]:
        i = -1
        for _ in range(nth + 1):
            i = text.index(needle, i + 1)
        i += offset
        ln = text.count("\n", 0, i) + 1
        return scope_at(DEMO, ln, i - (text.rfind("\n", 0, i) + 1) + 1)

    assert "keyword.control.clause.ringfence" in find(DEMO, "when")
    assert "constant.language.action.ringfence" in find(DEMO, "review")
    assert "storage.modifier.shadow.ringfence" in find(DEMO, "shadow")
    assert "keyword.other.declaration.ringfence" in find(DEMO, "aggregate")
    assert "entity.name.constant.ringfence" in at("PRIVACY_HOURLY_LIMIT = 100")
    assert "entity.name.function.rule.ringfence" in at("privacy_number_low_volume")
    assert "constant.numeric.duration.ringfence" in find(DEMO, "1h")
    assert "constant.numeric.duration.ringfence" in find(DEMO, "3h")
    assert "constant.numeric.integer.ringfence" in find(DEMO, "100")
    assert "constant.language.window.ringfence" in find(DEMO, "today")
    assert "support.type.key.ringfence" in at("per list", 4)
    # A reason with interpolations, one of them holding a string of its own.
    reason = 'reason "privacy number ({privacy_numbers.label("risk")}), {privacy_hits_1h} list'
    assert reason in text
    assert "meta.interpolation.ringfence" in at(reason, reason.index("privacy_numbers."))
    assert "support.function.helper.ringfence" in at(reason, reason.index("label"))
    inner = at(reason, reason.index('"risk"') + 1)
    assert inner.count("string.quoted.double.ringfence") == 2
    assert "meta.interpolation.ringfence" in inner
    after = at(reason, reason.index("), {"))
    assert "meta.interpolation.ringfence" not in after
    assert "string.quoted.double.ringfence" in after
    assert "variable.other.property.fact.ringfence" in at("phone.segment_kind in", 6)
    assert "comment.line.number-sign.ringfence" in at("# list hits per hour", 2)
    assert "punctuation.definition.comment.ringfence" in at("# list hits per hour")
    assert len(lines) > 100


def test_second_version_syntax_is_coloured() -> None:
    p = SECOND
    text = p.read_text()

    def at(needle: str, offset: int = 0) -> tuple[str, ...]:
        i = text.index(needle) + offset
        ln = text.count("\n", 0, i) + 1
        return scope_at(p, ln, i - (text.rfind("\n", 0, i) + 1) + 1)

    assert "keyword.other.declaration.ringfence" in find(p, "condition")
    assert "entity.name.function.condition.ringfence" in find(p, "risky_segment")
    assert "constant.numeric.decimal.ringfence" in find(p, "0.25")
    assert "constant.numeric.decimal.ringfence" in find(p, "1.5")
    assert "constant.numeric.duration.ringfence" in find(p, "30d")
    assert "support.type.key.ringfence" in find(p, "app")
    assert "support.function.builtin.ringfence" in find(p, "age")
    assert "support.function.helper.ringfence" in find(p, "matches")
    for word in ("priority", "score"):
        assert "keyword.control.clause.ringfence" in find(p, word)
    for key in ("default_action", "review_score", "block_score"):
        assert "variable.other.property.setting.ringfence" in find(p, key)
    assert "constant.language.action.ringfence" in at("= review", 2)
    # Composite keys: `per (list vip, ip)` and `per list vip, per app`.
    assert "variable.other.list.ringfence" in at("(list vip", 6)
    assert "support.type.key.ringfence" in at("(list vip, ip)", 11)
    assert "variable.other.list.ringfence" in at("per list vip, per app", 9)
    assert "support.type.key.ringfence" in at("per list vip, per app", 18)
    # A raw string: no escapes, no interpolation, `r` part of the string.
    raw = 'r"^shop-\\d{2,}$"'
    assert raw in text
    assert "storage.type.string.raw.ringfence" in at(raw)
    for offset in range(1, len(raw)):
        scopes = at(raw, offset)
        assert "string.quoted.double.raw.ringfence" in scopes, offset
        assert "meta.interpolation.ringfence" not in scopes, offset
        assert "constant.character.escape.ringfence" not in scopes, offset
    assert "keyword.operator.arithmetic.ringfence" in at("score -5", 6)
    # ... also inside an interpolation, where its '}' does not end the interpolation.
    inner = 'r"^curl}")}"'
    assert "meta.interpolation.ringfence" in at(inner, 7)
    assert "string.quoted.double.raw.ringfence" in at(inner, 7)
    assert "punctuation.section.interpolation.end.ringfence" in at(inner, 10)
