"""Regular expressions: RE2 (linear time, no backtracking blow-ups) behind a bounded memo."""

from __future__ import annotations

import pytest

from dsl.patterns import MEMO_SIZE, Matcher, PatternError, compile_pattern


def test_matcher_answers_like_re2_and_remembers_boundedly() -> None:
    m = Matcher(r"^(curl|python-requests)/")
    assert m.search("curl/8.5") is True
    assert m.search("Mozilla/5.0 curl/8.5") is False
    for i in range(MEMO_SIZE * 2):
        assert m.search(f"agent-{i}") is False
    assert len(m._memo) <= MEMO_SIZE
    assert m.search("python-requests/2.31") is True


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [("(a", r"missing \)"), (r"(a)\1", "invalid escape"), ("a{1001}", "invalid repetition")],
)
def test_bad_patterns_are_errors_not_crashes(pattern: str, reason: str) -> None:
    with pytest.raises(PatternError, match=reason):
        compile_pattern(pattern)


def test_a_pattern_that_backtracks_in_re_is_linear_in_re2() -> None:
    # (a+)+$ takes exponential time in a backtracking engine on "aaaa...b"; RE2 answers at
    # once. A regression to Python's re would hang here (pytest-timeout ends it).
    m = Matcher(r"(a+)+$")
    assert m.search("a" * 5000 + "b") is False
    assert m.search("b" + "a" * 5000) is True
