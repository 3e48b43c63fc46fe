"""The cookbook in docs/dsl.md is executable: every recipe compiles and its cases pass."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from dsl import compile_policy
from dsl.facts import PhoneFacts
from dsl.testing import parse_cases, run_case
from server.phone import PhoneParser, SegmentTable
from server.state import MemoryBackend

DOC = Path(__file__).resolve().parents[2] / "docs" / "dsl.md"
_BLOCK = re.compile(r"```(rf|toml)\n(.*?)```", re.S)
_PARSER = PhoneParser(SegmentTable.load(None))


def _recipes() -> list[tuple[str, str, str]]:
    text = DOC.read_text(encoding="utf-8")
    cookbook = text[text.index("## Cookbook") :]
    out = []
    for section in cookbook.split("\n### ")[1:]:
        title = section.splitlines()[0].strip()
        blocks = dict((kind, body) for kind, body in _BLOCK.findall(section))
        out.append((title, blocks.get("rf", ""), blocks.get("toml", "")))
    return out


RECIPES = _recipes()


def test_the_cookbook_has_the_issue_tasks() -> None:
    assert len(RECIPES) >= 8
    assert all(rf and toml for _, rf, toml in RECIPES)


def _phone(raw: str, region: str) -> PhoneFacts:
    return _PARSER.parse(raw, region or "CN")


@pytest.mark.parametrize(("title", "rf", "toml"), RECIPES, ids=[r[0] for r in RECIPES])
def test_recipe(title: str, rf: str, toml: str) -> None:
    policy = compile_policy({"cookbook/policy.rf": rf}, tenant="cookbook")
    assert not policy.warnings, policy.warnings
    cases = parse_cases(tomllib.loads(toml), f"cookbook: {title}", _phone)
    assert cases
    for case in cases:
        result = run_case(policy, case, {}, MemoryBackend(hash_key=b"t"))
        assert result.passed, result.report()
