"""Regular expressions: RE2 (linear time, no backtracking blow-ups) behind a bounded memo."""

from __future__ import annotations

import pytest

from dsl.patterns import (
    MAX_INPUT,
    MEMO_ENTRIES,
    MEMO_TEXT,
    InputTooLong,
    Matcher,
    MatchMemo,
    PatternError,
    compile_pattern,
)


def test_matcher_answers_like_re2_and_remembers_boundedly() -> None:
    memo = MatchMemo()
    matchers = [Matcher(rf"^(curl|python-requests)/{i}?", memo, i) for i in range(50)]
    m = matchers[0]
    assert m.search("curl/8.5") is True
    assert m.search("Mozilla/5.0 curl/8.5") is False
    # Many patterns and varied inputs share one memo with one bound (a memo per pattern
    # once grew without a total limit): entries, and the length of what is kept.
    for i in range(MEMO_ENTRIES):
        for p in matchers[:5]:
            assert p.search(f"agent-{i}") is False
        assert m.search("x" * (MEMO_TEXT + 1) + str(i)) is False
    assert len(memo.answers) <= MEMO_ENTRIES
    assert all(len(text) <= MEMO_TEXT for _, text in memo.answers)
    assert m.search("python-requests/2.31") is True
    assert matchers[7].search("curl/7") is True


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(a", r"missing \)"),
        (r"(a)\1", "invalid escape"),
        ("a{1001}", "invalid repetition"),
        (r"\pL{55}", "pattern too large"),  # ~19 ms to compile at a 1 MiB budget; refused now
    ],
)
def test_bad_patterns_are_errors_not_crashes(pattern: str, reason: str) -> None:
    with pytest.raises(PatternError, match=reason):
        compile_pattern(pattern)


def test_a_pattern_that_backtracks_in_re_is_linear_in_re2() -> None:
    # (a+)+$ takes exponential time in a backtracking engine on "aaaa...b"; RE2 answers at
    # once. A regression to Python's re would hang here (pytest-timeout ends it).
    m = Matcher(r"(a+)+$")
    assert m.search("a" * (MAX_INPUT - 1) + "b") is False
    assert m.search("b" + "a" * (MAX_INPUT - 1)) is True


def test_inputs_past_the_bound_are_refused_not_searched() -> None:
    # The cost model bounds a search by MAX_INPUT characters; only a list label can be
    # longer, and searching one fails the rule (its on_error decides).
    m = Matcher(r"x")
    assert m.search("a" * MAX_INPUT) is False
    with pytest.raises(InputTooLong):
        m.search("a" * (MAX_INPUT + 1))
