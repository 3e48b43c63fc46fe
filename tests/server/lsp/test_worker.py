"""The checking process: the quick check (changed rules only) agrees with a full check,
and falls back to a full check whenever reusing findings would not be exact."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dsl import CompileOptions, check_policy_report
from dsl.diagnostics import Severity
from server.bundle.load import read_library
from server.lsp.worker import Checker, CheckReply, CheckRequest

ROOT = Path(__file__).parents[3]
LIBRARY = read_library(ROOT / "rules")[0]
EXTRA = "\nrule extra {\n    when phone.valid\n    then allow\n}\n"
# The demo policy and the language's second version: a named condition that rules inline,
# a composite key, age(), scores and a priority.
POLICY = (ROOT / "rules" / "demo" / "policy.rf").read_text() + (
    "\ncondition busy_number = codes_today > 2 and age(per number) < 1h\n"
    "aggregate codes_per_app = count(per (number, app), over 30d)\n"
    "\nrule busy_scored {\n    when busy_number and codes_per_app > 3\n    score 20\n}\n"
    '\nrule busy_downgraded {\n    when busy_number and event.app_id.matches(r"^partner-")\n'
    "    then review\n    priority 10\n}\n"
)

Edit = Callable[[str], str]
# name -> (edit, answered quickly?)
EDITS: dict[str, tuple[Edit, bool]] = {
    "unknown action": (
        lambda t: t.replace(
            'then block\n    risk 4\n    tags "iot', 'then blok\n    risk 4\n    tags "iot'
        ),
        True,
    ),
    "threshold": (lambda t: t.replace("code_apps_today > 1", "code_apps_today > 2"), True),
    "unknown name in a rule": (
        lambda t: t.replace("codes_today > MAX_CODES_PER_DAY", "codes_today > MAX_CODES"),
        True,
    ),
    "new rule": (lambda t: t + EXTRA, True),
    "new rule with a bad field": (lambda t: t + EXTRA.replace("phone.valid", "phone.vaild"), True),
    "rule removed": (
        lambda t: t[: t.index("rule codes_for_many_apps")] + t[t.index("# Trying a stricter") :],
        True,
    ),
    "lines added above": (
        lambda t: "\n\n# note\n" + t.replace("code_apps_today > 1", "code_apps_today >= 1"),
        True,
    ),
    "duplicate rule name": (lambda t: t + EXTRA.replace("extra", "black_card_segment"), False),
    "declaration changed": (
        lambda t: t.replace("const RUN_BLOCK = 20", "const RUN_BLOCK = 21"),
        False,
    ),
    # A score with no review_score/block_score set warns: it depends on the settings.
    "score added to a rule": (
        lambda t: t.replace("then block\n    risk 4\n", "then block\n    score 5\n    risk 4\n", 1),
        True,
    ),
    "thresholds set": (
        lambda t: t.replace(
            'timezone = "Asia/Shanghai"', 'timezone = "Asia/Shanghai"\n    review_score = 20'
        ),
        False,
    ),
    # Rules inline named conditions: a changed condition changes their findings.
    "condition changed": (
        lambda t: t.replace("codes_today > 2 and age", 'codes_today > "2" and age'),
        False,
    ),
    "condition misused in a rule": (
        lambda t: t.replace(
            "when busy_number and codes_per_app", "when busy_number + 1 and codes_per_app"
        ),
        True,
    ),
    "bad regular expression": (lambda t: t.replace('r"^partner-"', 'r"^(partner-"'), True),
}


# Edits that change which declarations are used: those warnings follow with the full check.
USAGE_CHANGES = {"rule removed", "unknown name in a rule", "condition misused in a rule"}


def _request(text: str, quick: bool) -> CheckRequest:
    return CheckRequest("demo", {"demo/policy.rf": text}, LIBRARY, "UTC", key="demo", quick=quick)


def _quick_and_full(
    base: str, edited: str, options: CompileOptions | None = None
) -> tuple[CheckReply, CheckReply]:
    checker = Checker(quick_above_s=0.0, options=options)  # these check fast: force it
    first = checker.check(_request(base, quick=False))
    assert not first.quick
    assert not first.failure
    quick = checker.check(_request(edited, quick=True))
    full = Checker(options=options).check(_request(edited, quick=False))
    assert not quick.failure
    return quick, full


def test_the_base_policy_checks_and_uses_the_second_version() -> None:
    full = Checker().check(_request(POLICY, quick=False))
    assert [d for d in full.diagnostics if d.is_error] == []
    assert any("adds a score" in d.message for d in full.diagnostics)


@pytest.mark.parametrize("edit", EDITS, ids=str)
def test_quick_check_agrees_with_a_full_check(edit: str) -> None:
    change, answered_quickly = EDITS[edit]
    edited = change(POLICY)
    assert edited != POLICY
    quick, full = _quick_and_full(POLICY, edited)
    assert quick.quick is answered_quickly
    errors_q = [d for d in quick.diagnostics if d.severity is Severity.ERROR]
    errors_f = [d for d in full.diagnostics if d.severity is Severity.ERROR]
    assert errors_q == errors_f
    # Warnings that depend on every rule (unused declarations) may lag until the full check.
    if edit in USAGE_CHANGES:
        assert all(
            d.severity is Severity.WARNING for d in set(quick.diagnostics) ^ set(full.diagnostics)
        )
    else:
        assert quick.diagnostics == full.diagnostics


def _counts(text: str) -> tuple[int, int, int]:
    """(aggregate windows, expression nodes, diagnostics) of a full check."""
    r = check_policy_report({"demo/policy.rf": text}, library=LIBRARY, tenant="demo")
    return r.aggregate_windows, r.expression_nodes, len(r.diagnostics)


NEW_WINDOWS = (
    "\nrule reads_the_past {\n    when codes_today.ago(1d) > 1 and codes_per_app.ago(1h) > 1\n"
    "    then review\n}\n"
)
BIG_CONDITION = (
    "\nrule big {\n    when "
    + " or ".join(f"codes_today > {i}" for i in range(40))
    + "\n    then review\n}\n"
)


@pytest.mark.parametrize(
    ("limit", "edit", "message"),
    [
        ("max_aggregate_reads", NEW_WINDOWS, "too many aggregate windows"),
        ("max_policy_nodes", BIG_CONDITION, "expression nodes; a policy holds at most"),
        ("max_rules", EXTRA, "too many rules"),
        (
            "max_diagnostics",
            EXTRA.replace("phone.valid", "phone.vaild and blah and bleh"),
            "too many problems",
        ),
    ],
    ids=["aggregate windows", "expression nodes", "rules", "diagnostics"],
)
def test_a_policy_that_reaches_a_limit_is_checked_in_full(
    limit: str, edit: str, message: str
) -> None:
    """Limits count the whole policy: a quick check of the changed rules alone would miss
    them, so near a limit the quick check gives way to a full one."""
    windows, nodes, diags = _counts(POLICY)
    rules = POLICY.count("\nrule ") + POLICY.count("\nshadow rule ")
    # Just enough for the policy as it is; the edit goes past it.
    at_limit = {
        "max_aggregate_reads": windows,
        "max_policy_nodes": nodes + 10,
        "max_rules": rules,
        "max_diagnostics": diags + 1,
    }
    options = CompileOptions(**{limit: at_limit[limit]})
    quick, full = _quick_and_full(POLICY, POLICY + edit, options)
    assert any(message in d.message for d in full.diagnostics), [
        d.message for d in full.diagnostics
    ]
    assert not quick.quick
    assert quick.diagnostics == full.diagnostics
    # Far from the limit, the same edit is answered quickly.
    quick, full = _quick_and_full(POLICY, POLICY + edit)
    assert quick.quick
    assert not any(message in d.message for d in quick.diagnostics)


def test_a_fast_policy_is_always_checked_in_full() -> None:
    checker = Checker()
    checker.check(_request(POLICY, quick=False))
    assert not checker.check(_request(EDITS["threshold"][0](POLICY), quick=True)).quick
