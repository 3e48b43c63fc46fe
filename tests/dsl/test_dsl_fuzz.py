"""Property tests: no input crashes the compiler, generated code matches a reference
three-valued evaluator, and formatting never changes a decision."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from dsl_helpers import facts
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dsl import PolicyError, check_policy, compile_policy
from dsl.formatter import format_source

KEYWORDS = [
    "settings",
    "import",
    "const",
    "list",
    "from",
    "aggregate",
    "per",
    "over",
    "where",
    "shadow",
    "rule",
    "when",
    "then",
    "override",
    "risk",
    "tags",
    "reason",
    "on_error",
    "and",
    "or",
    "not",
    "in",
    "between",
    "true",
    "false",
    "count",
    "distinct",
    "run",
    "number",
    "segment",
    "prefix",
    "today",
    "sustained",
    "phone",
    "event",
    "tenant",
    "allow",
    "review",
    "block",
    "skip",
    "fire",
    "ago",
    "label",
]
PUNCT = [
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ",",
    ".",
    "=",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "+",
    "-",
    "*",
    "/",
    "#",
    '"',
    "\\",
    "\n",
]
LITERALS = [
    "1",
    "0",
    "99999999999999999999",
    "1h",
    "7d",
    "10ms",
    '"x"',
    '"{a}"',
    '"{"',
    "a",
    "b",
    "X",
    "event.scene",
    "phone.valid",
    "_",
]

tokens = st.lists(st.sampled_from(KEYWORDS + PUNCT + LITERALS), max_size=60)


def _only_diagnostics(text: str) -> None:
    diags = check_policy({"fuzz.rf": text})
    assert all(d.path == "fuzz.rf" for d in diags), diags
    assert all(d.line >= 1 and d.column >= 1 for d in diags), diags
    errors = [d for d in diags if d.is_error]
    if errors:
        with pytest.raises(PolicyError):
            compile_policy({"fuzz.rf": text})
    else:
        compile_policy({"fuzz.rf": text})
    with contextlib.suppress(PolicyError):
        format_source(text, "fuzz.rf")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_never_crashes(text: str) -> None:
    _only_diagnostics(text)


@settings(max_examples=400, deadline=None)
@given(tokens, st.sampled_from([" ", "\n", ""]))
def test_token_soup_never_crashes(parts: list[str], sep: str) -> None:
    _only_diagnostics(sep.join(parts))


@settings(max_examples=200, deadline=None)
@given(tokens)
def test_token_soup_inside_a_rule_never_crashes(parts: list[str]) -> None:
    body = " ".join(parts)
    _only_diagnostics(
        "aggregate a = count(per number, over 1h)\n"
        f'rule r {{ when {body} then block reason "{{{body}}}" }}\n'
    )


# -- expressions with a reference evaluator ------------------------------------------------

Env = dict[str, object]


@dataclass(frozen=True)
class Gen:
    text: str
    ev: Callable[[Env], object]
    chain: bool = False  # an unparenthesised and/or chain


def _kand(x: object, y: object) -> bool | None:
    if x is False or y is False:
        return False
    return None if x is None or y is None else True


def _kor(x: object, y: object) -> bool | None:
    if x is True or y is True:
        return True
    return None if x is None or y is None else False


def _arith(op: str, x: object, y: object) -> int | None:
    if x is None or y is None:
        return None
    assert isinstance(x, int)
    assert isinstance(y, int)
    return x + y if op == "+" else x - y if op == "-" else x * y


def _cmp(op: str, x: object, y: object) -> bool | None:
    if x is None or y is None:
        return None
    assert isinstance(x, int)
    assert isinstance(y, int)
    return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y, "==": x == y, "!=": x != y}[op]


@st.composite
def int_exprs(draw: st.DrawFn, depth: int = 2) -> Gen:
    choice = draw(st.integers(0, 2 if depth > 0 else 1))
    if choice == 0:
        name = draw(st.sampled_from(["a", "b"]))
        return Gen(name, lambda env: env[name])
    if choice == 1:
        k = draw(st.integers(0, 6))
        return Gen(str(k), lambda env: k)
    left, right = draw(int_exprs(depth - 1)), draw(int_exprs(depth - 1))
    op = draw(st.sampled_from(["+", "-", "*"]))
    return Gen(
        f"({left.text} {op} {right.text})", lambda env: _arith(op, left.ev(env), right.ev(env))
    )


@st.composite
def bool_exprs(draw: st.DrawFn, depth: int = 3) -> Gen:
    choice = draw(st.integers(0, 6 if depth > 0 else 3))
    if choice == 0:
        left, right = draw(int_exprs()), draw(int_exprs())
        op = draw(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]))
        return Gen(
            f"{left.text} {op} {right.text}", lambda env: _cmp(op, left.ev(env), right.ev(env))
        )
    if choice == 1:
        scene = draw(st.sampled_from(["register", "login"]))
        return Gen(f'event.scene == "{scene}"', lambda env: env["scene"] == scene)
    if choice == 2:
        return Gen("phone.valid", lambda env: env["valid"])
    if choice == 3:
        v, lo, hi = draw(int_exprs()), draw(st.integers(0, 5)), draw(st.integers(0, 5))
        return Gen(
            f"{v.text} between {lo} and {hi}",
            lambda env: _kand(_cmp(">=", v.ev(env), lo), _cmp("<=", v.ev(env), hi)),
        )
    inner = draw(bool_exprs(depth - 1))
    if choice == 4:
        return Gen(
            f"not ({inner.text})", lambda env: None if (x := inner.ev(env)) is None else not x
        )
    other = draw(bool_exprs(depth - 1))
    if choice == 5:
        return Gen(
            f"({inner.text}) and ({other.text})",
            lambda env: _kand(inner.ev(env), other.ev(env)),
        )
    return Gen(f"({inner.text}) or ({other.text})", lambda env: _kor(inner.ev(env), other.ev(env)))


bools = bool_exprs()
values = st.one_of(st.none(), st.integers(0, 7))
AGGS = "aggregate a = count(per number, over 1h)\naggregate b = count(per ip, over 1h)\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bools, values, values, st.sampled_from(["register", "login"]), st.booleans())
def test_generated_code_matches_reference(
    g: Gen, a: int | None, b: int | None, scene: str, valid: bool
) -> None:
    source = AGGS + f"rule r {{\n when {g.text}\n then block\n}}\n"
    errors = [d for d in check_policy({"p.rf": source}) if d.is_error]
    # The checker may reject only a condition it proved can never be true.
    assert all("can never fire" in d.message for d in errors), errors
    assume(not errors)
    policy = compile_policy({"p.rf": source})
    f = facts("+8613800000001" if valid else "+86123", scene=scene)
    expected = g.ev({"a": a, "b": b, "scene": scene, "valid": f.phone.valid})
    decision = policy.evaluate(f, {"a": a, "b": b}, {}, explain=True)
    assert decision.trace[0].value is expected


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            bools,
            st.sampled_from(["allow", "review", "block", "allow override"]),
            st.booleans(),
            st.sampled_from(["skip", "fire", "review"]),
        ),
        min_size=1,
        max_size=4,
    ),
    st.lists(
        st.tuples(values, values, st.sampled_from(["register", "login"]), st.booleans()),
        min_size=1,
        max_size=5,
    ),
    st.sampled_from(["", "  ", "\n"]),
)
def test_formatting_preserves_decisions(
    rules: list[tuple[Gen, str, bool, str]],
    inputs: list[tuple[int | None, int | None, str, bool]],
    pad: str,
) -> None:
    text = AGGS + "".join(
        f"{'shadow ' if shadow else ''}rule r{i} {{{pad}when {g.text}{pad} then {action}"
        f' tags "t{i}" risk {i} on_error {on_error} reason "r{i} {{a}}" }}\n'
        for i, (g, action, shadow, on_error) in enumerate(rules)
    )
    formatted = format_source(text)
    assert format_source(formatted) == formatted
    messages_before = {d.message for d in check_policy({"p.rf": text}) if d.is_error}
    messages_after = {d.message for d in check_policy({"p.rf": formatted}) if d.is_error}
    assert messages_before == messages_after
    if messages_before:
        return
    before = compile_policy({"p.rf": text})
    after = compile_policy({"p.rf": formatted})
    for a, b, scene, valid in inputs:
        f = facts("+8613800000001" if valid else "+86123", scene=scene)
        vals = {"a": a, "b": b}
        assert before.evaluate(f, vals, {}, explain=True) == after.evaluate(
            f, vals, {}, explain=True
        )


# -- long conditions: formatting wraps them and still changes nothing -------------------

LONG_AGGS = (
    "aggregate registrations_per_device = count(per device, over 1h)\n"
    "aggregate numbers_per_ip_this_hour = distinct(phone, per ip, over 1h)\n"
)
LONG_NAMES = {"a": "registrations_per_device", "b": "numbers_per_ip_this_hour"}


def _paren(text: str, draw: st.DrawFn) -> str:
    """Sometimes wrap in parentheses the author did not need (once or twice)."""
    return draw(st.sampled_from([text, f"({text})", f"(({text}))", text]))


@st.composite
def long_leaves(draw: st.DrawFn) -> Gen:
    choice = draw(st.integers(0, 4))
    name = draw(st.sampled_from(["a", "b"]))
    long = LONG_NAMES[name]
    k = draw(st.integers(0, 6))
    if choice == 0:
        op = draw(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]))
        return Gen(f"{long} {op} {k}", lambda env: _cmp(op, env[name], k))
    if choice == 1:
        m = draw(st.integers(1, 3))
        return Gen(
            f"{_paren(f'{long} * {m}', draw)} + 1 > {k}",
            lambda env: _cmp(">", _arith("+", _arith("*", env[name], m), 1), k),
        )
    if choice == 2:
        scene = draw(st.sampled_from(["register", "login", "sms_code"]))
        return Gen(f'event.scene == "{scene}"', lambda env: env["scene"] == scene)
    if choice == 3:
        return Gen("phone.valid", lambda env: env["valid"])
    lo, hi = sorted((draw(st.integers(0, 5)), draw(st.integers(0, 5))))
    return Gen(
        f"{long} between {lo} and {hi}",
        lambda env: _kand(_cmp(">=", env[name], lo), _cmp("<=", env[name], hi)),
    )


@st.composite
def long_conditions(draw: st.DrawFn, depth: int = 2) -> Gen:
    """Wide and/or chains (up to 9 operands, nested), with parentheses the author may or
    may not have needed, spread over lines at random."""
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        leaf = draw(long_leaves())
        return Gen(_paren(leaf.text, draw), leaf.ev)
    op = draw(st.sampled_from(["and", "or"]))
    parts = draw(st.lists(long_conditions(depth - 1), min_size=2, max_size=9))
    # A part that is itself a chain needs parentheses (the other operator binds
    # differently; the same one would flatten, which is fine but not what we test).
    texts = [f"({p.text})" if p.chain else p.text for p in parts]
    joined = texts[0]
    for text in texts[1:]:
        sep = draw(st.sampled_from([" ", "\n  ", "\n", "  # why\n  ", "\n  # own line\n  "]))
        joined += f"{sep}{op} {text}"
    fold = _kand if op == "and" else _kor

    def ev(env: Env, parts: list[Gen] = parts) -> object:
        out = parts[0].ev(env)
        for p in parts[1:]:
            out = fold(out, p.ev(env))
        return out

    if draw(st.integers(0, 4)) == 0:
        return Gen(f"not ({joined})", lambda env: None if (x := ev(env)) is None else not x)
    if draw(st.booleans()):
        return Gen(f"({joined})", ev)
    return Gen(joined, ev, chain=True)


def _same_generated_code(before: str, after: str) -> None:
    import re

    from dsl import generated_python

    lines = re.compile(r"\(p\.rf:\d+(:\d+)?\)")
    code = [lines.sub("", generated_python({"p.rf": t}, tenant="t")) for t in (before, after)]
    assert code[0] == code[1]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    long_conditions(),
    st.lists(
        st.tuples(
            values, values, st.sampled_from(["register", "login", "sms_code"]), st.booleans()
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_long_conditions_wrap_and_keep_their_meaning(
    g: Gen, inputs: list[tuple[int | None, int | None, str, bool]]
) -> None:
    from dsl.formatter import MAX_LINE
    from dsl.parser import parse_module

    text = LONG_AGGS + f"rule r {{\n  when {g.text}\n  then block\n}}\n"
    formatted = format_source(text, "p.rf")
    assert format_source(formatted, "p.rf") == formatted  # idempotent
    assert all(len(line.split("  #")[0]) <= MAX_LINE for line in formatted.splitlines())
    before, after = parse_module(text, "p.rf"), parse_module(formatted, "p.rf")
    assert after.items == before.items
    assert sorted(c.text for c in after.comments) == sorted(c.text for c in before.comments)
    errors = [d for d in check_policy({"p.rf": text}) if d.is_error]
    assert all("can never fire" in d.message for d in errors), errors
    assume(not errors)
    _same_generated_code(text, formatted)
    policy = compile_policy({"p.rf": formatted})
    for a, b, scene, valid in inputs:
        f = facts("+8613800000001" if valid else "+86123", scene=scene)
        vals = {LONG_NAMES["a"]: a, LONG_NAMES["b"]: b}
        decision = policy.evaluate(f, vals, {}, explain=True)
        assert decision.trace[0].value is g.ev(
            {"a": a, "b": b, "scene": scene, "valid": f.phone.valid}
        )
