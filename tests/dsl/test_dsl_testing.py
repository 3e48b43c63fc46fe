"""dsl.testing: the rule-test file format, its errors, and the expected-vs-got report."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dsl_helpers import GOLDEN, DictList, check_golden, make_phone

from dsl import PolicyError, compile_policy, render_all
from dsl.decision import Action, Decision, Match, RuleTrace
from dsl.facts import PhoneFacts
from dsl.testing import explain_text, load_cases, parse_cases, run_case
from server.state import MemoryBackend

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
    return load_cases(text, "t/tests/x.toml", make_phone)


def test_a_passing_case() -> None:
    (case,) = cases(
        '[[case]]\nname = "n"\nphone = "13800000001"\ndefault_region = "CN"\n'
        "aggregates = { hits = 5 }\n"
        '[case.expect]\naction = "review"\nrisk = 2\ntags = ["many"]\nrules = ["many"]\n'
    )
    assert case.facts.phone.e164 == "+8613800000001"
    result = run_case(POLICY, case, {}, MemoryBackend(hash_key=b"t"))
    assert result.passed, result.report()
    assert result.report() == "ok   t/tests/x.toml:1 case[0] 'n'"


def test_list_override_and_failure_report() -> None:
    (case,) = cases(
        '[[case]]\nname = "vip"\nphone = "+8613800000001"\n'
        "aggregates = { hits = 9 }\nlists = { vip = true }\n"
        '[case.expect]\naction = "review"\ntags = ["many"]\nrules = ["many"]\n'
    )
    result = run_case(POLICY, case, {"vip": DictList({})}, MemoryBackend(hash_key=b"t"))
    assert not result.passed
    report = result.report().splitlines()
    assert report[0] == "FAIL t/tests/x.toml:1 case[0] 'vip'"
    assert report[1] == "    action: expected review, got allow"
    assert report[2] == "    tags: expected [many], got [many, vip] (unexpected vip)"
    assert report[3] == "    rules: expected [many], got [many, vip_pass] (unexpected vip_pass)"
    assert "explanation:" in report[4]


def test_an_age_is_seconds_or_a_duration() -> None:
    young = compile_policy(
        {"t/p.rf": 'rule young { when age(per number) < 1h then review tags "young" }\n'},
        tenant="t",
    )
    for value in ('"10m"', "600"):
        (case,) = cases(
            f'[[case]]\nname = "y"\nphone = "+8613800000001"\n'
            f'aggregates = {{ "age(per number)" = {value} }}\n'
            '[case.expect]\naction = "review"\nrules = ["young"]\n'
        )
        assert case.values == {"age(per number)": 600}
        assert run_case(young, case, {}, MemoryBackend(hash_key=b"t")).passed
    with pytest.raises(PolicyError) as err:
        cases(
            '[[case]]\nname = "y"\nphone = "1"\naggregates = { "age(per number)" = "ten" }\n'
            '[case.expect]\naction = "allow"\n'
        )
    assert 'is a time: seconds (600), a duration such as "10m", or "unknown"' in str(err.value)


def test_unknown_aggregate_values_and_unknown_names() -> None:
    (case,) = cases(
        '[[case]]\nname = "u"\nphone = "+8613800000001"\n'
        'aggregates = { hits = "unknown", nope = 1 }\n[case.expect]\naction = "allow"\n'
    )
    result = run_case(POLICY, case, {}, MemoryBackend(hash_key=b"t"))
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
            'aggregates.h must be a count (an int >= 0) or "unknown"',
        ),
        (
            '[[case]]\nname = "a"\nphone = "1"\nevent = { scen = "x" }\n'
            '[case.expect]\naction = "allow"',
            "unknown key 'scen' in event; did you mean 'scene'?",
        ),
        (
            '[[case]]\nname = "a"\nphone = "1"\nphone_facts = { valid = "no" }\n'
            '[case.expect]\naction = "allow"',
            "phone_facts.valid must be true or false",
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


def test_parse_cases_without_positions_still_reports() -> None:
    with pytest.raises(PolicyError) as err:
        parse_cases(tomllib.loads('[[case]]\nname = 1\nphone = "1"'), "x.toml", make_phone)
    assert [(d.line, d.column) for d in err.value.diagnostics] == [(1, 1), (1, 1)]


# -- golden: every kind of bad file, against a small policy, as `ringfence test` prints it

RULETEST = GOLDEN / "ruletest"
GOLDEN_POLICY = compile_policy(
    {"t/policy.rf": (RULETEST / "policy.rf").read_text(encoding="utf-8")}, tenant="t"
)


def strict_phone(raw: str, region: str) -> PhoneFacts:
    """The test parser, refusing text without digits as the server's parser does."""
    if not any(ch.isdigit() for ch in raw):
        raise ValueError("not a phone number (no digits)")
    return make_phone(raw, region or "CN")


