"""The lint stage costs about what the policy weighs, whatever its author writes.

It judged an ``and`` (``or``) after every test of a value, each time over all the tests
before it, and met two sets of integers pair by pair: one rule of 6,000
``event.occurred_at == N or ...`` (150 KB, within every limit) took 27 s to check, past
the compile budget, and each meet of two 1,000-value sets built a million pairs. The work
is counted here as the intervals the stage builds sets from (no clock): it must stay
within a small multiple of the intervals the policy writes.

Regression tests for docs/security.md ("Bounded cost").
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from dsl import CompileOptions, check_policy_report, lint

SET = "{" + ", ".join(str(2 * i) for i in range(1_000)) + "}"


@pytest.mark.parametrize(
    ("condition", "written"),
    [
        (" or ".join(f"event.occurred_at == {2 * i}" for i in range(6_000)), 6_000),
        (" and ".join(f"event.occurred_at != {2 * i}" for i in range(6_000)), 12_000),
        (" and ".join(f"event.occurred_at in {SET}" for _ in range(16)), 16_000),
    ],
    ids=["or-of-equals", "and-of-not-equals", "and-of-large-sets"],
)
def test_lint_work_grows_with_the_policy_not_its_square(
    condition: str, written: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = 0
    real = lint.Ints.of

    def counting(parts: Iterable[tuple[float, float]]) -> lint.Ints:
        nonlocal built
        parts = list(parts)
        built += len(parts)
        return real(parts)

    monkeypatch.setattr(lint.Ints, "of", staticmethod(counting))
    text = f"rule r {{\n  when {condition}\n  then block\n}}\n"
    report = check_policy_report({"t/p.rf": text}, tenant="t", options=CompileOptions())
    assert not [d for d in report.diagnostics if d.is_error], report.diagnostics[:1]
    assert built < 60 * written, f"{built:,} intervals built for {written:,} written"
