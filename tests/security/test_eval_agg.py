"""``ringfence eval --agg`` checks its values and names (issue 11, item 14): ``nan`` or
``1e999`` printed a traceback, and a misspelt aggregate was ignored without a word."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from support import RINGFENCE


def run_eval(rules: Path, *aggs: str) -> subprocess.CompletedProcess[str]:
    args = ["eval", "--rules", str(rules), "--tenant", "demo", "--phone", "+8613800138000"]
    for agg in aggs:
        args += ["--agg", agg]
    return subprocess.run([str(RINGFENCE), *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "value", ["nan", "1e999", "-1", "1.5", "0x10", "inf", "99999999999999999999", "١٢"]
)
def test_bad_values_are_errors(rules_copy: Path, value: str) -> None:
    out = run_eval(rules_copy, f"codes_today={value}")
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip() == (
        f"ringfence eval: --agg codes_today={value}: a value is a whole number from 0 to "
        "9223372036854775807, or 'unknown'"
    )
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("given", "suggestion"),
    [("codes_todya=1", "codes_today"), ("privacy_hits_1hh=3", "privacy_hits_1h")],
)
def test_unknown_names_are_errors_with_a_suggestion(
    rules_copy: Path, given: str, suggestion: str
) -> None:
    out = run_eval(rules_copy, given)
    name = given.split("=")[0]
    assert out.returncode == 2
    assert f"tenant 'demo' has no aggregate {name!r}; did you mean {suggestion!r}?" in out.stderr
    assert "aggregates: privacy_hits_1h, privacy_hits_1h@1h" in out.stderr


def test_a_missing_value_is_an_error(rules_copy: Path) -> None:
    out = run_eval(rules_copy, "codes_today")
    assert out.returncode == 2
    assert "--agg 'codes_today': expected NAME=VALUE" in out.stderr


def test_good_values_are_used(rules_copy: Path) -> None:
    out = run_eval(rules_copy, "codes_today=7", "privacy_hits_1h=unknown")
    assert out.returncode == 0, out.stderr
    assert re.search(r"^  codes_today +?= 7 +given;", out.stdout, re.M), out.stdout
    assert re.search(r"^  privacy_hits_1h +?= unknown +given;", out.stdout, re.M), out.stdout
