"""Time-zone names and event times at the edges of the calendar.

A policy's or tenant.toml's zone name is author text that used to reach ``ZoneInfo``
as is: a folder name ("America") raised IsADirectoryError and an over-long one OSError,
both past the checks that expected ZoneInfoNotFoundError. The last second of 9999 has no
local date east of UTC, where ``datetime.fromtimestamp`` raised OverflowError in the
tools that show local times.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import no_traceback, ringfence

from dsl import check_policy

LAST_SECOND = 253_402_300_799  # 9999-12-31T23:59:59Z

ODD_NAMES = ["America", "Europe/", "x" * 300, "../../../etc/passwd", "UTC/../UTC", "a" * 40]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_odd_zone_names_in_a_policy_are_a_diagnostic(name: str) -> None:
    source = f'settings {{\n    timezone = "{name}"\n}}\n'
    (error,) = [d for d in check_policy({"t/p.rf": source}, tenant="t") if d.is_error]
    assert (error.line, error.message[:22]) == (2, "unknown time zone '" + name[:3])
    assert len(error.message) < 140


def _policy(rules: Path) -> None:
    (rules / "k" / "tests").mkdir(parents=True)
    (rules / "k" / "policy.rf").write_text(
        'settings {\n    timezone = "Pacific/Kiritimati"\n}\n'
        "aggregate codes_today = count(per number, over today)\n"
        "rule night {\n    when codes_today > 3 and event.local_hour == 23\n    then review\n}\n",
        encoding="utf-8",
    )


def test_eval_at_the_last_second_east_of_utc(tmp_path: Path) -> None:
    _policy(tmp_path)
    out = ringfence(
        "eval", "--rules", str(tmp_path), "--tenant", "k", "--phone", "+8613800138000",
        "--at", str(LAST_SECOND), "--agg", "codes_today=9",
    )  # fmt: skip
    no_traceback(out)
    assert out.returncode == 0, out.stderr
    assert "past the calendar's end in Pacific/Kiritimati" in out.stdout
    # Read as the calendar's last day (23:59 local), the way the compiled policy reads it.
    assert "local_hour 23" in out.stdout
    assert "decision: review" in out.stdout


def test_rule_tests_at_the_last_second_east_of_utc(tmp_path: Path) -> None:
    _policy(tmp_path)
    (tmp_path / "k" / "tests" / "edge.toml").write_text(
        '[[case]]\nname = "the last second"\nphone = "+8613800138000"\n'
        f'event = {{ scene = "login", occurred_at = {LAST_SECOND} }}\n'
        'aggregates = { codes_today = 9 }\n[case.expect]\naction = "review"\n',
        encoding="utf-8",
    )
    out = ringfence("test", str(tmp_path), "--tenant", "k")
    no_traceback(out)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed, 0 failed" in out.stdout
