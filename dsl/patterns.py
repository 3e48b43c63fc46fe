"""Regular expressions in policies: RE2 only, so matching is linear in the input whatever
the pattern (no backtracking blow-ups), compiled once when a policy is loaded."""

from __future__ import annotations

from typing import Any

import re2

# RE2 refuses patterns whose compiled program would exceed this (a{1000}{1000}..., \pL{55}):
# a pattern is compiled again when the server loads the policy, on a thread that holds the
# GIL while RE2 compiles, so its cost must stay small (~1 ms at this budget).
MAX_MEMORY = 1 << 18


class PatternError(ValueError):
    pass


# The longest input matches() searches: every string a request carries is within it (the
# server's request validation caps attribute values at 512 characters), so the cost model
# can bound a search (dsl.cost). Only a list label can be longer; searching one fails the
# rule (its on_error decides, and the failure is counted) instead of costing more.
MAX_INPUT = 512


class InputTooLong(ValueError):
    """A matches() input past :data:`MAX_INPUT` characters."""


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # errors come back to the author as a diagnostic instead
    options.max_mem = MAX_MEMORY
    return options


def compile_pattern(pattern: str) -> Any:
    """A compiled RE2 pattern, or :class:`PatternError` with RE2's reason."""
    try:
        return re2.compile(pattern, _options())
    except re2.error as err:
        reason = err.args[0] if err.args else "invalid pattern"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise PatternError(str(reason)) from None


# Inputs remembered per policy: attribute values (user agents, channels) repeat across
# requests, and one RE2 search through its Python binding costs 2-4 us, a dict hit 50 ns.
# One memo serves all of a policy's patterns, bounded in entries and in the length of what
# it keeps, so neither many patterns nor varied inputs can grow it (a memo per pattern
# once let 240 patterns and 512-character inputs hold 2 GB).
MEMO_ENTRIES = 8192
MEMO_TEXT = 256


class MatchMemo:
    """Answers of one policy's patterns, keyed by (pattern number, input). Shared by the
    threads that evaluate the policy: a dict get or set is atomic under the GIL, and a
    clear racing a set only costs a search again."""

    __slots__ = ("answers",)

    def __init__(self) -> None:
        self.answers: dict[tuple[int, str], bool] = {}


class Matcher:
    """A compiled pattern that answers "does it match anywhere?", through a memo."""

    __slots__ = ("_memo", "_number", "_regexp", "pattern")

    def __init__(self, pattern: str, memo: MatchMemo | None = None, number: int = 0) -> None:
        self.pattern = pattern
        self._regexp = compile_pattern(pattern)
        self._memo = (memo or MatchMemo()).answers
        self._number = number

    def search(self, text: str) -> bool:
        if len(text) > MEMO_TEXT:
            if len(text) > MAX_INPUT:
                raise InputTooLong(f"matches() searches at most {MAX_INPUT} characters")
            return self._regexp.search(text) is not None
        key = (self._number, text)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._regexp.search(text) is not None
            if len(self._memo) >= MEMO_ENTRIES:
                self._memo.clear()
            self._memo[key] = hit
        return hit


def search(pattern: str, text: str) -> bool:
    """Does ``pattern`` match anywhere in ``text`` (folding constants at compile time)."""
    return compile_pattern(pattern).search(text) is not None
