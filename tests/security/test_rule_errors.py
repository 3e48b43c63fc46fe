"""An error while one rule is evaluated stays inside that rule (attack 9 of the sandbox
issue): it becomes the rule's on_error, is named in the decision, and the other rules
still decide. Run-time arithmetic stays within 64 bits and answers unknown past them."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from dsl_helpers import DictList, facts

from dsl import compile_policy
from dsl.decision import Action

NUMBER = "+8613800000001"


class ExplodingList(DictList):
    """A list whose labels cannot be read: stands for any failure inside one rule."""

    def labels(self, e164: str) -> Mapping[str, str] | None:
        raise RuntimeError("storage went away")


POLICY = """
list vip from "lists/vip.csv"
aggregate a = count(per number, over 1h)

rule reads_labels {
    when phone in vip
    then review
    reason "tier {vip.label("tier")}"
    on_error %s
}

rule plain {
    when event.scene == "register"
    then block
    reason "registration"
}
"""


@pytest.mark.parametrize(
    ("on_error", "action", "rules"),
    [
        ("skip", Action.BLOCK, ["plain"]),
        ("review", Action.BLOCK, ["reads_labels", "plain"]),
        ("fire", Action.BLOCK, ["reads_labels", "plain"]),
        ("allow", Action.BLOCK, ["reads_labels", "plain"]),
    ],
)
def test_a_failing_rule_is_its_on_error(on_error: str, action: Action, rules: list[str]) -> None:
    policy = compile_policy({"t/p.rf": POLICY % on_error}, tenant="t")
    lists = {"vip": ExplodingList({NUMBER: {"tier": "gold"}})}
    for explain in (False, True):
        d = policy.evaluate(facts(NUMBER, scene="register"), {"a": 1}, lists, explain=explain)
        assert d.action is action
        assert [m.rule for m in d.matches] == rules
        assert d.failed_rules == ("reads_labels",)
        if on_error != "skip":
            assert d.matches[0].reason == "reads_labels: evaluation failed"
            assert "storage went away" not in d.matches[0].reason
        if explain:
            line = d.trace[0]
            assert line.error is True
            assert line.value is None
            assert line.detail == f"evaluation failed: on_error {on_error}"
            assert d.trace[1].error is False


def test_no_failure_no_report() -> None:
    policy = compile_policy({"t/p.rf": POLICY % "skip"}, tenant="t")
    lists = {"vip": DictList({NUMBER: {"tier": "gold"}})}
    d = policy.evaluate(facts(NUMBER, scene="login"), {"a": 1}, lists, explain=True)
    assert d.failed_rules == ()
    assert [m.reason for m in d.matches] == ["tier gold"]
    assert not any(line.error for line in d.trace)


ARITH = """
aggregate a = count(per number, over 1h)
aggregate b = count(per number, over 10m)
rule product {
    when a * a * a > 10
    then review
    reason "{a * a * a}"
    on_error block
}
rule ratio {
    when a / b > 5
    then review
}
"""


def test_runtime_arithmetic_is_checked_not_unbounded() -> None:
    policy = compile_policy({"t/p.rf": ARITH}, tenant="t")
    big = 2**62  # a count no real window reaches, but a backend could return
    d = policy.evaluate(facts(), {"a": big, "b": 1}, {}, explain=True)
    # a * a * a leaves int64: unknown, so on_error decides, and nothing grew past 64 bits.
    assert d.action is Action.BLOCK
    # Its reason says why it fired, not the author's text over values nobody knows.
    assert d.matches[0].reason == "fired on error: condition unknown"
    assert d.trace[0].value is None
    small = policy.evaluate(facts(), {"a": 3, "b": 1}, {})
    assert [m.reason for m in small.matches] == ["27"]


def test_division_by_a_zero_aggregate_is_unknown() -> None:
    policy = compile_policy({"t/p.rf": ARITH}, tenant="t")
    d = policy.evaluate(facts(), {"a": 100, "b": 0}, {}, explain=True)
    assert d.trace[1].value is None
    assert "ratio" not in [m.rule for m in d.matches]
