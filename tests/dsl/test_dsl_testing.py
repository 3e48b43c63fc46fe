"""dsl.testing: the rule-test file format, its errors, and the expected-vs-got report."""

from __future__ import annotations

import tomllib

import pytest
from dsl_helpers import DictList, make_phone

from dsl import PolicyError, compile_policy
from dsl.decision import Action, Decision, Match, RuleTrace
from dsl.testing import explain_text, parse_cases, run_case

POLICY = compile_policy(
    {
        "t/p.rf": 'list vip from "vip.csv"\n'
        "aggregate hits = count(per number, over 1h)\n"
        'rule many { when hits > 3 then review tags "many" risk 2 reason "{hits} hits" }\n'
        'rule vip_pass { when phone in vip then allow override tags "vip" }\n'
    },
    tenant="t",
)


def cases(text: str) -> list:  # type: ignore[type-arg]
    return parse_cases(tomllib.loads(text), "t/tests/x.toml", make_phone)


def test_a_passing_case() -> None:
    (case,) = cases(
        '[[case]]\nname = "n"\nphone = "13800000001"\ndefault_region = "CN"\n'
        "aggregates = { hits = 5 }\n"
        '[case.expect]\naction = "review"\nrisk = 2\ntags = ["many"]\nrules = ["many"]\n'
    )
    assert case.facts.phone.e164 == "+8613800000001"
    result = run_case(POLICY, case, {})
    assert result.passed, result.report()
    assert result.report() == "ok   t/tests/x.toml case[0] 'n'"


def test_list_override_and_failure_report() -> None:
    (case,) = cases(
        '[[case]]\nname = "vip"\nphone = "+8613800000001"\n'
        "aggregates = { hits = 9 }\nlists = { vip = true }\n"
        '[case.expect]\naction = "review"\ntags = ["many"]\nrules = ["many"]\n'
    )
    result = run_case(POLICY, case, {"vip": DictList({})})
    assert not result.passed
    report = result.report().splitlines()
    assert report[0] == "FAIL t/tests/x.toml case[0] 'vip'"
    assert report[1] == "    action: expected review, got allow"
    assert report[2] == "    tags: expected [many], got [many, vip] (unexpected vip)"
    assert report[3] == "    rules: expected [many], got [many, vip_pass] (unexpected vip_pass)"
    assert "explanation:" in report[4]


def test_unknown_aggregate_values_and_unknown_names() -> None:
    (case,) = cases(
        '[[case]]\nname = "u"\nphone = "+8613800000001"\n'
        'aggregates = { hits = "unknown", nope = 1 }\n[case.expect]\naction = "allow"\n'
    )
    result = run_case(POLICY, case, {})
    assert not result.passed
    assert result.failures == ("unknown aggregate 'nope' (this policy has: hits)",)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("x = 1", "expected one or more [[case]] tables"),
        ('[[case]]\nphone = "1"\n[case.expect]\naction = "allow"', "every case needs a name"),
        ('[[case]]\nname = "a"\nphone = "1"', "every case needs an [case.expect] table"),
        (
            '[[case]]\nname = "a"\nphone = "1"\n[case.expect]\naction = "deny"',
            'expect.action must be "allow", "review" or "block"',
        ),
        (
            '[[case]]\nname = "a"\nphone = "1"\naggregates = { h = 1.5 }\n'
            '[case.expect]\naction = "allow"',
            'aggregates.h must be an int or "unknown"',
        ),
        (
            '[[case]]\nname = "a"\nphone = "1"\nevent = { scen = "x" }\n'
            '[case.expect]\naction = "allow"',
            "unknown key(s) in event: scen",
        ),
        (
            '[[case]]\nname = "a"\nphone = "1"\nphone_facts = { valid = "no" }\n'
            '[case.expect]\naction = "allow"',
            "phone_facts.valid must be a bool",
        ),
    ],
)
def test_bad_case_files(toml: str, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        cases(toml)
    assert any(message in d.message for d in err.value.diagnostics), err.value.diagnostics


def test_explain_text() -> None:
    d = Decision(
        Action.BLOCK,
        4,
        ("a", "b"),
        (
            Match("r1", Action.BLOCK, "why", risk_level=4, tags=("a",)),
            Match("r2", Action.REVIEW, "shadowy", shadow=True),
        ),
        unknown_inputs=True,
        trace=(RuleTrace("r1", True, True, "hits=5"), RuleTrace("r3", None, False, "")),
    )
    assert explain_text(d) == (
        "decision: block  risk 4  tags a, b\n"
        "note: some inputs were unknown (an aggregate missing, or a division by 0)\n"
        "matched:\n"
        "  block  r1: why\n"
        "  review r2 (shadow): shadowy\n"
        "rules:\n"
        "  [x] r1: true  (hits=5)\n"
        "  [ ] r3: unknown"
    )
