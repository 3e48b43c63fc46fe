"""Parsing: positions, comments, the depth guard, rendering of diagnostics."""

from __future__ import annotations

import pytest

from dsl import PolicyError, check_policy, compile_policy, render
from dsl.ast import BinOp, BoolOp, Const, Rule, When
from dsl.diagnostics import Diagnostic, Severity
from dsl.parser import parse_module


def test_positions_are_one_based_and_cover_the_node() -> None:
    m = parse_module(
        "const A = 1\n\nrule r {\n  when A + 2 > 3 and true\n  then allow\n}\n", "p.rf"
    )
    const, rule = m.items
    assert isinstance(const, Const)
    assert (const.span.line, const.span.column) == (1, 1)
    assert isinstance(rule, Rule)
    assert (rule.name_span.line, rule.name_span.column, rule.name_span.end_column) == (3, 6, 7)
    when = rule.clauses[0]
    assert isinstance(when, When)
    assert isinstance(when.expr, BoolOp)
    assert (when.expr.span.line, when.expr.span.column, when.expr.span.end_column) == (4, 8, 26)


def test_comments_are_collected() -> None:
    m = parse_module('# head\nconst A = 1  # tail\n# foot "not a string"\n', "p.rf")
    assert [(c.line, c.column, c.text) for c in m.comments] == [
        (1, 1, "# head"),
        (2, 14, "# tail"),
        (3, 1, '# foot "not a string"'),
    ]


def test_hash_inside_a_string_is_not_a_comment() -> None:
    m = parse_module('const A = "a # b"\n', "p.rf")
    assert m.comments == ()


@pytest.mark.parametrize(
    "source",
    [
        "const X = " + "(" * 10000 + "1" + ")" * 10000,  # parentheses fold away: fine
        "const X = " + "-(" * 10000 + "1" + ")" * 10000,
        "const X = " + "not " * 10000 + "true",
        "const X = " + " + ".join(["1"] * 10000),
        "rule r { when " + "event.scene.lower()" + ".lower()" * 5000 + ' == "a" then allow }',
        'rule r { when true then allow reason "{' + "-" * 5000 + '1}" }',
    ],
    ids=["parens", "neg", "not", "sum-chain", "method-chain", "interpolation"],
)
def test_deep_input_is_a_diagnostic_not_a_recursion_error(source: str) -> None:
    diags = check_policy({"deep.rf": source})
    if "(" * 10000 + "1" in source:
        assert not [d for d in diags if d.is_error]
        return
    assert any("nested too deeply" in d.message for d in diags), diags


def test_deepest_accepted_expression_compiles() -> None:
    # 31 arithmetic levels under a comparison: right at the limit, and Python's own parser
    # must accept the generated source.
    expr = "a" + " + a" * 30
    text = f"aggregate a = count(per number, over 1h)\nrule r {{ when {expr} > 1 then block }}"
    policy = compile_policy({"p.rf": text})
    assert policy.rules[0].name == "r"


def test_chain_is_left_associative() -> None:
    m = parse_module("const A = 10 - 2 - 3\n", "p.rf")
    const = m.items[0]
    assert isinstance(const, Const)
    assert isinstance(const.value, BinOp)
    assert isinstance(const.value.left, BinOp)


def test_parse_error_raises_policy_error_with_position() -> None:
    with pytest.raises(PolicyError) as err:
        parse_module("rule r {\n  when\n}\n", "bad.rf")
    (diag,) = err.value.diagnostics
    assert (diag.path, diag.line, diag.column) == ("bad.rf", 3, 1)
    assert "expected an expression" in diag.message
    assert "Token" not in diag.message
    assert "__ANON" not in diag.message


@pytest.mark.parametrize(
    ("diag", "expected"),
    [
        (
            Diagnostic("f.rf", 2, 5, Severity.ERROR, "bad", 2, 8),
            "f.rf:2:5: error: bad\n    b = xyz + 1\n        ^~~",
        ),
        (
            Diagnostic("f.rf", 1, 3, Severity.WARNING, "hm"),
            "f.rf:1:3: warning: hm\n    a = 1\n      ^",
        ),
        (Diagnostic("f.rf", 9, 1, Severity.ERROR, "past the end"), "f.rf:9:1: error: past the end"),
    ],
)
def test_render(diag: Diagnostic, expected: str) -> None:
    assert render(diag, "a = 1\nb = xyz + 1\n") == expected
