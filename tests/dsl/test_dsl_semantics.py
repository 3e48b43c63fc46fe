"""Evaluation semantics: three-valued logic, decisions, override, shadow, on_error,
interpolation, and what plan() asks the state backend for."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from dsl_helpers import DictList, facts, make_phone

from dsl import CompiledPolicy, compile_policy
from dsl.aggregates import AggKind, KeyKind
from dsl.decision import Action
from dsl.facts import EventFacts, Facts, PhoneFacts

AGGS = """
aggregate a = count(per number, over 1h)
aggregate b = count(per number, over 10m)
"""


def compile_one(text: str, tenant: str = "t") -> CompiledPolicy:
    return compile_policy({"t/policy.rf": text}, tenant=tenant)


def condition_value(cond: str, values: Mapping[str, int | None]) -> bool | None:
    policy = compile_one(AGGS + f"rule r {{\n when {cond}\n then review\n}}\n")
    decision = policy.evaluate(facts(), values, {}, explain=True)
    return decision.trace[0].value


T, F, U = 1, 0, None  # a > 0 is true, false, unknown


@pytest.mark.parametrize(
    ("a", "b", "and_", "or_"),
    [
        (T, T, True, True),
        (T, F, False, True),
        (T, U, None, True),
        (F, T, False, True),
        (F, F, False, False),
        (F, U, False, None),
        (U, T, None, True),
        (U, F, False, None),
        (U, U, None, None),
    ],
)
def test_kleene_tables(a: int | None, b: int | None, and_: bool | None, or_: bool | None) -> None:
    values = {"a": a, "b": b}
    assert condition_value("a > 0 and b > 0", values) is and_
    assert condition_value("a > 0 or b > 0", values) is or_


@pytest.mark.parametrize(("a", "expected"), [(1, False), (0, True), (None, None)])
def test_not_keeps_unknown(a: int | None, expected: bool | None) -> None:
    assert condition_value("not (a > 0)", {"a": a, "b": 0}) is expected
    assert condition_value("not (a > 0 or event.scene == 'x')".replace("'", '"'), {"a": a}) is (
        expected
    )


@pytest.mark.parametrize(
    ("cond", "values", "expected"),
    [
        ("a + 1 > 5", {"a": 5}, True),
        ("a + 1 > 5", {"a": None}, None),
        ("a * 2 == b", {"a": 3, "b": 6}, True),
        ("a - b < 0", {"a": 1, "b": None}, None),
        ("a / b >= 2", {"a": 5, "b": 2}, True),
        ("a / b >= 2", {"a": 5, "b": 0}, None),  # division by zero is unknown, not a crash
        ("a / 2 == 2.5", {"a": 5}, True),  # division gives a decimal
        ("a / 3 == 0.333333", {"a": 1}, True),  # ... rounded down at the sixth place
        ("a / b < 0.2", {"a": 1, "b": 6}, True),
        ("a / b < 0.2", {"a": 1, "b": 5}, False),
        ("a * 0.5 > 2", {"a": 5}, True),
        ("a * 0.5 == 2.5", {"a": 5}, True),
        ("-a / 3 == -0.333334", {"a": 1}, True),  # toward minus infinity
        ("a / 0.5 == 10", {"a": 5}, True),
        ("a + 0.1 + 0.2 == 5.3", {"a": 5}, True),  # fixed point: no binary surprises
        ("-a < 0", {"a": 3}, True),
        ("a between 2 and 4", {"a": 4}, True),
        ("a between 2 and 4", {"a": 5}, False),
        ("a between 2 and 4", {"a": None}, None),
        ("a in {1, 2, 3}", {"a": 2}, True),
        ("a not in {1, 2, 3}", {"a": None}, None),
        ('a > 0 and event.scene == "x"', {"a": None}, False),  # false decides
        ('a > 0 or event.scene == ""', {"a": None}, True),  # true decides
    ],
)
def test_expressions(cond: str, values: dict[str, int | None], expected: bool | None) -> None:
    assert condition_value(cond, values) is expected


def test_missing_value_is_unknown_and_flags_the_decision() -> None:
    policy = compile_one(AGGS + "rule r {\n when a > 0\n then block\n}\n")
    missing = policy.evaluate(facts(), {"b": 1}, {})
    assert missing.unknown_inputs is True
    assert missing.action is Action.ALLOW
    known = policy.evaluate(facts(), {"a": 1, "b": 1}, {})
    assert known.unknown_inputs is False
    assert known.action is Action.BLOCK


ORDERING = """
rule r_allow { when event.scene == "s" then allow risk 1 tags "x", "y" }
rule r_review { when event.scene == "s" then review risk 3 tags "y", "z" }
rule r_block { when event.app_id == "bad" then block risk 2 tags "b" }
rule r_override { when event.device_id == "trusted" then allow override tags "trusted" }
shadow rule r_shadow { when event.scene == "s" then block risk 4 tags "shadow_only" }
"""


@pytest.mark.parametrize(
    ("event", "action", "risk", "tags", "live"),
    [
        ({"scene": "none"}, Action.ALLOW, 0, (), ()),
        ({"scene": "s"}, Action.REVIEW, 3, ("x", "y", "z"), ("r_allow", "r_review")),
        (
            {"scene": "s", "app_id": "bad"},
            Action.BLOCK,
            3,
            ("x", "y", "z", "b"),
            ("r_allow", "r_review", "r_block"),
        ),
        (
            {"scene": "s", "app_id": "bad", "device_id": "trusted"},
            Action.ALLOW,
            3,
            ("x", "y", "z", "b", "trusted"),
            ("r_allow", "r_review", "r_block", "r_override"),
        ),
        ({"app_id": "bad"}, Action.BLOCK, 2, ("b",), ("r_block",)),
    ],
)
def test_decision_ordering_override_and_shadow(
    event: dict[str, str], action: Action, risk: int, tags: tuple[str, ...], live: tuple[str, ...]
) -> None:
    policy = compile_one(ORDERING)
    d = policy.evaluate(facts(**event), {}, {})  # type: ignore[arg-type]
    assert d.action is action
    assert d.risk_level == risk
    assert d.tags == tags
    assert tuple(m.rule for m in d.matches if not m.shadow) == live
    shadow = [m for m in d.matches if m.shadow]
    if event.get("scene") == "s":
        assert [m.rule for m in shadow] == ["r_shadow"]
        assert shadow[0].action is Action.BLOCK  # reported with its own action...
        assert "shadow_only" not in d.tags  # ...but it never decides
    else:
        assert shadow == []


def test_matches_are_in_rule_order_with_shadow_included() -> None:
    d = compile_one(ORDERING).evaluate(facts(scene="s", app_id="bad"), {}, {})
    assert [(m.rule, m.shadow) for m in d.matches] == [
        ("r_allow", False),
        ("r_review", False),
        ("r_block", False),
        ("r_shadow", True),
    ]


@pytest.mark.parametrize(
    ("on_error", "value", "matched", "action"),
    [
        ("", None, False, Action.ALLOW),  # default skip
        ("on_error skip", None, False, Action.ALLOW),
        ("on_error fire", None, True, Action.BLOCK),
        ("on_error review", None, True, Action.REVIEW),
        ("on_error allow", None, True, Action.ALLOW),
        ("on_error review", 10, True, Action.BLOCK),  # known: the rule's own action
        ("on_error review", 1, False, Action.ALLOW),
    ],
)
def test_on_error(on_error: str, value: int | None, matched: bool, action: Action) -> None:
    policy = compile_one(AGGS + f"rule r {{ when a > 5 then block {on_error} }}")
    d = policy.evaluate(facts(), {"a": value, "b": 0}, {}, explain=True)
    assert d.action is action
    assert bool(d.matches) is matched
    assert d.trace[0].matched is matched
    assert d.trace[0].value is (None if value is None else value > 5)


def test_on_error_never_grants_an_override() -> None:
    policy = compile_one(
        AGGS
        + "rule ok { when a < 5 then allow override on_error fire }\n"
        + 'rule bad { when event.scene == "s" then block }\n'
    )
    d = policy.evaluate(facts(scene="s"), {"a": None}, {})
    assert d.action is Action.BLOCK
    assert [m.rule for m in d.matches] == ["ok", "bad"]
    assert policy.evaluate(facts(scene="s"), {"a": 1}, {}).action is Action.ALLOW


def test_interpolation() -> None:
    policy = compile_one(
        AGGS
        + 'const W = 90m\nlist vip from "lists/vip.csv"\n'
        + "rule r {\n when phone in vip or a > 0\n then review\n"
        + ' reason "a={a} b={b} valid={phone.valid} w={W} tier={vip.label("tier")}'
        + ' who={phone.masked} scene={event.scene.lower()} \\{literal\\} {a + 1}"\n}\n'
    )
    lists = {"vip": DictList({"+8613800000001": {"tier": "gold"}})}
    d = policy.evaluate(facts(scene="LOGIN"), {"a": 4, "b": None}, lists)
    assert d.matches[0].reason == (
        "a=4 b=unknown valid=true w=1h30m tier=gold who=+8613****01 scene=login {literal} 5"
    )


def test_lists_missing_from_the_mapping_are_empty() -> None:
    policy = compile_one('list vip from "vip.csv"\nrule r { when phone in vip then block }')
    assert policy.evaluate(facts(), {}, {}).action is Action.ALLOW
    lists = {"vip": DictList({"+8613800000001": {}})}
    assert policy.evaluate(facts(), {}, lists).action is Action.BLOCK


def test_helpers_and_facts() -> None:
    policy = compile_one(
        'settings { timezone = "Asia/Shanghai" }\n'
        'rule r {\n when phone.starts_with("+86138") and phone.prefix(4) == "8613"\n'
        '  and event.attributes["channel"].starts_with("web")\n'
        '  and event.local_hour == 8 and event.local_weekday == 4 and tenant == "acme"\n'
        '  and phone.country_code == 86 and event.ip.contains(".")\n'
        " then review\n}\n",
        tenant="acme",
    )
    # 2026-01-01T00:30:00Z is 08:30 on a Thursday in Shanghai.
    ev = EventFacts(ip="10.0.0.1", occurred_at=1767227400.0, attributes={"channel": "web-h5"})
    f = Facts("acme", make_phone("+8613800000001"), ev)
    assert policy.evaluate(f, {}, {}).action is Action.REVIEW
    other = Facts("acme", make_phone("+8613900000001"), ev)
    assert policy.evaluate(other, {}, {}).action is Action.ALLOW


PLAN = """
list vip from "vip.csv"
aggregate n = count(per number, over 1h)
aggregate l = count(per list vip, over 1h)
aggregate s = run(per segment, over today)
aggregate p = run(per prefix 7, over today)
aggregate d = distinct(event.app_id, per device, over 1d)
aggregate i = distinct(event.attributes["ua"], per ip, over 10m)
aggregate a = distinct(phone, per app, over 1h) where event.scene == "register"
aggregate t = count(per tenant, over 1h)
rule r { when n + l + s + p + d + i + a + t > 0 and sustained(n > 1, 2h) then review }
"""


def test_plan_keys_members_and_feeds() -> None:
    policy = compile_one(PLAN)
    phone = make_phone("+8617000000001")
    ev = EventFacts(
        scene="register", app_id="app1", device_id="dev1", ip="1.2.3.4", attributes={"ua": "curl"}
    )
    lists = {"vip": DictList({"+8617000000001": {}})}
    refs = {r.id: r for r in policy.plan(Facts("t", phone, ev), lists)}
    assert list(refs) == ["n", "n@1h", "l", "s", "p", "d", "i", "a", "t"]
    got = {k: (r.spec.key, r.key, r.member, r.feeds) for k, r in refs.items()}
    assert got == {
        "n": (KeyKind.NUMBER, "+8617000000001", "", True),
        # A window read 1h back is fed by what feeds n (docs/state.md §2); whether the
        # event lands in it is the state's bucket arithmetic.
        "n@1h": (KeyKind.NUMBER, "+8617000000001", "", True),
        "l": (KeyKind.LIST, "vip", "", True),
        "s": (KeyKind.SEGMENT, "1700", "17000000001", True),
        "p": (KeyKind.PREFIX, "8617000", "17000000001", True),
        "d": (KeyKind.DEVICE, "dev1", "app1", True),
        "i": (KeyKind.IP, "1.2.3.4", "curl", True),
        "a": (KeyKind.APP, "app1", "+8617000000001", True),
        "t": (KeyKind.TENANT, "", "", True),
    }
    assert refs["n@1h"].spec.window.offset_s == 3600
    assert refs["d"].spec.kind is AggKind.DISTINCT
    assert refs["d"].spec.field == "app_id"
    assert refs["i"].spec.field == "attr:ua"


def test_plan_feeds_false_when_the_event_does_not_qualify() -> None:
    policy = compile_one(PLAN)
    phone = PhoneFacts("+4915112345678", True, "DE", country_code=49, national_number="15112345678")
    ev = EventFacts(scene="login")  # no app, device, ip; not a registration
    refs = {r.id: r for r in policy.plan(Facts("t", phone, ev), {})}
    feeds = {k: r.feeds for k, r in refs.items()}
    assert feeds == {
        "n": True,
        "n@1h": True,  # as n
        "l": False,  # not on the list
        "s": False,  # no CN segment
        "p": True,
        "d": False,  # no device id
        "i": False,  # no ip
        "a": False,  # filtered out by `where`, and no app id
        "t": True,
    }


def test_compiled_policy_metadata() -> None:
    policy = compile_one(ORDERING + 'list vip from "lists/vip.csv"\n')
    assert [(r.name, r.action, r.shadow) for r in policy.rules] == [
        ("r_allow", Action.ALLOW, False),
        ("r_review", Action.REVIEW, False),
        ("r_block", Action.BLOCK, False),
        ("r_override", Action.ALLOW, False),
        ("r_shadow", Action.BLOCK, True),
    ]
    assert policy.rules[3].override
    assert [(d.name, d.path, d.span.line) for d in policy.lists] == [("vip", "lists/vip.csv", 7)]
    assert policy.timezone == "UTC"


def test_library_import() -> None:
    library = {
        "_shared/segments.rf": (
            'const BLACK_CARD = {"mvno", "data_only", "iot"}\n'
            "aggregate seg_run = run(per segment, over today)\n"
            "aggregate unused_here = count(per number, over 1h)\n"
        )
    }
    policy = compile_policy(
        {
            "t/policy.rf": 'import "_shared/segments.rf"\n'
            "rule r { when phone.segment_kind in BLACK_CARD and seg_run > 3 then review }"
        },
        library=library,
        tenant="t",
    )
    # Library aggregates no rule reads are left out: they would only cost writes.
    assert [a.id for a in policy.aggregates] == ["seg_run"]
    d = policy.evaluate(facts("+8617000000001"), {"seg_run": 4}, {})
    assert d.action is Action.REVIEW
