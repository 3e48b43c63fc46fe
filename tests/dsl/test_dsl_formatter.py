"""The formatter: canonical, idempotent, keeps comments, preserves meaning."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from dsl_helpers import GOLDEN, ROOT, check_golden

from dsl import PolicyError, ast, check_policy, generated_python
from dsl.formatter import MAX_LINE, expr_text, format_source
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


# -- golden: wrapping, parentheses, comments ---------------------------------------------

FMT_CASES = sorted((GOLDEN / "fmt").glob("*.rf"))


def _tree(text: str) -> tuple[object, ...]:
    """The syntax tree, less what the formatter puts in its own order or spelling: the
    clauses of a rule, and several aggregate keys (``per (number, app)``)."""
    out: list[object] = []
    for item in parse_module(text, "p.rf").items:
        if isinstance(item, ast.Aggregate):
            item = replace(item, per_grouped=False)
        elif isinstance(item, ast.Rule):
            item = replace(item, clauses=tuple(sorted(item.clauses, key=lambda c: str(type(c)))))
        out.append(item)
    return tuple(out)


def same_program(before: str, after: str) -> None:
    """Formatting changed no meaning: the same tree, the same generated Python (rule
    positions aside) and the same diagnostics."""
    assert _tree(before) == _tree(after)
    if any(d.is_error for d in check_policy({"t/p.rf": before}, tenant="t")):
        return
    code = [generated_python({"t/p.rf": t}, tenant="t") for t in (before, after)]
    strip = re.compile(r"\(t/p\.rf:\d+(:\d+)?\)")
    assert strip.sub("", code[0]) == strip.sub("", code[1])


@pytest.mark.parametrize("case", FMT_CASES, ids=lambda p: p.stem)
def test_format_golden(case: Path) -> None:
    text = case.read_text(encoding="utf-8")
    once = format_source(text, "p.rf")
    check_golden(case.with_suffix(".rf.formatted"), once)
    assert format_source(once, "p.rf") == once
    same_program(text, once)
    before = sorted(c.text for c in parse_module(text, "p.rf").comments)
    assert sorted(c.text for c in parse_module(once, "p.rf").comments) == before
    for line in once.splitlines():
        code = line.split("  #")[0]
        if len(code) > MAX_LINE:
            # Only a string that cannot be split may run past the limit.
            assert '"' in code, line


def test_a_long_or_chain_breaks_one_operand_per_line() -> None:
    operands = [f'event.app_id == "application_{i}"' for i in range(8)]
    text = f"rule r {{ when {' or '.join(operands)} then review }}\n"
    assert len(text) > 223
    lines = format_source(text).splitlines()
    assert lines[1] == f"    when {operands[0]}"
    assert lines[2:9] == [f"        or {o}" for o in operands[1:]]


@pytest.mark.parametrize(
    ("written", "printed"),
    [
        ("(a or b) and c", "(a or b) and c"),
        ("(a and b) or c", "(a and b) or c"),  # redundant, but it shows the grouping
        ("a and b or c", "a and b or c"),
        ("not (x == 1)", "not (x == 1)"),
        ("not x == 1", "not x == 1"),
        ("(a * b) + c", "(a * b) + c"),
        ("a * b + c", "a * b + c"),
        ("a - (b - c)", "a - (b - c)"),
        ("((a))", "a"),
        ("(a) + (f(b))", "a + f(b)"),
        ("((a + b)) * c", "(a + b) * c"),
        ("f((a + b))", "f(a + b)"),
        ("{(1 + 2), 3}", "{1 + 2, 3}"),
        ('x[("k")]', 'x["k"]'),
        ("(a or b)", "a or b"),
        ("a or (b or c)", "a or (b or c)"),
        ("-(a)", "-a"),
        ("(-a) * b", "(-a) * b"),
        ('("a") in {"a"}', '"a" in {"a"}'),
        ('f("(") and (a)', 'f("(") and a'),
    ],
)
def test_parentheses_that_show_grouping_stay(written: str, printed: str) -> None:
    formatted = format_source(f"const X = {written}\n")
    assert formatted == f"const X = {printed}\n"
    assert parse_module(formatted, "f").items == parse_module(f"const X = {written}\n", "f").items


def test_expr_text_is_one_line() -> None:
    module = parse_module("const X = (a or b) and {1, 2, 3} == f(x, y)\n", "f")
    const = module.items[0]
    assert isinstance(const, ast.Const)
    assert expr_text(const.value) == "(a or b) and {1, 2, 3} == f(x, y)"


REPO_POLICIES = sorted(
    [
        *(ROOT / "rules").rglob("*.rf"),
        *(GOLDEN / "codegen").glob("*.rf"),
        *(GOLDEN / "diagnostics").glob("*.rf"),
    ]
)


@pytest.mark.parametrize(
    "path", REPO_POLICIES, ids=lambda p: str(p.relative_to(ROOT)).replace("/", ":")
)
def test_every_policy_in_the_repo_round_trips(path: Path) -> None:
    """Shipped rules and every golden input (the broken ones that still parse, too)."""
    text = path.read_text(encoding="utf-8")
    try:
        once = format_source(text, "p.rf")
    except PolicyError:
        return  # a syntax-error golden: nothing to format
    assert format_source(once, "p.rf") == once
    same_program(text, once)
