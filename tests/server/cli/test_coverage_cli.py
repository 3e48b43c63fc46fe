"""``ringfence test --coverage``: the rules and conditions no case exercises, each at its
file:line:col, and the share of outcomes seen (a rule firing and staying quiet, a
condition true and false)."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import GOLDEN, no_traceback, ringfence
from dsl_helpers import check_golden

POLICY = """\
aggregate codes_today = count(per number, over today) where event.scene == "sms_code"
condition night = event.local_hour < 6 or event.local_hour >= 23

rule many_codes {
    when event.scene == "sms_code"
        and codes_today > 4
    then review
}

rule night_signup {
    when event.scene == "register" and night
    then review
}

rule vip_app {
    when event.app_id == "vip" and not phone.valid
    then allow
}

# Dead on its own: never measured, and reported by the checker as a warning.
rule odd {
    when event.local_hour > 30 or event.scene == "odd"
    then review
}
"""

CASES = """\
[[case]]
name = "five codes"
phone = "+8613900000001"
event = { scene = "sms_code" }
aggregates = { codes_today = 5 }
[case.expect]
action = "review"
rules = ["many_codes"]

[[case]]
name = "a daytime sign-up"
phone = "+8613900000001"
event = { scene = "register", occurred_at = 2026-03-02T12:00:00Z }
aggregates = { codes_today = 0 }
[case.expect]
action = "allow"
rules = []
"""


def test_gaps_are_listed_where_they_are_written(tmp_path: Path) -> None:
    (tmp_path / "t" / "tests").mkdir(parents=True)
    (tmp_path / "t" / "policy.rf").write_text(POLICY)
    (tmp_path / "t" / "tests" / "cases.toml").write_text(CASES)
    out = ringfence("test", str(tmp_path), "--coverage")
    no_traceback(out)
    assert out.returncode == 0, out.stdout
    lines = out.stdout.replace(str(tmp_path), "rules").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("t/policy.rf:"))
    check_golden(GOLDEN / "test_coverage.txt", "\n".join(lines[start:]) + "\n")


def test_without_the_flag_nothing_is_said_of_coverage(tmp_path: Path) -> None:
    (tmp_path / "t" / "tests").mkdir(parents=True)
    (tmp_path / "t" / "policy.rf").write_text(POLICY)
    (tmp_path / "t" / "tests" / "cases.toml").write_text(CASES)
    out = ringfence("test", str(tmp_path))
    assert out.returncode == 0, out.stdout
    assert "coverage" not in out.stdout


def test_the_shipped_rules_are_fully_covered() -> None:
    out = ringfence("test", "rules", "--coverage")
    assert out.returncode == 0, out.stdout
    # As many rules as `ringfence check` counts in the shipped policy.
    check = ringfence("check", "rules").stdout.splitlines()[-1].split()
    assert check[:2] == ["demo", "ok"], check
    rules = int(check[2])
    assert f"demo: coverage 100.0%: {rules} of {rules} rules fire in some case" in out.stdout
