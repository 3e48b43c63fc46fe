"""The lint stage (dsl/lint.py): what it finds, what it leaves alone, and that what it
claims is true: a rule it calls dead fires for no value of its facts, one it calls always
true fires for every value (checked by brute force over every combination)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl import check_policy
from dsl.diagnostics import Diagnostic, Severity
from dsl.lint import NUMBER_TYPES, SEGMENT_KINDS
from dsl.options import CompileOptions
from server.phone import SEGMENT_KINDS as SERVER_SEGMENT_KINDS

DECLS = """
aggregate codes_today = count(per number, over today) where event.scene == "sms_code"
aggregate apps_today = distinct(event.app_id, per number, over today)
list privacy_numbers from "lists/privacy_numbers.csv"
"""


def findings(condition: str, *, options: CompileOptions | None = None) -> list[Diagnostic]:
    text = DECLS + f"rule r {{\n    when {condition}\n    then review\n}}\n"
    diags = check_policy({"t.rf": text}, options=options or CompileOptions())
    return [d for d in diags if "is never used" not in d.message]


def test_the_vocabularies_are_the_servers() -> None:
    assert SEGMENT_KINDS == SERVER_SEGMENT_KINDS
    types = {n.lower() for n in vars(phonenumbers.PhoneNumberType) if n.isupper()}
    assert types == NUMBER_TYPES


@pytest.mark.parametrize(
    "condition",
    [
        "event.local_hour between 0 and 5",
        "event.local_hour >= 22 or event.local_hour < 6",
        "event.local_hour in {22, 23, 0}",
        "event.local_weekday in {6, 7}",
        'phone.segment_kind in {"mvno", "iot"}',
        'phone.segment_kind == ""',
        'phone.number_type == "voip"',
        'phone.region == "CN"',
        'phone.national_number.starts_with("170")',
        'phone.e164.starts_with("+86170")',
        "phone in privacy_numbers",
        'event.attributes["contact"] in privacy_numbers',
        "event.device_id in privacy_numbers",
        "codes_today > 3 and codes_today < 10",
        "codes_today > 1.0",
        "codes_today * 2 > apps_today",
        "age(per number) < 10m",
        'event.scene == "register" or event.scene == "login"',
        'event.scene != "register" and event.scene != "login"',
        'not (event.scene == "a") or event.app_id == "x"',
        "event.local_hour < 12 or event.local_hour > 12",
        'event.app_id.lower() == "shop"',
        "phone.country_code == 86",
        'phone.prefix(3) == "861"',
        "sustained(codes_today > 3, 3d)",
        # A list may hold networks: what it holds is judged once its file is loaded.
        "event.ip in privacy_numbers",
        '"10.0.0.1" in privacy_numbers',
    ],
)
def test_sound_conditions_pass_quietly(condition: str) -> None:
    assert findings(condition) == []


@pytest.mark.parametrize(
    ("condition", "severity", "says"),
    [
        ('event.scene == "register" and event.scene == "login"', "error", "cannot both be"),
        ("event.local_hour > 24", "error", "event.local_hour is 0..23"),
        ("event.local_hour in {24, 25}", "error", "never true"),
        ("event.local_weekday == 0", "error", "1..7"),
        ("codes_today < 0", "error", "a count, never negative"),
        ("apps_today <= -1", "error", "distinct values, never negative"),
        ("age(per number) < 0s", "error", "an age, never negative"),
        ("phone.country_code == 1000", "error", "0..999"),
        ('phone.segment_kind == "MVNO"', "error", "did you mean 'mvno'?"),
        ('phone.number_type == "MOBILE"', "error", "did you mean 'mobile'?"),
        ('phone.region == "cn"', "error", "did you mean 'CN'?"),
        ('phone.national_number.starts_with("+86170")', "error", 'phone.starts_with("+86170")'),
        ('phone.e164.starts_with("86170")', "error", 'phone.e164.starts_with("+86170")'),
        ('phone.prefix(3) == "+86"', "error", "at most 3 digits"),
        ("event.app_id in privacy_numbers", "error", "event.app_id is an app id"),
        ("phone.national_number in privacy_numbers", "error", "write 'phone in privacy_numbers'"),
        ('"abc" in privacy_numbers', "error", '"abc" is not one'),
        ("phone.valid and not phone.valid", "error", "cannot both be"),
        ('event.app_id.upper() == "shop"', "error", "upper case"),
        ("codes_today == 0.5", "error", "never true"),
        ("codes_today > 0.5", "warning", "'codes_today >= 1'"),
        ("codes_today < 2.5", "warning", "'codes_today <= 2'"),
        ("codes_today >= 0", "warning", "fires on every request whenever"),
        ("phone.valid or not phone.valid", "warning", "fires on every request"),
        ("event.local_hour < 12 or event.local_hour >= 12", "warning", "always true"),
        ('event.scene != "a" or event.scene != "b"', "warning", "always true"),
        ("codes_today == codes_today", "warning", "always true"),
        ('phone.segment_kind != "MVNO"', "warning", "always true"),
        ("not (event.app_id in privacy_numbers)", "warning", "always true"),
        ('event.local_hour > 30 or event.scene == "register"', "warning", "is never true"),
        ('event.scene == "register" and codes_today >= 0', "warning", "is always true"),
        ('phone.segment_kind in {"mvno", "MVNO"}', "warning", "did you mean 'mvno'?"),
    ],
)
def test_findings(condition: str, severity: str, says: str) -> None:
    found = findings(condition)
    assert len(found) == 1, found
    (d,) = found
    assert d.severity is Severity(severity)
    assert says in d.message, d.message
    assert (d.path, d.line) == ("t.rf", 6)  # the when line, at the part it is about
    assert d.column >= 10


def test_a_fix_names_the_word_to_replace() -> None:
    (d,) = findings('phone.segment_kind == "MVNO"')
    assert d.suggestion is not None
    assert (d.suggestion.original, d.suggestion.replacement) == ("MVNO", "mvno")


def test_a_named_condition_is_judged_where_it_is_declared() -> None:
    text = (
        'condition odd_hour = event.local_hour > 24 or event.scene == "x"\n'
        "rule r {\n    when odd_hour\n    then review\n}\n"
    )
    (d,) = check_policy({"t.rf": text})
    assert (d.line, d.column, d.severity) == (1, 22, Severity.WARNING)
    assert "event.local_hour is 0..23" in d.message


def test_a_time_zone_that_differs_from_tenant_toml() -> None:
    text = 'settings {\n    timezone = "Asia/Shanghai"\n}\n'
    text += "rule r {\n    when phone.valid\n    then review\n}\n"
    options = CompileOptions(default_timezone="Europe/Berlin", tenant_timezone="Europe/Berlin")
    (d,) = check_policy({"t.rf": text}, options=options)
    assert (d.line, d.column, d.severity) == (2, 16, Severity.WARNING)
    assert 'differs from tenant.toml\'s "Europe/Berlin"' in d.message
    same = CompileOptions(default_timezone="Asia/Shanghai", tenant_timezone="Asia/Shanghai")
    assert check_policy({"t.rf": text}, options=same) == ()
    assert check_policy({"t.rf": text}) == ()  # tenant.toml names no time zone


def test_shadow_rules_may_share_a_live_rules_condition() -> None:
    """A shadow rule with a live rule's condition and another action is how a change is
    tried out: no warning."""
    text = (
        'rule live {\n    when event.app_id == "x"\n    then review\n}\n'
        'shadow rule candidate {\n    when event.app_id == "x"\n    then block\n}\n'
    )
    assert check_policy({"t.rf": text}) == ()


# -- soundness, by brute force ----------------------------------------------------------------

HOURS = range(24)
KINDS = sorted(SEGMENT_KINDS | {""})
SCENES = ("register", "login", "other")


@dataclass(frozen=True)
class Cond:
    text: str
    test: Callable[[int, str, str, bool], bool]


OPS: dict[str, Callable[[int, int], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


@st.composite
def atoms(draw: st.DrawFn) -> Cond:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        op, k = draw(st.sampled_from(sorted(OPS))), draw(st.integers(-2, 26))
        return Cond(f"event.local_hour {op} {k}", lambda h, s, c, v: OPS[op](h, k))
    if kind == 1:
        op, word = draw(st.sampled_from(["==", "!="])), draw(st.sampled_from([*KINDS, "MVNO"]))
        eq = op == "=="
        return Cond(f'phone.segment_kind {op} "{word}"', lambda h, s, c, v: (c == word) == eq)
    if kind == 2:
        op, word = draw(st.sampled_from(["==", "!="])), draw(st.sampled_from(SCENES[:2]))
        eq = op == "=="
        return Cond(f'event.scene {op} "{word}"', lambda h, s, c, v: (s == word) == eq)
    if kind == 3:
        hours = draw(st.frozensets(st.integers(-1, 25), min_size=1, max_size=4))
        shown = ", ".join(map(str, sorted(hours)))
        return Cond(f"event.local_hour in {{{shown}}}", lambda h, s, c, v: h in hours)
    return Cond("phone.valid", lambda h, s, c, v: v)


@st.composite
def conditions(draw: st.DrawFn, depth: int = 3) -> Cond:
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        return draw(atoms())
    kind = draw(st.sampled_from(["and", "or", "not"]))
    a = draw(conditions(depth - 1))
    if kind == "not":
        return Cond(f"not ({a.text})", lambda h, s, c, v: not a.test(h, s, c, v))
    b = draw(conditions(depth - 1))
    if kind == "and":
        return Cond(f"({a.text}) and ({b.text})", lambda *f: a.test(*f) and b.test(*f))
    return Cond(f"({a.text}) or ({b.text})", lambda *f: a.test(*f) or b.test(*f))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conditions())
def test_what_the_lint_claims_is_true(cond: Cond) -> None:
    text = f"rule r {{\n    when {cond.text}\n    then review\n}}\n"
    diags = check_policy({"t.rf": text})
    values = [
        cond.test(h, s, c, v)
        for h, s, c, v in itertools.product(HOURS, SCENES, KINDS, (True, False))
    ]
    if any("can never fire" in d.message for d in diags):
        assert not any(values), cond.text
    if any("fires on every request" in d.message for d in diags):
        assert all(values), cond.text
