"""The demo tenant's rule tests (rules/demo/tests/*.toml) pass through dsl.testing, with
the demo list loaded by the server's real list loader."""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path

import pytest
from dsl_helpers import ROOT, make_phone

from dsl import compile_policy
from dsl.policy import CompiledPolicy
from dsl.testing import RuleCase, parse_cases, run_case
from server.lists.loader import load_list

DEMO = ROOT / "rules" / "demo"
CASE_FILES = sorted((DEMO / "tests").glob("*.toml"))


def _policy() -> CompiledPolicy:
    sources = {f"demo/{p.name}": p.read_text(encoding="utf-8") for p in DEMO.glob("*.rf")}
    return compile_policy(sources, tenant="demo")


def _cases() -> list[RuleCase]:
    cases: list[RuleCase] = []
    for path in CASE_FILES:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        cases += parse_cases(data, f"demo/tests/{path.name}", make_phone)
    return cases


POLICY = _policy()
LISTS = {
    d.name: load_list(DEMO / d.path, name=d.name, today=date(2026, 6, 1)) for d in POLICY.lists
}
CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_demo_case(case: RuleCase) -> None:
    result = run_case(POLICY, case, LISTS)
    assert result.passed, result.report()


def test_every_demo_rule_is_exercised() -> None:
    fired: set[str] = set()
    for case in CASES:
        result = run_case(POLICY, case, LISTS)
        assert result.decision is not None
        fired |= {m.rule for m in result.decision.matches}
    assert fired == {r.name for r in POLICY.rules}


def test_demo_list_file_is_what_the_policy_declares() -> None:
    assert [(d.name, Path(d.path).as_posix()) for d in POLICY.lists] == [
        ("privacy_numbers", "lists/privacy_numbers.csv")
    ]
    assert len(LISTS["privacy_numbers"]) >= 20
