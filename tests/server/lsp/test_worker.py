"""The checking process: the quick check (changed rules only) agrees with a full check."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsl.diagnostics import Severity
from server.bundle.load import read_library
from server.lsp.worker import Checker, CheckRequest

ROOT = Path(__file__).parents[3]
POLICY = (ROOT / "rules" / "demo" / "policy.rf").read_text()
LIBRARY = read_library(ROOT / "rules")[0]
EXTRA = "\nrule extra {\n    when phone.valid\n    then allow\n}\n"

EDITS = {
    "unknown action": lambda t: t.replace(
        'then block\n    risk 4\n    tags "iot', 'then blok\n    risk 4\n    tags "iot'
    ),
    "threshold": lambda t: t.replace("code_apps_today > 1", "code_apps_today > 2"),
    "unknown name in a rule": lambda t: t.replace(
        "codes_today > MAX_CODES_PER_DAY", "codes_today > MAX_CODES"
    ),
    "new rule": lambda t: t + EXTRA,
    "new rule with a bad field": lambda t: t + EXTRA.replace("phone.valid", "phone.vaild"),
    "rule removed": lambda t: (
        t[: t.index("rule codes_for_many_apps")] + t[t.index("# Trying a stricter") :]
    ),
    "lines added above": lambda t: (
        "\n\n# note\n" + t.replace("code_apps_today > 1", "code_apps_today >= 1")
    ),
    "duplicate rule name": lambda t: t + EXTRA.replace("extra", "black_card_segment"),
    "declaration changed": lambda t: t.replace("const RUN_BLOCK = 20", "const RUN_BLOCK = 21"),
}


# Edits that change which declarations are used: those warnings follow with the full check.
USAGE_CHANGES = {"rule removed", "unknown name in a rule"}


def _request(text: str, quick: bool) -> CheckRequest:
    return CheckRequest("demo", {"demo/policy.rf": text}, LIBRARY, "UTC", key="demo", quick=quick)


@pytest.mark.parametrize("edit", EDITS, ids=str)
def test_quick_check_agrees_with_a_full_check(edit: str) -> None:
    checker = Checker(quick_above_s=0.0)  # the demo policy checks fast: force it
    base = checker.check(_request(POLICY, quick=False))
    assert not base.quick
    edited = EDITS[edit](POLICY)
    quick = checker.check(_request(edited, quick=True))
    full = Checker().check(_request(edited, quick=False))
    if edit in ("duplicate rule name", "declaration changed"):
        assert not quick.quick  # not exact enough: a full check answered
    else:
        assert quick.quick
    errors_q = [d for d in quick.diagnostics if d.severity is Severity.ERROR]
    errors_f = [d for d in full.diagnostics if d.severity is Severity.ERROR]
    assert errors_q == errors_f
    # Warnings that depend on every rule (unused declarations) may lag until the full check.
    if edit in USAGE_CHANGES:
        assert [d for d in quick.diagnostics if d not in full.diagnostics] == [] or all(
            d.severity is Severity.WARNING for d in set(quick.diagnostics) ^ set(full.diagnostics)
        )
    else:
        assert quick.diagnostics == full.diagnostics


def test_a_fast_policy_is_always_checked_in_full() -> None:
    checker = Checker()
    checker.check(_request(POLICY, quick=False))
    assert not checker.check(_request(EDITS["threshold"](POLICY), quick=True)).quick
