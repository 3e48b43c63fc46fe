"""Sums, averages and extremes in ``ringfence eval`` and ``ringfence test``: decimal values
given and shown as decimals (12.5, never millionths), negative ones where a value may be,
and what is refused, in one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import no_traceback, ringfence

POLICY = """
aggregate spent = sum(event.number("amount"), per number, over 1d)
aggregate mean = avg(event.number("amount"), per attribute "user_id", over 1h)
aggregate earliest = min(event.local_hour, per (number, attribute "user_id"), over 1d)
aggregate hits = count(per number, over 1h)

rule big { when spent > 500 then review }
rule pricey { when mean >= 100.5 then block }
rule early { when earliest < 3 then review }
"""

CASES = """
[[case]]
name = "given decimals and negatives"
phone = "+8613800138000"
event = { scene = "pay", attributes = { amount = "12", user_id = "u1" } }
aggregates = { spent = 600.25, mean = "100.5", earliest = -1 }
expect = { action = "block", rules = ["big", "pricey", "early"] }

[[case]]
name = "after a history"
phone = "+8613800138000"
expect = { action = "block", rules = ["big", "pricey"] }
[case.event]
scene = "pay"
occurred_at = 2026-01-01T10:00:00+00:00
attributes = { amount = "300.5", user_id = "u1" }
[[case.history]]
phone = "+8613800138000"
event = { occurred_at = 2026-01-01T09:59:00+00:00, attributes = { amount = "200", user_id = "u1" } }
[[case.history]]
phone = "+8613800138000"
event = { occurred_at = 2026-01-01T09:59:30+00:00, attributes = { amount = "1e5", user_id = "u1" } }
"""


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    folder = tmp_path / "rules" / "shop"
    (folder / "tests").mkdir(parents=True)
    (folder / "policy.rf").write_text(POLICY, encoding="utf-8")
    (folder / "tests" / "cases.toml").write_text(CASES, encoding="utf-8")
    return tmp_path / "rules"


def evaluate(rules: Path, *args: str) -> tuple[int, str, str]:
    out = ringfence(
        "eval", "--rules", str(rules), "--tenant", "shop", "--phone", "+8613800138000",
        "--at", "2026-01-01T10:00:00Z", *args,
    )  # fmt: skip
    no_traceback(out)
    return out.returncode, out.stdout, out.stderr


def test_rule_tests_take_decimals_and_histories(rules: Path) -> None:
    """The history's 200 and this event's 300.5 make 500.5 (the "1e5" is no number and
    adds nothing), their mean 250.25."""
    out = ringfence("test", str(rules))
    no_traceback(out)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed, 0 failed" in out.stdout


def test_eval_shows_decimals_as_decimals(rules: Path) -> None:
    code, out, err = evaluate(
        rules, "--attr", "amount=12.25", "--attr", "user_id=u1", "--agg", "spent=499.5"
    )
    assert code == 0, err
    assert "  spent    = 499.5 " in out
    assert "  mean     = 12.25 " in out  # this event is the first: its own amount
    assert "  earliest = 10 " in out  # the event's own local hour (the policy's UTC)
    assert "big: false  (spent=499.5)" in out
    assert "pricey: false  (mean=12.25)" in out


def test_eval_takes_negative_values_where_a_value_may_be_negative(rules: Path) -> None:
    code, out, err = evaluate(rules, "--agg", "earliest=-2", "--agg", "spent=-1.5")
    assert code == 0, err
    assert "early: true" in out
    assert "spent=-1.5" in out


@pytest.mark.parametrize(
    ("agg", "message"),
    [
        ("hits=1.5", "a value is a whole number from 0 to"),
        ("hits=-1", "a value is a whole number from 0 to"),
        ("spent=1.1234567", "spent=1.1234567: a value is a decimal with at most six places"),
        ("spent=1e3", "a value is a decimal with at most six places"),
        ("earliest=2.5", "earliest=2.5: a value is a whole number, negative or not"),
    ],
)
def test_eval_refuses_values_of_the_wrong_form(rules: Path, agg: str, message: str) -> None:
    code, _, err = evaluate(rules, "--agg", agg)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
