"""``ringfence test``: a bad rule-test file is file:line:col errors with a caret, never a
traceback, and the other files still run; TOML date-times work end to end."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli_helpers import GOLDEN, no_traceback, ringfence
from dsl_helpers import check_golden

BAD = {
    "typo_in_event.toml": """[[case]]
name = "a misspelt event key"
phone = "+8613800138000"
event = { scen = "register" }
[case.expect]
action = "allow"
""",
    "unknown_aggregate.toml": """[[case]]
name = "an aggregate the policy does not have"
phone = "+8613800138000"
aggregates = { segment_run = 3 }
[case.expect]
action = "allow"
rules = ["consecutive_numbers_reveiw"]
""",
    "not_toml.toml": """[[case]]
name = "unterminated
""",
    "not_utf8.toml": "",
}


@pytest.fixture
def bad_rules(rules_copy: Path) -> Path:
    tests = rules_copy / "demo" / "tests"
    for name, text in BAD.items():
        (tests / name).write_text(text, encoding="utf-8")
    (tests / "not_utf8.toml").write_bytes(b'[[case]]\nname = "\xff"\n')
    return rules_copy


def test_bad_files_are_positioned_errors(bad_rules: Path) -> None:
    out = ringfence("test", str(bad_rules))
    no_traceback(out)
    assert out.returncode == 1
    shown = out.stdout.replace(str(bad_rules), "rules").splitlines()
    # The good files still ran and passed; each bad file counts as one failure.
    assert re.fullmatch(r"[1-9]\d* passed, 4 failed", shown[-1]), shown[-1]
    table = next(i for i, line in enumerate(shown) if line.split()[:2] == ["tenant", "file"])
    check_golden(GOLDEN / "test_bad_files.txt", "\n".join(shown[:table]) + "\n")
    rows = {line.split()[1]: line.split()[2:] for line in shown[table + 1 : -1]}
    for name in BAD:
        assert rows[f"tests/{name}"] == ["0", "1", "FAIL"]
    assert rows["tests/registration.toml"][1:] == ["0", "ok"]


def test_datetimes_in_a_case_file(rules_copy: Path) -> None:
    tests = rules_copy / "demo" / "tests"
    for old in tests.glob("*.toml"):
        old.unlink()
    (tests / "times.toml").write_text(
        """[[case]]
name = "offset date-time"
phone = "+8613800138000"
event = { scene = "sms_code", app_id = "a", occurred_at = 2026-01-05T09:30:00+08:00 }
aggregates = { codes_today = 5 }
[case.expect]
action = "allow"
tags = ["many_codes"]

[[case]]
name = "local date-time, read in the policy's zone"
phone = "+8613800138000"
event = { scene = "sms_code", app_id = "a", occurred_at = 2026-01-05T09:30:00 }
aggregates = { codes_today = 1 }
[case.expect]
action = "allow"
tags = []
""",
        encoding="utf-8",
    )
    out = ringfence("test", str(rules_copy), "-v")
    no_traceback(out)
    assert out.returncode == 0, out.stdout
    assert out.stdout.splitlines()[-1] == "2 passed, 0 failed"
    assert "times.toml:1 case[0] 'offset date-time'" in out.stdout
