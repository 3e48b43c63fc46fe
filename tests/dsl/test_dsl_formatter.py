"""The formatter: canonical, idempotent, keeps comments, preserves meaning."""

from __future__ import annotations

import pytest
from dsl_helpers import ROOT

from dsl import PolicyError
from dsl.formatter import format_source
from dsl.parser import parse_module

MESSY = """# leading comment
settings {timezone="Asia/Shanghai"}   # tz
const   A=1+2*3
const B = (1 + 2) * 3
aggregate hits=count(per number,over 1h)   where event.scene=="register"
# about the rule
shadow rule   r{risk 2 then review
  when hits>A and (event.scene=="x" or not phone.valid)  # first operand line
    and hits.ago(1h) > 0
  # before reason
  reason "n={hits}"  tags "a","b"
  # dangling
}
# trailing
"""

EXPECTED = """# leading comment
settings {  # tz
    timezone = "Asia/Shanghai"
}

const A = 1 + 2 * 3
const B = (1 + 2) * 3

aggregate hits = count(per number, over 1h) where event.scene == "register"

# about the rule
shadow rule r {
    when hits > A
        and (event.scene == "x" or not phone.valid)  # first operand line
        and hits.ago(1h) > 0
    then review
    risk 2
    # before reason
    tags "a", "b"
    reason "n={hits}"
    # dangling
}

# trailing
"""


def test_canonical_layout() -> None:
    assert format_source(MESSY) == EXPECTED


def test_idempotent_on_examples() -> None:
    demo = (ROOT / "rules/demo/policy.rf").read_text(encoding="utf-8")
    for text in (MESSY, demo):
        once = format_source(text)
        assert format_source(once) == once


def test_demo_policy_is_formatted() -> None:
    demo = (ROOT / "rules/demo/policy.rf").read_text(encoding="utf-8")
    assert format_source(demo) == demo


def test_every_comment_survives() -> None:
    before = [c.text for c in parse_module(MESSY, "m").comments]
    after = [c.text for c in parse_module(format_source(MESSY), "m").comments]
    assert sorted(before) == sorted(after)


@pytest.mark.parametrize(
    "expr",
    [
        "a - (b - c)",
        "(a - b) - c",
        "a / (b * c)",
        "-(a + b)",
        "not (x or y)",
        "(x or y) and z",
        "x or (y or z)",
        'a.lower().starts_with("q")',
        "(a + b) between 1 and 2 * 3",
        "a not in {1, 2}",
    ],
)
def test_parentheses_are_kept_exactly_where_needed(expr: str) -> None:
    source = f"const X = {expr}\n"
    once = format_source(source)
    assert parse_module(once, "f").items == parse_module(source, "f").items


def test_unparsable_input_raises() -> None:
    with pytest.raises(PolicyError) as err:
        format_source("rule {", "x.rf")
    assert err.value.diagnostics[0].path == "x.rf"
