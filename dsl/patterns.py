"""Regular expressions in policies: RE2 only, so matching is linear in the input whatever
the pattern (no backtracking blow-ups), compiled once when a policy is loaded."""

from __future__ import annotations

from typing import Any

import re2

# RE2 refuses patterns whose compiled program would exceed this (a{1000}{1000}...).
MAX_MEMORY = 1 << 20


class PatternError(ValueError):
    pass


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


# Inputs remembered per pattern: attribute values (user agents, channels) repeat across
# requests, and one RE2 search through its Python binding costs 2-4 us, a dict hit 50 ns.
MEMO_SIZE = 4096


class Matcher:
    """A compiled pattern that answers "does it match anywhere?" with a bounded memo.

    Shared by the threads of one policy: a dict get or set is atomic under the GIL, and a
    clear racing a set only costs a search again."""

    __slots__ = ("_memo", "_regexp", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._regexp = compile_pattern(pattern)
        self._memo: dict[str, bool] = {}

    def search(self, text: str) -> bool:
        hit = self._memo.get(text)
        if hit is None:
            hit = self._regexp.search(text) is not None
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            self._memo[text] = hit
        return hit


def search(pattern: str, text: str) -> bool:
    """Does ``pattern`` match anywhere in ``text`` (folding constants at compile time)."""
    return compile_pattern(pattern).search(text) is not None
