"""The shipped rules: every tenant compiles with its lists, and the demo tenant's rule
tests (rules/demo/tests/*.toml) pass, loaded exactly as the server loads them."""

from __future__ import annotations

import tomllib
from functools import cache

import pytest
from support import RULES

from dsl.testing import RuleCase, parse_cases, run_case
from server.bundle.load import TenantBundle, load_bundle
from server.bundle.registry import TenantRegistry
from server.phone import PhoneParser
from server.state import MemoryBackend

PARSER = PhoneParser()
CASE_FILES = sorted((RULES / "demo" / "tests").glob("*.toml"))


@cache
def demo() -> TenantBundle:
    return load_bundle(RULES, "demo", PARSER)


def _cases() -> list[RuleCase]:
    cases: list[RuleCase] = []
    for path in CASE_FILES:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        cases += parse_cases(
            data, f"demo/tests/{path.name}", lambda raw, region: PARSER.parse(raw, region or "CN")
        )
    return cases


CASES = _cases()


def test_every_shipped_tenant_compiles() -> None:
    registry = TenantRegistry(RULES, PARSER)
    outcomes = registry.load_sync()
    assert outcomes
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_demo_case(case: RuleCase) -> None:
    bundle = demo()
    result = run_case(bundle.policy, case, bundle.lists, MemoryBackend(hash_key=b"t"))
    assert result.passed, result.report()


def test_every_demo_rule_is_exercised() -> None:
    bundle = demo()
    fired: set[str] = set()
    for case in CASES:
        result = run_case(bundle.policy, case, bundle.lists, MemoryBackend(hash_key=b"t"))
        assert result.decision is not None
        fired |= {m.rule for m in result.decision.matches}
    assert fired == {r.name for r in bundle.policy.rules}


def test_demo_lists_are_what_the_policy_declares() -> None:
    assert sorted((d.name, d.path) for d in demo().policy.lists) == [
        ("code_platform_numbers", "_shared/lists/code_platform_numbers.csv"),
        ("datacentres", "lists/datacentres.csv"),
        ("privacy_numbers", "lists/privacy_numbers.csv"),
    ]