@pytest.mark.parametrize("case", sorted(RULETEST.glob("*.toml")), ids=lambda p: p.stem)
def test_bad_case_file_golden(case: Path) -> None:
    text = case.read_text(encoding="utf-8")
    shown = f"t/tests/{case.name}"
    with pytest.raises(PolicyError) as err:
        load_cases(text, shown, strict_phone, policy=GOLDEN_POLICY)
    diags = err.value.diagnostics
    # Every error points into the file at a real line, never at a made-up 1:1.
    lines = text.splitlines()
    assert all(1 <= d.line <= len(lines) for d in diags), diags
    check_golden(case.with_suffix(".txt"), render_all(diags, {shown: text}) + "\n")


def test_there_are_enough_bad_case_files() -> None:
    assert len(list(RULETEST.glob("*.toml"))) >= 10


# -- TOML date-times for occurred_at


@pytest.mark.parametrize(
    ("written", "expected_utc", "local_hour"),
    [
        ("2026-01-05T09:30:00+08:00", "2026-01-05T01:30:00", 9),
        ("2026-01-05T01:30:00Z", "2026-01-05T01:30:00", 9),
        ("2026-01-05 01:30:00z", "2026-01-05T01:30:00", 9),
        # Local date-times are wall-clock times in the policy's zone (Asia/Shanghai).
        ("2026-01-05T09:30:00", "2026-01-05T01:30:00", 9),
        ("2026-01-05T23:59:59.5", "2026-01-05T15:59:59.500000", 23),
        ("1767576600", "2026-01-05T01:30:00", 9),
        ("1767576600.25", "2026-01-05T01:30:00.250000", 9),
    ],
)
def test_occurred_at_accepts_toml_datetimes(
    written: str, expected_utc: str, local_hour: int
) -> None:
    text = (
        f'[[case]]\nname = "t"\nphone = "13800000001"\nevent = {{ occurred_at = {written} }}\n'
        '[case.expect]\naction = "allow"\n'
    )
    (case,) = load_cases(text, "x.toml", make_phone, policy=GOLDEN_POLICY)
    when = datetime.fromtimestamp(case.facts.event.occurred_at, UTC)
    assert when.replace(tzinfo=None).isoformat() == expected_utc
    decision = run_case(GOLDEN_POLICY, case, {}, MemoryBackend(hash_key=b"t")).decision
    assert decision is not None


def test_local_datetime_without_a_policy_is_utc() -> None:
    text = (
        '[[case]]\nname = "t"\nphone = "13800000001"\n'
        "event = { occurred_at = 2026-01-05T09:30:00 }\n"
        '[case.expect]\naction = "allow"\n'
    )
    (case,) = load_cases(text, "x.toml", make_phone)
    assert case.facts.event.occurred_at == datetime(2026, 1, 5, 9, 30, tzinfo=UTC).timestamp()


def test_a_wall_clock_time_the_clocks_skip_is_an_error() -> None:
    policy = compile_policy(
        {
            "t/p.rf": 'settings { timezone = "America/New_York" }\n'
            "rule r { when event.local_hour == 2 then review }\n"
        },
        tenant="t",
    )
    text = (
        '[[case]]\nname = "gap"\nphone = "13800000001"\n'
        "event = { occurred_at = 2026-03-08T02:30:00 }\n"
        '[case.expect]\naction = "allow"\n'
    )
    with pytest.raises(PolicyError) as err:
        load_cases(text, "x.toml", make_phone, policy=policy)
    (d,) = err.value.diagnostics
    assert (d.line, d.column) == (4, 25)
    assert "does not exist in America/New_York" in d.message


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a = " + "[\n" * 5000 + "]\n" * 5000, 33, "nested more than 32 deep"),
        ("x = 1\n" + "a" + ".a" * 40 + " = 1\n", 2, "dotted key of more than 32 parts"),
        ("x = 1" + "0" * 5000 + "\n", 1, "longer than 1000 characters"),
        ("a = " + "{b = " * 3000 + "1" + "}" * 3000, 1, "line longer than"),
        ("x = 1\n" + "a" + ".a" * 6000 + " = 1\n", 2, "line longer than 10000"),
        ("# big\n" * 200_000, 1, "larger than"),
    ],
)
def test_hostile_case_files_are_errors_not_crashes(text: str, line: int, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        load_cases(text, "x.toml", make_phone)
    (d,) = err.value.diagnostics
    assert d.line == line
    assert message in d.message
