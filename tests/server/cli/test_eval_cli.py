"""``ringfence eval``: --at sets the event time, --fact overrides phone facts, and aggregates
not given are shown as assumed; bad flag values are one line and exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import GOLDEN, no_traceback, ringfence
from dsl_helpers import check_golden

# A tenant of its own, so these tests do not move when the demo policy does.
POLICY = """settings { timezone = "Asia/Shanghai" }

aggregate codes_today = count(per number, over today) where event.scene == "sms_code"
aggregate codes_1h = count(per number, over 1h)
aggregate ip_numbers_1h = distinct(phone, per ip, over 1h) where event.ip != ""

rule night { when event.local_hour < 6 then review tags "night" }
rule mvno { when phone.segment_kind == "mvno" then review tags "mvno" }
rule invalid { when not phone.valid then block tags "invalid" }
rule north_america { when phone.country_code == 1 then review tags "nanp" }
rule many_codes { when codes_today > 4 then block tags "codes" }
rule busy_ip { when ip_numbers_1h > 10 then review tags "ip" on_error review }
"""


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    folder = tmp_path / "rules" / "clock"
    folder.mkdir(parents=True)
    (folder / "policy.rf").write_text(POLICY, encoding="utf-8")
    return tmp_path / "rules"


def evaluate(rules: Path, *args: str) -> tuple[int, str, str]:
    out = ringfence(
        "eval", "--rules", str(rules), "--tenant", "clock", "--phone", "13800138000",
        "--region", "CN", *args,
    )  # fmt: skip
    no_traceback(out)
    return out.returncode, out.stdout, out.stderr


def _section(stdout: str) -> str:
    """The lines this change is about: time, facts, aggregates and the verdict."""
    keep = []
    for line in stdout.splitlines():
        if line.startswith(("policy ", "phone ", "rules:", "  [")):
            continue  # version hash and carrier data move with the code and phonenumbers
        keep.append(line)
    return "\n".join(keep) + "\n"


GOLDEN_CASES = {
    "at_local_time": ["--at", "2026-01-05T03:30"],
    "at_utc": ["--at", "2026-01-04T19:30:00Z", "--scene", "sms_code"],
    "at_other_offset_day_before": ["--at", "2026-01-04T23:30:00+08:00", "--scene", "sms_code"],
    "at_epoch_seconds": ["--at", "1767562200"],
    "facts": [
        "--at", "2026-01-05T12:00:00+08:00",
        "--fact", "phone.segment_kind=mvno",
        "--fact", "phone.valid=false",
        "--fact", "phone.country_code=1",
    ],
    "given_and_assumed": [
        "--at", "2026-01-05T12:00:00+08:00", "--scene", "sms_code", "--ip", "10.0.0.1",
        "--agg", "codes_today=5",
    ],
    "assume_unknown": [
        "--at", "2026-01-05T12:00:00+08:00", "--ip", "10.0.0.1", "--assume", "unknown",
    ],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_eval_output(rules: Path, name: str) -> None:
    code, stdout, stderr = evaluate(rules, *GOLDEN_CASES[name])
    assert code == 0, stderr
    check_golden(GOLDEN / f"eval_{name}.txt", _section(stdout))


@pytest.mark.parametrize(
    ("at", "hour", "tag"),
    [
        ("2026-01-05T03:30", 3, "night"),  # no offset: a wall-clock time in Asia/Shanghai
        ("2026-01-05T03:30:00+08:00", 3, "night"),
        ("2026-01-05T03:30:00Z", 11, None),
        ("2026-01-04 19:30:00+00:00", 3, "night"),
    ],
)
def test_at_sets_local_hour(rules: Path, at: str, hour: int, tag: str | None) -> None:
    code, stdout, _ = evaluate(rules, "--at", at)
    assert code == 0
    assert f"local_hour {hour}," in stdout
    decision = next(line for line in stdout.splitlines() if line.startswith("decision:"))
    assert decision.endswith(f"tags {tag or '-'}")


@pytest.mark.parametrize(
    ("fact", "tag"),
    [
        ("phone.segment_kind=mvno", "mvno"),
        ("phone.valid=false", "invalid"),
        ("phone.valid=FALSE", "invalid"),
        ("phone.country_code=1", "nanp"),
    ],
)
def test_fact_changes_the_decision(rules: Path, fact: str, tag: str) -> None:
    code, stdout, _ = evaluate(rules, "--at", "2026-01-05T12:00", "--fact", fact)
    assert code == 0
    decision = next(line for line in stdout.splitlines() if line.startswith("decision:"))
    assert tag in decision
    code, stdout, _ = evaluate(rules, "--at", "2026-01-05T12:00")
    decision = next(line for line in stdout.splitlines() if line.startswith("decision:"))
    assert tag not in decision


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fact", "phone.segment_knd=mvno"], "did you mean 'phone.segment_kind'?"),
        (["--fact", "segment_kind=mvno"], "did you mean 'phone.segment_kind'?"),
        (["--fact", "phone.valid=maybe"], "phone.valid is a bool: expected true or false"),
        (["--fact", "phone.valid"], "expected NAME=VALUE"),
        (["--fact", "phone.country_code=86a"], "phone.country_code is an int"),
        (["--fact", "phone.country_code=" + "9" * 30], "phone.country_code is an int"),
        (["--fact", "phone.masked=x"], "derived from the number"),
        (["--fact", "phone.e164=+15551234567"], "it is the number itself"),
        (["--fact", "event.scene=register"], "event facts come from --scene"),
        (["--fact", "event.local_hour=3"], "set it with --at"),
        (["--at", "tomorrow"], "is not a time: use RFC 3339 / ISO 8601"),
        (["--at", "2026-13-01T00:00"], "is not a time"),
        (["--at", "1969-12-31T23:59:59Z"], "must be between 1970-01-01"),
        (["--at", "99999999999999"], "is not a time"),
        # As in rule-test files: a date alone is refused, not read as its midnight.
        (["--at", "2026-03-01"], "a date without a time of day: write 2026-03-01T00:00:00"),
        (["--attr", "channel"], "--attr 'channel': expected KEY=VALUE"),
    ],
)
def test_bad_flag_values_exit_2_with_one_line(rules: Path, args: list[str], message: str) -> None:
    code, stdout, stderr = evaluate(rules, *args)
    assert code == 2
    assert stdout == ""
    assert stderr.startswith("ringfence eval: ")
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_an_age_is_given_in_seconds_or_as_a_duration(tmp_path: Path) -> None:
    folder = tmp_path / "rules" / "clock"
    folder.mkdir(parents=True)
    (folder / "policy.rf").write_text(
        'rule young { when age(per number) < 1h then review tags "young" }\n'
    )
    rules = tmp_path / "rules"
    for value in ("10m", "600"):
        code, stdout, stderr = evaluate(rules, "--agg", f"age(per number)={value}")
        assert code == 0, stderr
        assert "age(per number) = 10m" in stdout
        assert "young" in next(x for x in stdout.splitlines() if x.startswith("decision:"))
    code, stdout, stderr = evaluate(rules, "--agg", "age(per number)=ten minutes")
    assert code == 2
    assert stderr.strip() == (
        "ringfence eval: --agg age(per number)=ten minutes: age(per number) is a time in"
        " seconds: give 600 or a duration such as 10m, 2h or 3d, or 'unknown'"
    )


def test_a_wall_clock_time_the_clocks_skip(tmp_path: Path) -> None:
    folder = tmp_path / "rules" / "clock"
    folder.mkdir(parents=True)
    (folder / "policy.rf").write_text(
        'settings { timezone = "America/New_York" }\n'
        "rule night { when event.local_hour < 6 then review }\n",
        encoding="utf-8",
    )
    code, _, stderr = evaluate(tmp_path / "rules", "--at", "2026-03-08T02:30")
    assert code == 2
    assert "does not exist in America/New_York" in stderr
    code, stdout, _ = evaluate(tmp_path / "rules", "--at", "2026-03-08T03:30")
    assert code == 0
    assert "2026-03-08T03:30:00-04:00 (America/New_York)" in stdout
