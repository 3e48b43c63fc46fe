"""How matched rules become one decision: override, priority, severity, scores, default."""

from __future__ import annotations

import pytest
from dsl_helpers import facts

from dsl import compile_policy
from dsl.decision import Action

POLICY = """
settings {
    default_action = review
    review_score = 50
    block_score = 100
}

rule block_low { when event.scene == "a" then block }
rule allow_high { when event.app_id == "vip" then allow priority 10 }
rule review_mid { when event.ip == "10.0.0.1" then review priority 5 }
rule trust_override { when event.device_id == "test" then allow override }
rule weak_one { when event.attributes["w1"] == "1" score 30 }
rule weak_two { when event.attributes["w2"] == "1" score 30 }
rule strong { when event.attributes["s"] == "1" score 80 }
rule trust_signal { when event.attributes["t"] == "1" score -40 }
shadow rule shadow_block { when event.scene == "a" or event.scene == "b" then block priority 100 }
rule negative_priority { when event.scene == "c" then block priority -1 }
rule allow_plain { when event.scene == "ok" then allow }
"""

# Rules are one-liners here; the grammar allows clauses on one line.
_POLICY = compile_policy({"t/p.rf": POLICY}, tenant="t")


def decide(**event: object) -> tuple[Action, str, int]:
    d = _POLICY.evaluate(facts(**event), {}, {})
    return d.action, d.decided_by, d.score


@pytest.mark.parametrize(
    ("event", "action", "why"),
    [
        ({}, Action.REVIEW, "default action"),
        ({"scene": "ok"}, Action.ALLOW, "rule allow_plain"),
        ({"scene": "a"}, Action.BLOCK, "rule block_low"),
        # A higher priority wins over a more severe action: a downgrade is one rule.
        ({"scene": "a", "app_id": "vip"}, Action.ALLOW, "rule allow_high (priority 10)"),
        ({"scene": "a", "ip": "10.0.0.1"}, Action.REVIEW, "rule review_mid (priority 5)"),
        (
            {"scene": "a", "app_id": "vip", "ip": "10.0.0.1"},
            Action.ALLOW,
            "rule allow_high (priority 10)",
        ),
        # An override beats every priority.
        ({"scene": "a", "app_id": "vip", "device_id": "test"}, Action.ALLOW, "an allow override"),
        # Shadow rules never count, whatever their priority.
        ({"scene": "b"}, Action.REVIEW, "default action"),
        # Two weak signals add up to a review; with a strong one, a block.
        ({"attributes": {"w1": "1"}}, Action.REVIEW, "default action"),
        ({"attributes": {"w1": "1", "w2": "1"}}, Action.REVIEW, "score 60 reached 50"),
        ({"attributes": {"w1": "1", "s": "1"}}, Action.BLOCK, "score 110 reached 100"),
        ({"attributes": {"w1": "1", "w2": "1", "t": "1"}}, Action.REVIEW, "default action"),
        # A threshold competes at priority 0: it loses to priority, beats severity ties below.
        ({"scene": "ok", "attributes": {"s": "1"}}, Action.REVIEW, "score 80 reached 50"),
        (
            {"app_id": "vip", "attributes": {"s": "1", "w1": "1"}},
            Action.ALLOW,
            "rule allow_high (priority 10)",
        ),
        ({"scene": "a", "attributes": {"s": "1"}}, Action.BLOCK, "rule block_low"),
        # A negative priority loses to a reached threshold and to every other rule.
        ({"scene": "c", "attributes": {"s": "1"}}, Action.REVIEW, "score 80 reached 50"),
        ({"scene": "c"}, Action.BLOCK, "rule negative_priority (priority -1)"),
    ],
)
def test_combination(event: dict[str, object], action: Action, why: str) -> None:
    got_action, got_why, _ = decide(**event)
    assert (got_action, got_why) == (action, why)


def test_score_is_reported_and_shadow_scores_do_not_count() -> None:
    policy = compile_policy(
        {
            "t/p.rf": "settings { review_score = 10 }\n"
            'rule a { when event.scene == "x" score 7 }\n'
            'shadow rule b { when event.scene == "x" score 7 }\n'
        },
        tenant="t",
    )
    d = policy.evaluate(facts(scene="x"), {}, {})
    assert d.score == 7
    assert d.action is Action.ALLOW
    assert [(m.rule, m.action, m.score) for m in d.matches] == [
        ("a", Action.UNSPECIFIED, 7),
        ("b", Action.UNSPECIFIED, 7),
    ]


@pytest.mark.parametrize(
    ("on_error", "score", "action"),
    [("fire", 60, Action.REVIEW), ("skip", 0, Action.ALLOW), ("block", 0, Action.BLOCK)],
)
def test_on_error_and_scores(on_error: str, score: int, action: Action) -> None:
    text = (
        "settings { review_score = 50 }\n"
        "aggregate a = count(per number, over 1h)\n"
        f"rule r {{ when a > 5 score 60 on_error {on_error} }}\n"
    )
    policy = compile_policy({"t/p.rf": text}, tenant="t")
    d = policy.evaluate(facts(), {"a": None}, {})
    assert (d.score, d.action, d.unknown_inputs) == (score, action, True)
